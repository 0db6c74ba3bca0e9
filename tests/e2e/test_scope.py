"""Per-proxy scope with real Envoys: a Sidecar limits what a proxy reaches, exportTo hides a
service (and a VirtualService) from other namespaces, and a change to a service is pushed only
to the proxies that can reach it."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import Sidecar
from tests.support.policies import apply, doc, landings

pytestmark = pytest.mark.e2e


def clusters(sc: Sidecar) -> set[str]:
    """The names of the clusters Envoy holds (its admin /clusters)."""
    text = httpx.get(f"{sc.admin_url}/clusters", timeout=2).text
    return {line.split("::", 1)[0] for line in text.splitlines() if "::" in line}


def update_attempts(sc: Sidecar) -> dict[str, int]:
    """Every xDS subscription counter of one Envoy (CDS, LDS, RDS and each cluster's EDS); the
    static cluster to the control plane counts its DNS refreshes there, not pushes."""
    return {
        k: v
        for k, v in sc.stats().items()
        if k.endswith(".update_attempt") and not k.startswith("cluster.interlock_xds.")
    }


def wait_revision(mesh: Mesh, response: httpx.Response) -> int:
    """Until every connected proxy ACKed the revision of a write's ``response``."""
    assert response.status_code in (200, 201), response.text
    revision = int(response.json()["revision"])
    with mesh.server.api() as api:
        report = api.get(f"/v1/revisions/{revision}", params={"wait": 15}, timeout=20).json()
    assert report["proxies"]["complete"] and not report["proxies"]["nacked"], report
    return revision


def sidecar(name: str, hosts: list[str], **spec: Any) -> dict[str, Any]:
    return doc("Sidecar", name, {"egress": [{"hosts": hosts}], **spec})


def test_a_sidecar_scopes_a_proxy_and_pushes_follow_its_scope(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    _, b = mesh.service("b", "b-1")
    mesh.service("c", "c-1")
    assert landings(a.outbound_port, "c", 3) == {"c-1": 3}

    apply(mesh.server, sidecar("a", ["./b"], workloadSelector={"labels": {"app": "a"}}))

    assert landings(a.outbound_port, "b", 5) == {"b-1": 5}
    assert landings(a.outbound_port, "c", 5) == {"status 404": 5}  # no route to c
    assert "outbound|8080||c.default" not in clusters(a)
    assert "outbound|8080||b.default" in clusters(a)
    # b has no Sidecar: it still reaches c.
    assert landings(b.outbound_port, "c", 3) == {"c-1": 3}
    assert "outbound|8080||c.default" in clusters(b)

    # A change to c's endpoints reaches b, which can call c, and sends a nothing at all.
    time.sleep(0.5)
    before_a, before_b = update_attempts(a), update_attempts(b)
    with mesh.server.api() as api:
        wait_revision(
            mesh,
            api.put(
                "/v1/services/c/instances/c-2",
                json={"address": "127.0.0.1", "port": mesh.app("c", "c-2").port},
            ),
        )
    time.sleep(1.0)
    assert update_attempts(a) == before_a
    eds_c = "cluster.outbound|8080||c.default.update_attempt"
    assert update_attempts(b)[eds_c] > before_b[eds_c]
    assert set(landings(b.outbound_port, "c", 20)) == {"c-1", "c-2"}


def test_export_to_hides_a_service_and_a_virtual_service_from_other_namespaces(
    mesh: Mesh,
) -> None:
    with mesh.server.api() as api:
        private = {"namespace": "default", "port": 8080, "export_to": ["."]}
        assert api.put("/v1/services/c", json=private).status_code == 201
    _, a = mesh.service("a", "a-1")
    mesh.service("c", "c-1")
    _, d = mesh.service("d", "d-1", extra=["--namespace", "team"])
    # A VirtualService of default, for default only: it tags c's responses.
    apply(
        mesh.server,
        doc(
            "VirtualService",
            "c",
            {
                "hosts": ["c.default.svc.cluster.local"],
                "exportTo": ["."],
                "http": [
                    {
                        "route": [{"destination": {"host": "c.default.svc.cluster.local"}}],
                        "headers": {"response": {"set": {"x-routed-by": "vs-c"}}},
                    }
                ],
            },
        ),
    )

    r = httpx.get(f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "c"}, timeout=5)
    assert r.status_code == 200 and r.headers.get("x-routed-by") == "vs-c"
    assert landings(d.outbound_port, "c.default", 5) == {"status 404": 5}
    assert "outbound|8080||c.default" not in clusters(d)
    assert "outbound|8080||a.default" in clusters(d)

    # Exported everywhere again: d reaches c, still without default's VirtualService.
    with mesh.server.api() as api:
        wait_revision(mesh, api.put("/v1/services/c", json={"namespace": "default", "port": 8080}))
    r = httpx.get(f"http://127.0.0.1:{d.outbound_port}/", headers={"Host": "c.default"}, timeout=5)
    assert r.status_code == 200 and "x-routed-by" not in r.headers
