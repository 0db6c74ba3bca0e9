"""The registry tells the truth, with real Envoys in both xDS variants: an instance whose app
and sidecar are killed leaves every caller's endpoints within the instance TTL (and comes back
with its proxy), an app that fails its sidecar's probe leaves and comes back, an unhealthy
instance's sidecar still serves its own outbound, and Envoy's own active health checks keep a
failing endpoint out of a caller's load balancing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import ServerProcess, Sidecar, Traffic, wait_until
from tests.support.net import free_ports, wait_for_port

pytestmark = pytest.mark.e2e

TTL = 3.0
CLUSTER_B = "outbound|8080||b.default"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """The mesh's server with a short instance TTL (the e2e conftest's ``mesh`` takes it)."""
    srv = ServerProcess(tmp_path, extra=["--instance-ttl", f"{TTL:g}s"])
    srv.start()
    yield srv
    srv.stop()


def endpoints(sidecar: Sidecar, cluster: str = CLUSTER_B) -> dict[str, str]:
    """``host:port`` → health flags of ``cluster``'s hosts in ``sidecar``'s Envoy."""
    text = httpx.get(f"{sidecar.admin_url}/clusters", timeout=2).text
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, _, rest = line.partition("::")
        if name != cluster:
            continue
        host, _, field = rest.partition("::")
        if field.startswith("health_flags::"):
            found[host] = field.removeprefix("health_flags::")
    return found


def inbound_of(sidecar: Sidecar) -> str:
    return f"127.0.0.1:{sidecar.inbound_port}"


def instance(server: ServerProcess, service: str, instance_id: str) -> dict[str, Any]:
    with server.api() as api:
        r = api.get(f"/v1/services/{service}/instances/{instance_id}")
        r.raise_for_status()
        return dict(r.json())


class AppProcess:
    """A demo app in a process of its own, so that it can be SIGKILLed."""

    def __init__(self, name: str, instance_id: str) -> None:
        (self.port,) = free_ports(1)
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "interlock.demo.apps"),
                *("--name", name, "--instance", instance_id, "--port", str(self.port)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def test_a_killed_instance_leaves_within_the_ttl_and_returns_with_its_proxy(
    mesh: Mesh, server: ServerProcess
) -> None:
    _, a = mesh.service("a", "a-1")
    _, b1 = mesh.service("b", "b-1")
    b2_app = AppProcess("b", "b-2")
    try:
        b2 = mesh.sidecar("b", "b-2", b2_app)
        wait_until(
            lambda: set(endpoints(a)) == {inbound_of(b1), inbound_of(b2)},
            20,
            what="both b instances in a's endpoints",
        )
        url = f"http://127.0.0.1:{a.outbound_port}/hello"
        with Traffic(url, "b", interval=0.02) as warm:
            wait_until(lambda: len(warm.landed_since(0)) == 2, 10, what="traffic to b-1 and b-2")
        # kill -9 the app and the sidecar (its Envoy is in the sidecar's process group) between
        # two requests: nothing is in flight to it, every later request finds it gone.
        assert b2.proc is not None
        os.killpg(b2.proc.pid, signal.SIGKILL)
        b2_app.kill()
        killed = time.monotonic()
        time.sleep(0.3)  # a's Envoy sees the pooled connections to b-2 close
        with Traffic(url, "b", interval=0.02) as window:
            wait_until(
                lambda: instance(server, "b", "b-2")["healthy"] is False,
                TTL + 4,
                interval=0.1,
                what="b-2 unhealthy in the API",
            )
            unhealthy_after = time.monotonic() - killed
            wait_until(
                lambda: inbound_of(b2) not in endpoints(a),
                TTL + 4,
                interval=0.1,
                what="b-2 gone from a's endpoints",
            )
            gone_after = time.monotonic() - killed
            time.sleep(0.3)
        assert unhealthy_after <= TTL + 2, unhealthy_after
        assert gone_after <= TTL + 2, gone_after
        assert window.results and window.failures() == [], window.failures()[:5]
        assert window.landed_since(0) == {"b-1"}
        shown = instance(server, "b", "b-2")["health"]
        assert shown["status"] == "unhealthy" and "no xDS stream" in shown["reason"], shown
        # b-2 started again (a new app and sidecar): its proxy reconnected, it is back.
        b2_app = AppProcess("b", "b-2")
        again = mesh.sidecar("b", "b-2", b2_app)
        wait_until(lambda: inbound_of(again) in endpoints(a), 20, what="b-2 back in a's endpoints")
        assert instance(server, "b", "b-2")["healthy"] is True
    finally:
        b2_app.kill()


def test_an_app_failing_its_probe_leaves_and_returns_and_its_sidecar_still_calls_out(
    mesh: Mesh, server: ServerProcess
) -> None:
    a_app, a = mesh.service("a", "a-1")
    _, b1 = mesh.service("b", "b-1")
    b2_app = mesh.app("b", "b-2")
    probe = ["--health-path", "/healthz", "--health-interval", "0.2s"]
    probe += ["--health-unhealthy-threshold", "2", "--health-healthy-threshold", "2"]
    b2 = mesh.sidecar("b", "b-2", b2_app, extra=probe)
    both = {inbound_of(b1), inbound_of(b2)}
    wait_until(lambda: set(endpoints(a)) == both, 20, what="both b instances in a's endpoints")

    url = f"http://127.0.0.1:{a.outbound_port}/hello"
    with Traffic(url, "b", interval=0.02) as traffic:
        b2_app.health_status = 503
        started = time.monotonic()
        wait_until(lambda: inbound_of(b2) not in endpoints(a), 10, what="b-2 out of a's endpoints")
        left_after = time.monotonic() - started
        shown = instance(server, "b", "b-2")
        assert shown["healthy"] is False
        assert "GET http://127.0.0.1:" in shown["health"]["reason"], shown
        assert "HTTP 503 (2 failures in a row)" in shown["health"]["reason"], shown
        # Unhealthy, b-2's own sidecar still has its whole config: its app can call a.
        r = httpx.get(f"http://127.0.0.1:{b2.outbound_port}/x", headers={"Host": "a"}, timeout=5)
        assert (r.status_code, r.json()["service"]) == (200, "a")
        out = time.monotonic()
        time.sleep(0.5)
        assert traffic.landed_since(out + 0.2) == {"b-1"}
        b2_app.health_status = 200
        wait_until(lambda: set(endpoints(a)) == both, 10, what="b-2 back in a's endpoints")
    assert left_after < 3, left_after
    assert traffic.failures() == [], traffic.failures()[:5]
    assert instance(server, "b", "b-2")["health"]["reason"] == "its app probe passes"
    assert a_app.hits_since(0) >= 1


@pytest.mark.parametrize("xds_protocol", ["delta"])  # clusters are the same in both variants
def test_envoy_health_checks_keep_a_failing_endpoint_out(mesh: Mesh, server: ServerProcess) -> None:
    with server.api() as api:
        check = {"path": "/healthz", "interval": "300ms", "timeout": "200ms"}
        check |= {"unhealthy_threshold": 1, "healthy_threshold": 1}
        body = {"port": 8080, "health_check": check}
        assert api.put("/v1/services/b", json=body).is_success
    _, a = mesh.service("a", "a-1")
    _, b1 = mesh.service("b", "b-1")
    b2_app, b2 = mesh.service("b", "b-2")
    wait_until(
        lambda: set(endpoints(a)) == {inbound_of(b1), inbound_of(b2)}, 20, what="b endpoints"
    )
    url = f"http://127.0.0.1:{a.outbound_port}/hello"
    with Traffic(url, "b", interval=0.02) as traffic:
        b2_app.health_status = 503
        wait_until(
            lambda: "failed_active_hc" in endpoints(a).get(inbound_of(b2), ""),
            10,
            what="a's Envoy failing b-2's health check",
        )
        out = time.monotonic()
        time.sleep(0.5)
        assert traffic.landed_since(out + 0.1) == {"b-1"}, endpoints(a)
        b2_app.health_status = 200
        wait_until(
            lambda: endpoints(a).get(inbound_of(b2)) == "healthy", 10, what="b-2 healthy again"
        )
    assert traffic.failures() == []
    # The registry is not involved: b-2 stayed registered healthy throughout.
    assert instance(server, "b", "b-2")["healthy"] is True
