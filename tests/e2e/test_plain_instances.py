"""Instances without a sidecar, with real Envoys: a service registered over REST that points
at a plain HTTP app is called by meshed clients (plain text to it, mTLS to the instances a
sidecar fronts), and a DestinationRule ``tls.mode: ISTIO_MUTUAL`` leaves it out and says so.
An Envoy of another fleet that takes only CDS/EDS from Interlock reaches plain instances too:
tests/e2e/test_existing_envoy.py, with the bootstrap of docs/existing-envoy.md."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import ServerProcess, UpstreamApp, wait_until

pytestmark = pytest.mark.e2e

SPIFFE_A = "spiffe://interlock.local/ns/default/sa/a"
CONTROL_PLANE_ID = "spiffe://interlock.local/ns/interlock-system/sa/interlock"


def register_plain(server: ServerProcess, service: str, instance: str, app: UpstreamApp) -> None:
    """Register ``app`` as it is, over REST: no sidecar, so ``sidecar`` is left out (false)."""
    with server.api() as api:
        if api.get(f"/v1/services/{service}").status_code == 404:
            assert api.put(f"/v1/services/{service}", json={"port": 8080}).is_success
        body = {"address": "127.0.0.1", "port": app.port}
        r = api.put(f"/v1/services/{service}/instances/{instance}", json=body)
        assert r.is_success, r.text
        assert r.json()["sidecar"] is False
        revision = r.json()["revision"]
        api.get(f"/v1/revisions/{revision}", params={"wait": 15}, timeout=20)


def apply(server: ServerProcess, *documents: dict[str, Any]) -> None:
    """Apply the documents and wait until every proxy ACKed the revision."""
    with server.api() as api:
        r = api.post("/v1/resources", json=list(documents))
        assert r.status_code == 200, r.text
        revision = r.json()["revision"]
        report = api.get(f"/v1/revisions/{revision}", params={"wait": 15}, timeout=20).json()
    assert report["proxies"]["complete"] and report["proxies"]["nacked"] == 0, report


def get_via(port: int, host: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=5)


def test_a_sidecar_calls_an_instance_registered_without_one(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    b1 = mesh.app("b", "b1")
    register_plain(mesh.server, "b", "b1", b1)

    # Plain text to the plain app (it would answer a TLS handshake with garbage: 503).
    wait_until(lambda: get_via(a.outbound_port, "b").status_code == 200, 10, what="a -> b1")
    answer = get_via(a.outbound_port, "b").json()
    assert (answer["instance"], answer["xfcc"]) == ("b1", "")

    # STRICT is about what a sidecar's inbound port takes: b1 has none, nothing changes.
    apply(
        mesh.server,
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "interlock-system"},
            "spec": {"mtls": {"mode": "STRICT"}},
        },
    )
    assert [get_via(a.outbound_port, "b").status_code for _ in range(5)] == [200] * 5


def test_a_service_with_a_sidecar_and_a_plain_instance_serves_both(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")  # behind its sidecar
    b2 = mesh.app("b", "b-2")
    register_plain(mesh.server, "b", "b-2", b2)

    seen: dict[str, str] = {}

    def both() -> bool:
        r = get_via(a.outbound_port, "b")
        if r.status_code == 200:
            seen[r.json()["instance"]] = r.json()["xfcc"]
        return set(seen) == {"b-1", "b-2"}

    wait_until(both, 10, interval=0.01, what="requests landing on b-1 and b-2")
    assert f"URI={SPIFFE_A}" in seen["b-1"]  # mTLS to the sidecar
    assert seen["b-2"] == ""  # plain text to the app itself

    # ISTIO_MUTUAL: mTLS or nothing. b-2 is left out, and named on the rule and per proxy.
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "b", "namespace": "default"},
        "spec": {"host": "b", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
    }
    apply(mesh.server, rule)
    t0 = time.monotonic()
    answers = [get_via(a.outbound_port, "b") for _ in range(20)]
    assert {(r.status_code, r.json()["instance"]) for r in answers} == {(200, "b-1")}
    assert b2.hits_since(t0) == 0
    with mesh.server.api() as api:
        problems = api.get("/v1/resources/DestinationRule/default/b").json()["problems"]
    assert [(p["field"], p["severity"]) for p in problems] == [
        ("spec.trafficPolicy.tls.mode", "error")
    ]
    assert "'b-2'" in problems[0]["message"]
    assert "Instance/default/b/b-2 sidecar: " in mesh.server.log()
