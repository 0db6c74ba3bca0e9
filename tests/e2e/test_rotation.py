"""Certificate rotation with real Envoys under mTLS traffic.

- Root rotation (`interlock ca rotate`, all three steps, both ADS variants): no request fails at
  any step, every sidecar ends up with a certificate of the new CA and a bundle of the new root
  only.
- Leaf renewal with a 60 s lifetime (one variant: it takes about 100 s): `/certs` shows a new
  serial 27-33 s after the previous certificate was issued, three times in a row, while an HTTP/2
  connection opened before the first renewal keeps working and no request fails.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import ServerProcess, Sidecar, Traffic, UpstreamApp, wait_until

pytestmark = pytest.mark.e2e


def certs(sidecar: Sidecar) -> list[dict[str, Any]]:
    data = httpx.get(f"{sidecar.admin_url}/certs", timeout=2).json()
    return list(data["certificates"])


def leaf_serials(sidecar: Sidecar) -> set[str]:
    return {c["serial_number"] for entry in certs(sidecar) for c in entry.get("cert_chain", [])}


def ca_serials(sidecar: Sidecar) -> set[str]:
    return {c["serial_number"] for entry in certs(sidecar) for c in entry.get("ca_cert", [])}


def root_serials(ca: dict[str, Any]) -> set[str]:
    return {root["serial"].lstrip("0") for root in ca["bundle"]}


def norm(serials: set[str]) -> set[str]:
    return {s.lower().lstrip("0") for s in serials}


def test_root_rotation_under_mtls_traffic_fails_no_request(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    _, b = mesh.service("b", "b-1")
    url = f"http://127.0.0.1:{a.outbound_port}/"
    wait_until(lambda: httpx.get(url, headers={"Host": "b"}, timeout=2).status_code == 200, 10)
    with mesh.server.api() as api:
        before = api.get("/v1/ca").json()
    old_root = norm(root_serials(before))
    assert norm(ca_serials(a)) == old_root

    with Traffic(url, "b", interval=0.01) as traffic:
        time.sleep(0.5)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "interlock.cli",
                "ca",
                "rotate",
                "--timeout",
                "60",
                "--control-plane",
                mesh.server.api_url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "INTERLOCK_TOKEN": mesh.server.admin_token},
        )
        assert out.returncode == 0, out.stdout + out.stderr
        time.sleep(0.5)
    progress = out.stderr
    assert "started" in progress and "the new CA signs" in progress
    assert "rotation is complete" in progress and "done" in progress

    assert traffic.results and traffic.failures() == [], traffic.failures()[:5]
    with mesh.server.api() as api:
        after = api.get("/v1/ca").json()
    assert after["phase"] == "idle" and after["step"] == 3
    new_root = norm(root_serials(after))
    assert new_root.isdisjoint(old_root)
    for sidecar in (a, b):

        def only_the_new_root(s: Sidecar = sidecar) -> bool:
            return norm(ca_serials(s)) == new_root

        wait_until(only_the_new_root, 5, what="new bundle only")
    # Still mTLS end to end, with certificates of the new CA.
    body = httpx.get(url, headers={"Host": "b"}, timeout=2).json()
    assert "URI=spiffe://interlock.local/ns/default/sa/a" in body["xfcc"]


# --- leaf renewal ---------------------------------------------------------------------------


class EchoService(grpc.GenericRpcHandler):
    """A gRPC app answering every unary call with its request (the upstream of an HTTP/2
    service: sidecar to sidecar and sidecar to app are HTTP/2 all the way)."""

    def service(self, handler_call_details: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(lambda request, context: request)


@pytest.fixture
def leaf_server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path, extra=["--leaf-lifetime", "60s"])
    srv.start()
    yield srv
    srv.stop()


def issued_at(sidecar: Sidecar) -> dict[str, float]:
    """serial → when it was issued (its expiry minus the 60 s lifetime), epoch seconds."""
    out = {}
    for entry in certs(sidecar):
        for c in entry.get("cert_chain", []):
            expiry = dt.datetime.fromisoformat(c["expiration_time"].replace("Z", "+00:00"))
            out[c["serial_number"]] = expiry.timestamp() - 60.0
    return out


@pytest.mark.parametrize("xds_protocol", ["delta"])
def test_leaf_certificates_renew_at_half_their_lifetime_without_breaking_a_connection(
    leaf_server: ServerProcess, tmp_path: Path, xds_protocol: str
) -> None:
    """SLOW (~100 s, one ADS variant only): three renewals of 60 s certificates."""
    grpc_app = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    grpc_app.add_generic_rpc_handlers([EchoService()])
    app_port = grpc_app.add_insecure_port("127.0.0.1:0")
    grpc_app.start()
    caller_app = UpstreamApp("a", "a-1")
    sidecars: list[Sidecar] = []
    channel: grpc.Channel | None = None
    try:
        a = Sidecar("a", "a-1", caller_app.port, leaf_server, tmp_path, xds_protocol)
        b = Sidecar(
            "b",
            "b-1",
            app_port,
            leaf_server,
            tmp_path,
            xds_protocol,
            extra=["--protocol", "grpc"],
        )
        sidecars += [a, b]
        a.start().wait_listening()
        b.start().wait_listening()

        # One HTTP/2 connection from the client to a's sidecar, opened now and kept open;
        # a's sidecar keeps one HTTP/2 (mTLS) connection to b's.
        channel = grpc.insecure_channel(
            f"127.0.0.1:{a.outbound_port}", options=[("grpc.default_authority", "b")]
        )
        echo: Any = channel.unary_unary("/echo.Echo/Say")
        wait_until(lambda: echo(b"hi", timeout=2) == b"hi", 15, what="gRPC through the mesh")

        cluster = "cluster.outbound|8080||b.default"
        first_cx = a.stats()[f"{cluster}.upstream_cx_total"]
        failures: list[str] = []
        calls = [0]
        stop = threading.Event()

        def call_forever() -> None:
            while not stop.is_set():
                try:
                    assert echo(b"ping", timeout=5) == b"ping"
                    calls[0] += 1
                except Exception as exc:
                    failures.append(repr(exc))
                stop.wait(0.02)

        caller = threading.Thread(target=call_forever, daemon=True)
        caller.start()
        issued = {sc.instance_id: issued_at(sc) for sc in (a, b)}
        renewals: dict[str, list[float]] = {"a-1": [], "b-1": []}
        deadline = time.monotonic() + 120
        while min(len(r) for r in renewals.values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.25)
            for sc in (a, b):
                now_serials = issued_at(sc)
                new = set(now_serials) - set(issued[sc.instance_id])
                if new:
                    previous = max(issued[sc.instance_id].values())
                    renewals[sc.instance_id].append(time.time() - previous)
                    issued[sc.instance_id] = now_serials
        stop.set()
        caller.join(10)

        print(f"\nseconds from issue to the next certificate in /certs: {renewals}")
        assert all(len(r) >= 3 for r in renewals.values()), renewals
        for instance, gaps in renewals.items():
            for gap in gaps[:3]:
                assert 27.0 <= gap <= 33.0, (instance, gaps)
        assert failures == [], failures[:5]
        assert calls[0] > 100
        # The connection opened before the first renewal is the one still in use.
        stats = a.stats()
        assert stats[f"{cluster}.upstream_cx_total"] == first_cx
        assert stats.get(f"{cluster}.upstream_cx_destroy", 0) == 0
        assert echo(b"after", timeout=2) == b"after"
    finally:
        if channel is not None:
            channel.close()
        for sc in sidecars:
            sc.stop()
        caller_app.close()
        grpc_app.stop(0)
