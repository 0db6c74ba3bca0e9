"""Instances without a sidecar, with real Envoys: a service registered over REST that points
at a plain HTTP app is called by meshed clients (plain text to it, mTLS to the instances a
sidecar fronts), and a DestinationRule ``tls.mode: ISTIO_MUTUAL`` leaves it out and says so.
An Envoy of another fleet that takes only CDS/EDS from Interlock reaches plain instances too:
tests/e2e/test_existing_envoy.py, with the bootstrap of docs/existing-envoy.md."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import ServerProcess, UpstreamApp, wait_until
from tests.support.tls_server import LocalCa, TlsServer

pytestmark = pytest.mark.e2e

SPIFFE_A = "spiffe://interlock.local/ns/default/sa/a"


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
    assert report["proxies"]["complete"] and report["proxies"]["nacked"] == 0, (
        report,
        server.log()[-3000:],
    )


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


def dr_tls(tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "legacy", "namespace": "default"},
        "spec": {"host": "legacy", "trafficPolicy": {"tls": tls}},
    }


def test_a_destination_rule_originates_tls_simple_and_mutual(mesh: Mesh, tmp_path: Path) -> None:
    """A service outside the mesh's mTLS that speaks TLS with a CA of its own: the caller's
    app speaks plain HTTP to its sidecar, which originates TLS (SIMPLE) or mutual TLS (MUTUAL)
    as the DestinationRule says, verifying the server against the rule's CA and SAN."""
    ca = LocalCa(tmp_path, "legacy CA")
    server_pem = ca.issue("legacy.example", dns=["legacy.example"])
    client_pem = ca.issue("caller-a")
    tls_server = TlsServer(server_pem, client_ca=ca.pem)
    try:
        _, a = mesh.service("a", "a-1")
        with mesh.server.api() as api:
            assert api.put("/v1/services/legacy", json={"port": 8080}).is_success
            body = {"address": "127.0.0.1", "port": tls_server.port}
            assert api.put("/v1/services/legacy/instances/l-1", json=body).is_success
        # Plain text to a TLS server: no answer a caller can use.
        wait_until(lambda: get_via(a.outbound_port, "legacy").status_code >= 500, 10, what="5xx")

        simple = {
            "mode": "SIMPLE",
            "caCertificates": str(ca.pem),
            "sni": "legacy.example",
            "subjectAltNames": ["legacy.example"],
        }
        # SIMPLE shows no client certificate: this server requires one, so it still fails...
        apply(mesh.server, dr_tls(simple))
        assert get_via(a.outbound_port, "legacy").status_code >= 500
        # ... and MUTUAL presents the caller's, from files on the caller's host.
        mutual = {
            **simple,
            "mode": "MUTUAL",
            "clientCertificate": str(client_pem.certificate),
            "privateKey": str(client_pem.key),
        }
        apply(mesh.server, dr_tls(mutual))
        wait_until(lambda: get_via(a.outbound_port, "legacy").status_code == 200, 10, what="200")
        assert get_via(a.outbound_port, "legacy").json() == {"server": "tls", "client": "caller-a"}
        assert tls_server.sni[-1] == "legacy.example"

        # The server's certificate is verified: a SAN it does not have is refused.
        apply(mesh.server, dr_tls({**mutual, "subjectAltNames": ["other.example"]}))
        wait_until(lambda: get_via(a.outbound_port, "legacy").status_code >= 500, 10, what="5xx")
        stats = a.stats()
        failed = sum(
            v for k, v in stats.items() if "legacy" in k and k.endswith("ssl.fail_verify_san")
        )
        assert failed >= 1, {k: v for k, v in stats.items() if "legacy" in k and "ssl" in k}
    finally:
        tls_server.close()
