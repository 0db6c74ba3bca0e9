"""PeerAuthentication with real Envoys: sidecar-to-sidecar traffic is mTLS (the callee's app
learns the caller's SPIFFE ID), and a plain-text client reaching a sidecar's inbound port is
accepted or refused as the mode says — mesh-wide, per namespace, per workload and per port."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import Sidecar, wait_until

pytestmark = pytest.mark.e2e

SPIFFE_A = "spiffe://interlock.local/ns/default/sa/a"
SPIFFE_B = "spiffe://interlock.local/ns/default/sa/b"


def peer_auth(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def apply(mesh: Mesh, *documents: dict[str, Any]) -> None:
    """Apply the documents and wait until every proxy ACKed the revision."""
    with mesh.server.api() as api:
        r = api.post("/v1/resources", json=list(documents))
        assert r.status_code == 200, r.text
        revision = r.json()["revision"]
        report = api.get(f"/v1/revisions/{revision}", params={"wait": 15}, timeout=20).json()
    assert report["proxies"]["complete"] and report["proxies"]["nacked"] == 0, report


def delete(mesh: Mesh, namespace: str, name: str) -> None:
    with mesh.server.api() as api:
        r = api.delete(f"/v1/resources/PeerAuthentication/{namespace}/{name}")
        assert r.status_code == 200, r.text
        revision = r.json()["revision"]
        api.get(f"/v1/revisions/{revision}", params={"wait": 15}, timeout=20)


def via(caller: Sidecar, host: str = "b") -> dict[str, Any]:
    r = httpx.get(f"http://127.0.0.1:{caller.outbound_port}/", headers={"Host": host}, timeout=5)
    assert r.status_code == 200, r.text
    return dict(r.json())


def plaintext(callee: Sidecar) -> int | str:
    """A plain-text request straight at the callee's inbound port: its status, or the error."""
    try:
        r = httpx.get(f"http://127.0.0.1:{callee.inbound_port}/", timeout=3)
        return r.status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def uri_sans(sidecar: Sidecar) -> set[str]:
    """The URI SANs of the certificates the sidecar's Envoy presents (/certs)."""
    certs = httpx.get(f"{sidecar.admin_url}/certs", timeout=2).json()["certificates"]
    return {
        san["uri"]
        for cert in certs
        for chain in cert.get("cert_chain", [])
        for san in chain.get("subject_alt_names", [])
        if "uri" in san
    }


def test_permissive_by_default_strict_and_disable(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    _, b = mesh.service("b", "b-1")
    wait_until(lambda: via(a)["instance"] == "b-1", 10, what="a -> b")

    # PERMISSIVE (no policy): mTLS between sidecars, plain text accepted too.
    assert f"URI={SPIFFE_A}" in via(a)["xfcc"]
    assert f"By={SPIFFE_B}" in via(a)["xfcc"]
    assert plaintext(b) == 200
    wait_until(lambda: uri_sans(a) == {SPIFFE_A} and uri_sans(b) == {SPIFFE_B}, 5, what="/certs")

    # STRICT, mesh-wide: plain text is refused, sidecar to sidecar still works over mTLS.
    apply(mesh, peer_auth("default", "interlock-system", {"mtls": {"mode": "STRICT"}}))
    wait_until(lambda: plaintext(b) != 200, 5, what="plain text refused")
    assert isinstance(plaintext(b), str)  # the connection is closed, not answered
    assert f"URI={SPIFFE_A}" in via(a)["xfcc"]
    assert f"URI={SPIFFE_B}" in via(b, "a")["xfcc"]

    # DISABLE for the namespace (more specific than the mesh): plain text only.
    apply(mesh, peer_auth("default", "default", {"mtls": {"mode": "DISABLE"}}))
    wait_until(lambda: plaintext(b) == 200, 5, what="plain text accepted")
    # Callers follow: no mTLS to a DISABLE workload (once the old mTLS connection drained).
    wait_until(lambda: via(a)["xfcc"] == "", 10, what="a -> b in plain text")

    # Back to the mesh-wide STRICT.
    delete(mesh, "default", "default")
    wait_until(lambda: plaintext(b) != 200, 5, what="plain text refused again")
    wait_until(lambda: f"URI={SPIFFE_A}" in via(a)["xfcc"], 10, what="a -> b over mTLS")


def test_port_level_mtls_and_workload_selectors(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    b_apps = [mesh.app("b", "b-1"), mesh.app("b", "b-2")]
    b1 = mesh.sidecar("b", "b-1", b_apps[0], labels={"version": "v1"})
    b2 = mesh.sidecar("b", "b-2", b_apps[1], labels={"version": "v2"})
    seen = wait_until(
        lambda: {via(a)["instance"] for _ in range(10)} == {"b-1", "b-2"}, 10, what="both b"
    )
    assert seen

    # b is STRICT, except on b-1's port; a (not selected) stays PERMISSIVE.
    apply(
        mesh,
        peer_auth(
            "b",
            "default",
            {
                "selector": {"matchLabels": {"app": "b"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {str(b1.inbound_port): {"mode": "DISABLE"}},
            },
        ),
    )
    wait_until(lambda: plaintext(b2) != 200, 5, what="b-2 refuses plain text")
    assert plaintext(b1) == 200
    assert plaintext(a) == 200

    def answers() -> dict[str, str]:
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            body = via(a)
            seen[body["instance"]] = body["xfcc"]
        return seen

    # Plain text to the DISABLE port (once a's mTLS connection to it drained), mTLS to b-2.
    wait_until(lambda: answers()["b-1"] == "", 10, what="a -> b-1 in plain text")
    assert f"URI={SPIFFE_A}" in answers()["b-2"]

    # A selector on a label only v2 carries.
    apply(
        mesh,
        peer_auth(
            "b",
            "default",
            {"selector": {"matchLabels": {"version": "v1"}}, "mtls": {"mode": "STRICT"}},
        ),
    )
    wait_until(lambda: plaintext(b1) != 200, 5, what="b-1 refuses plain text")
    wait_until(lambda: plaintext(b2) == 200, 5, what="b-2 accepts plain text")
