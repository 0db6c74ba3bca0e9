"""DestinationRule traffic policies with real Envoy sidecars: outlier detection ejects a failing
instance and brings it back, consistent hashing pins a header value to one instance, and
locality failover keeps traffic local until the local instances are gone."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import Traffic, wait_until
from tests.support.policies import apply, doc, landings

pytestmark = pytest.mark.e2e


def test_outlier_detection_ejects_a_failing_instance_and_brings_it_back(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    bad = mesh.app("b", "b-2", status=500)
    mesh.sidecar("b", "b-2", bad)
    apply(
        mesh.server,
        doc(
            "DestinationRule",
            "b",
            {
                "host": "b",
                "trafficPolicy": {
                    "outlierDetection": {
                        "consecutive5xxErrors": 3,
                        "interval": "0.5s",
                        "baseEjectionTime": "2s",
                        "maxEjectionPercent": 100,
                    }
                },
            },
        ),
    )

    # Three 500s in a row eject b-2: from then on every request lands on b-1.
    wait_until(lambda: landings(a.outbound_port, "b", 20) == {"b-1": 20}, 10, what="b-2 ejected")
    ejected = time.monotonic()
    bad.statuses = [200]  # b-2 recovers, but is not tried again until its ejection ends
    back: float | None = None
    with httpx.Client(timeout=5) as client:
        deadline = ejected + 8
        while back is None and time.monotonic() < deadline:
            r = client.get(f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "b"})
            if r.status_code == 200 and r.json()["instance"] == "b-2":
                back = time.monotonic() - ejected
            time.sleep(0.01)
    assert back is not None, "b-2 never came back"
    assert 1.0 <= back <= 4.0, f"b-2 came back {back:.2f}s after its ejection (base 2 s)"


def test_a_consistent_hash_on_a_header_pins_each_value_to_one_instance(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    for index in (1, 2, 3):
        mesh.sidecar("b", f"b-{index}", mesh.app("b", f"b-{index}"), wait=False)
    for sidecar in mesh.sidecars[1:]:
        sidecar.wait_listening()
    apply(
        mesh.server,
        doc(
            "DestinationRule",
            "b",
            {
                "host": "b",
                "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
            },
        ),
    )

    landed: dict[str, set[str]] = {}
    with httpx.Client(timeout=5) as client:
        for index in range(200):
            user = f"user-{index % 20}"
            r = client.get(
                f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "b", "x-user": user}
            )
            assert r.status_code == 200
            landed.setdefault(user, set()).add(r.json()["instance"])
    assert all(len(instances) == 1 for instances in landed.values()), landed
    assert len(set().union(*landed.values())) >= 2  # the values spread over the instances


def test_locality_failover_stays_local_until_the_local_instances_are_gone(mesh: Mesh) -> None:
    def at(locality: str) -> list[str]:
        return ["--locality", locality]

    _, a = mesh.service("a", "a-1", extra=at("us-east/zone-a"))
    _, local = mesh.service("b", "b-local", extra=at("us-east/zone-a"))
    mesh.service("b", "b-remote", extra=at("eu-west/zone-b"))
    apply(
        mesh.server,
        doc(
            "DestinationRule",
            "b",
            {
                "host": "b",
                "trafficPolicy": {
                    "loadBalancer": {
                        "localityLbSetting": {"failover": [{"from": "us-east", "to": "eu-west"}]}
                    },
                    "outlierDetection": {"consecutive5xxErrors": 5},
                },
            },
        ),
    )
    assert landings(a.outbound_port, "b", 100) == {"b-local": 100}

    with Traffic(f"http://127.0.0.1:{a.outbound_port}/", "b", interval=0.01) as traffic:
        time.sleep(0.5)
        gone = time.monotonic()
        local.stop()  # deregisters, drains, stops
        wait_until(lambda: "b-remote" in traffic.landed_since(gone), 5, what="failover")
        time.sleep(0.5)
    before = {instance for t, status, instance in traffic.results if t < gone and status == 200}
    assert before == {"b-local"}
    assert traffic.landed_since(time.monotonic() - 0.4) == {"b-remote"}
