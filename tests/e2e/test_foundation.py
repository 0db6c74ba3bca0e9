"""The foundation slice end to end: a real server, real sidecars (Envoy), real requests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import Traffic, strip_volatile, wait_until

pytestmark = pytest.mark.e2e


def get_via(port: int, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=5)


def test_request_reaches_the_other_service_by_host_header_and_http_proxy(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")

    r = wait_until(
        lambda: (r := get_via(a.outbound_port, "b", "/hello")).status_code == 200 and r,
        10,
        what="b through a's outbound listener",
    )
    body = r.json()
    assert {k: body[k] for k in ("service", "instance", "path", "host")} == {
        "service": "b",
        "instance": "b-1",
        "path": "/hello",
        "host": "b",
    }
    # Sidecar to sidecar is mTLS by default (PERMISSIVE): b's app learns who called.
    assert "URI=spiffe://interlock.local/ns/default/sa/a" in body["xfcc"]

    # Every documented host form reaches the same service.
    for host in ("b:8080", "b.default", "b.default:8080", "b.default.svc.cluster.local"):
        assert get_via(a.outbound_port, host).json()["instance"] == "b-1", host

    # An app that uses HTTP_PROXY sends absolute-form requests (GET http://b/path).
    env_client = httpx.Client(trust_env=True, timeout=5)
    old = os.environ.get("HTTP_PROXY")
    os.environ["HTTP_PROXY"] = f"http://127.0.0.1:{a.outbound_port}"
    try:
        with httpx.Client(trust_env=True, timeout=5) as client:
            r = client.get("http://b/via-proxy")
    finally:
        env_client.close()
        if old is None:
            os.environ.pop("HTTP_PROXY", None)
        else:
            os.environ["HTTP_PROXY"] = old
    assert r.status_code == 200
    assert r.json()["service"] == "b" and r.json()["path"] == "/via-proxy"

    curl = shutil.which("curl")
    if curl:  # curl reads the proxy from lower-case http_proxy only
        out = subprocess.run(
            [curl, "-sS", "http://b/curl"],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, "http_proxy": f"http://127.0.0.1:{a.outbound_port}"},
        )
        assert out.returncode == 0 and out.stdout, f"curl failed: {out.stderr}"
        assert json.loads(out.stdout)["path"] == "/curl"

    # A host that names no service gets Envoy's 404, not somebody else's app.
    assert get_via(a.outbound_port, "nosuchservice").status_code == 404


def test_instances_join_and_leave_within_a_second_without_failed_requests(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    wait_until(lambda: get_via(a.outbound_port, "b").status_code == 200, 10, what="b reachable")

    with (
        Traffic(f"http://127.0.0.1:{a.outbound_port}/", "b", interval=0.01) as traffic,
        mesh.server.api() as api,
    ):
        # A second instance comes up through its own sidecar and starts receiving traffic.
        b2_app = mesh.app("b", "b-2")
        b2 = mesh.sidecar("b", "b-2", b2_app)
        wait_until(lambda: b2_app.hits_since(0), 10, what="traffic on b-2")
        instance = api.get("/v1/services/b/instances/b-2").json()

        # Deregister: within 1 s no request reaches b-2.
        t0 = time.monotonic()
        assert api.delete("/v1/services/b/instances/b-2").status_code in (200, 204)
        time.sleep(1.5)
        assert "b-2" not in traffic.landed_since(t0 + 1.0)
        assert b2_app.hits_since(t0 + 1.0) == 0

        # Register again: within 1 s requests reach both.
        body = {
            k: instance[k] for k in ("address", "port", "labels", "locality", "healthy", "sidecar")
        }
        t1 = time.monotonic()
        assert api.put("/v1/services/b/instances/b-2", json=body).status_code in (200, 201)
        wait_until(lambda: b2_app.hits_since(t1), 1.0, what="b-2 back in rotation within 1 s")
        time.sleep(0.3)
        assert {"b-1", "b-2"} <= traffic.landed_since(t1)
        assert b2.proc is not None and b2.proc.poll() is None

    assert traffic.results, "the traffic generator sent nothing"
    assert traffic.failures() == []


def test_a_service_with_no_instances_answers_503_at_once(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    b_app = mesh.app("b", "b-1")
    b = mesh.sidecar("b", "b-1", b_app)
    wait_until(lambda: get_via(a.outbound_port, "b").status_code == 200, 10, what="b reachable")

    with mesh.server.api() as api:
        assert api.delete("/v1/services/b/instances/b-1").status_code in (200, 204)
    wait_until(lambda: get_via(a.outbound_port, "b").status_code == 503, 2, what="503 for b")
    started = time.monotonic()
    r = get_via(a.outbound_port, "b")
    elapsed = time.monotonic() - started
    assert r.status_code == 503
    assert elapsed < 1.0, f"a request to a service with no instances hung for {elapsed:.2f}s"
    assert b.proc is not None and b.proc.poll() is None  # b's sidecar still runs; b just left


def test_control_plane_down_for_10s_then_restarted_loses_nothing(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    _, b = mesh.service("b", "b-1")
    wait_until(lambda: get_via(a.outbound_port, "b").status_code == 200, 10, what="b reachable")
    wait_until(lambda: get_via(b.outbound_port, "a").status_code == 200, 10, what="a reachable")
    time.sleep(0.5)  # let every proxy ACK
    before = {sc.instance_id: strip_volatile(sc.config_dump()) for sc in (a, b)}

    with Traffic(f"http://127.0.0.1:{a.outbound_port}/", "b", interval=0.01) as traffic:
        time.sleep(0.5)
        mesh.server.kill()
        time.sleep(10.0)  # the proxies run on their last config for 10 s without a control plane
        mesh.server.start()
        for sc in (a, b):  # each Envoy reconnects to the new server process
            wait_until(
                lambda sc=sc: sc.stats().get("control_plane.connected_state") == 1,
                15,
                what=f"{sc.instance_id} reconnected",
            )
        time.sleep(1.0)

    assert traffic.results and traffic.failures() == []
    after = {sc.instance_id: strip_volatile(sc.config_dump()) for sc in (a, b)}
    assert after == before
