"""VirtualService routing with real Envoy sidecars: canary splits and header matches over
subsets, retries, timeouts and faults, mirroring, and a route move that fails no request.
Every policy goes through the REST API and is waited for (`apply --wait`); the assertions are
on which instance answered."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import Traffic, wait_until
from tests.support.policies import apply, doc, landings

pytestmark = pytest.mark.e2e


def subsets(host: str, *versions: str) -> dict[str, object]:
    return doc(
        "DestinationRule",
        host,
        {"host": host, "subsets": [{"name": v, "labels": {"version": v}} for v in versions]},
    )


def versions(mesh: Mesh, service: str, *names: str) -> None:
    """One instance of ``service`` per version, labelled ``version: <name>``, all started
    before any is waited for."""
    sidecars = [
        mesh.sidecar(
            service,
            f"{service}-{v}",
            mesh.app(service, f"{service}-{v}"),
            labels={"version": v},
            wait=False,
        )
        for v in names
    ]
    for sidecar in sidecars:
        sidecar.wait_listening()


def test_canary_weights_land_within_4_points_and_jason_always_reaches_v2(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    versions(mesh, "reviews", "v1", "v2", "v3")
    apply(
        mesh.server,
        subsets("reviews", "v1", "v2", "v3"),
        doc(
            "VirtualService",
            "reviews",
            {
                "hosts": ["reviews"],
                "http": [
                    {
                        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                        "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                    },
                    {
                        "route": [
                            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                            {"destination": {"host": "reviews", "subset": "v3"}, "weight": 10},
                        ]
                    },
                ],
            },
        ),
    )

    landed = landings(a.outbound_port, "reviews", 1000)
    assert set(landed) == {"reviews-v1", "reviews-v3"}, landed
    assert abs(landed["reviews-v1"] / 10 - 90) <= 4, landed
    assert abs(landed["reviews-v3"] / 10 - 10) <= 4, landed

    jason = landings(a.outbound_port, "reviews", 100, headers={"end-user": "jason"})
    assert jason == {"reviews-v2": 100}


def test_retries_turn_every_other_failure_into_success(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    flaky = mesh.app("b", "b-1", statuses=[200, 503])  # fails every other request
    mesh.sidecar("b", "b-1", flaky)
    route = {"route": [{"destination": {"host": "b"}}]}
    apply(mesh.server, doc("VirtualService", "b", {"hosts": ["b"], "http": [route]}))

    without = landings(a.outbound_port, "b", 200)
    assert abs(without["b-1"] - 100) <= 10 and without["status 503"] == 200 - without["b-1"]

    with_retries = {**route, "retries": {"attempts": 3}}
    apply(mesh.server, doc("VirtualService", "b", {"hosts": ["b"], "http": [with_retries]}))
    assert landings(a.outbound_port, "b", 200) == {"b-1": 200}


def test_a_delay_beyond_the_timeout_is_a_504_and_aborts_hit_their_share(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    apply(
        mesh.server,
        doc(
            "VirtualService",
            "b",
            {
                "hosts": ["b"],
                "http": [
                    {
                        "match": [{"uri": {"prefix": "/slow"}}],
                        "fault": {"delay": {"fixedDelay": "2s", "percentage": {"value": 100}}},
                        "timeout": "0.5s",
                        "route": [{"destination": {"host": "b"}}],
                    },
                    {
                        "match": [{"uri": {"prefix": "/flaky"}}],
                        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}}},
                        "route": [{"destination": {"host": "b"}}],
                    },
                    {"route": [{"destination": {"host": "b"}}]},
                ],
            },
        ),
    )

    started = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{a.outbound_port}/slow", headers={"Host": "b"}, timeout=5)
    elapsed = time.monotonic() - started
    assert r.status_code == 504
    assert 0.4 <= elapsed < 1.2, f"the timeout took {elapsed:.2f}s"

    aborted = landings(a.outbound_port, "b", 1000, path="/flaky")
    assert set(aborted) == {"b-1", "status 503"}, aborted
    assert abs(aborted["status 503"] / 10 - 50) <= 5, aborted
    assert landings(a.outbound_port, "b", 20) == {"b-1": 20}


def test_the_mirror_gets_a_copy_and_the_caller_only_the_primary_answer(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    shadow, _ = mesh.service("shadow", "shadow-1")
    apply(
        mesh.server,
        doc(
            "VirtualService",
            "b",
            {
                "hosts": ["b"],
                "http": [{"route": [{"destination": {"host": "b"}}], "mirror": {"host": "shadow"}}],
            },
        ),
    )
    before = len(shadow.hits)

    assert landings(a.outbound_port, "b", 50, path="/mirrored") == {"b-1": 50}
    wait_until(lambda: len(shadow.hits) - before >= 50, 5, what="50 mirrored requests")
    time.sleep(0.3)
    copies = shadow.hits[before:]
    assert len(copies) == 50 and {path for _, path in copies} == {"/mirrored"}


def test_moving_a_route_between_subsets_fails_no_request(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    versions(mesh, "b", "v1", "v2")

    def route_to(subset: str) -> dict[str, object]:
        return doc(
            "VirtualService",
            "b",
            {
                "hosts": ["b"],
                "http": [{"route": [{"destination": {"host": "b", "subset": subset}}]}],
            },
        )

    apply(mesh.server, subsets("b", "v1", "v2"), route_to("v1"))
    assert landings(a.outbound_port, "b", 10) == {"b-v1": 10}

    with Traffic(f"http://127.0.0.1:{a.outbound_port}/", "b", interval=0.005) as traffic:
        time.sleep(0.5)
        moved = time.monotonic()
        apply(mesh.server, route_to("v2"))
        time.sleep(0.5)

    assert traffic.failures() == []
    assert len(traffic.results) > 100
    assert traffic.landed_since(moved + 0.5) <= {"b-v2"}
    assert traffic.results[-1][2] == "b-v2"
