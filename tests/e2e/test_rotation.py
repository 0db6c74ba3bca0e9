"""Certificate rotation with real Envoys under mTLS traffic.

- Root rotation (`interlock ca rotate`, all three steps, both ADS variants): no request fails at
  any step, every sidecar ends up with a certificate of the new CA and a bundle of the new root
  only.
- Leaf renewal with a 60 s lifetime (about 100 s; a delta pair and a SotW pair of sidecars share
  the wait): `/certs` shows a new serial 27-33 s after the previous certificate was issued, three
  times in a row, while an HTTP/2 connection opened before the first renewal keeps working and no
  request fails.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
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

    # Every xDS stream is TLS: the bundle each Envoy verifies the control plane with followed
    # the rotation (ca_serials above holds it too), so after a restart, whose certificate comes
    # from the new root, every proxy reconnects.
    assert mesh.server.ca_file.read_bytes().count(b"BEGIN CERTIFICATE") == 1
    # Re-issued under the new root during the rotation, without a restart: the bundle that
    # now holds only the new root verifies both ports.
    for port in (mesh.server.api_port, mesh.server.xds_port):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            mesh.server.tls().wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass
    mesh.server.stop()
    mesh.server.start()
    wait_until(
        lambda: (
            {p["node_id"] for p in mesh.server.api().get("/v1/proxies").json()["items"]}
            >= {"a-1", "b-1"}
        ),
        20,
        what="both proxies to reconnect after the restart",
    )
    mesh.service("b", "b-2")
    wait_until(
        lambda: (
            {httpx.get(url, headers={"Host": "b"}, timeout=2).json()["instance"] for _ in range(10)}
            == {"b-1", "b-2"}
        ),
        15,
        what="a new instance to reach a's Envoy through the restarted control plane",
    )


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


class _Pair:
    """A caller sidecar and a gRPC callee sidecar on one ADS variant, with one HTTP/2
    connection from a client to the caller's sidecar, opened once and kept open."""

    def __init__(
        self, server: ServerProcess, tmp_path: Path, protocol: str, caller: str, callee: str
    ) -> None:
        self.protocol = protocol
        self.callee_name = callee
        self.caller_app = UpstreamApp(caller, f"{caller}-1")
        self.sidecars: list[Sidecar] = []
        self.channel: grpc.Channel | None = None
        self.failures: list[str] = []
        self.calls = 0
        self.caller = Sidecar(
            caller, f"{caller}-1", self.caller_app.port, server, tmp_path, protocol
        )
        self.sidecars.append(self.caller)
        self.callee: Sidecar | None = None
        self.tmp_path = tmp_path
        self.server = server

    def start(self, app_port: int) -> None:
        self.callee = Sidecar(
            self.callee_name,
            f"{self.callee_name}-1",
            app_port,
            self.server,
            self.tmp_path,
            self.protocol,
            extra=["--protocol", "grpc"],
        )
        self.sidecars.append(self.callee)
        for sidecar in self.sidecars:
            sidecar.start()
        for sidecar in self.sidecars:
            sidecar.wait_listening()
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.caller.outbound_port}",
            options=[("grpc.default_authority", self.callee_name)],
        )
        self.echo: Any = self.channel.unary_unary("/echo.Echo/Say")
        wait_until(lambda: self.echo(b"hi", timeout=2) == b"hi", 15, what="gRPC through the mesh")

    @property
    def cluster(self) -> str:
        return f"cluster.outbound|8080||{self.callee_name}.default"

    def call_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                assert self.echo(b"ping", timeout=5) == b"ping"
                self.calls += 1
            except Exception as exc:
                self.failures.append(repr(exc))
            stop.wait(0.02)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        for sidecar in self.sidecars:
            sidecar.stop()
        self.caller_app.close()


def test_leaf_certificates_renew_at_half_their_lifetime_without_breaking_a_connection(
    leaf_server: ServerProcess, tmp_path: Path
) -> None:
    """SLOW (~100 s): three renewals of 60 s certificates, for a delta pair and a SotW pair
    of sidecars at once (the wait is the lifetime's, so both variants share it)."""
    grpc_app = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    grpc_app.add_generic_rpc_handlers([EchoService()])
    app_port = grpc_app.add_insecure_port("127.0.0.1:0")
    grpc_app.start()
    pairs = [
        _Pair(leaf_server, tmp_path, "delta", "a", "b"),
        _Pair(leaf_server, tmp_path, "sotw", "c", "d"),
    ]
    stop = threading.Event()
    callers: list[threading.Thread] = []
    try:
        for pair in pairs:
            pair.start(app_port)
        first_cx = {p.protocol: p.caller.stats()[f"{p.cluster}.upstream_cx_total"] for p in pairs}
        for pair in pairs:
            callers.append(threading.Thread(target=pair.call_until, args=(stop,), daemon=True))
            callers[-1].start()
        sidecars = [sc for pair in pairs for sc in pair.sidecars]
        issued = {sc.instance_id: issued_at(sc) for sc in sidecars}
        renewals: dict[str, list[float]] = {sc.instance_id: [] for sc in sidecars}
        deadline = time.monotonic() + 120
        while min(len(r) for r in renewals.values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # four sidecars polled in turn: keep the detection lag small
            for sc in sidecars:
                now_serials = issued_at(sc)
                new = set(now_serials) - set(issued[sc.instance_id])
                if new:
                    previous = max(issued[sc.instance_id].values())
                    renewals[sc.instance_id].append(time.time() - previous)
                    issued[sc.instance_id] = now_serials
        stop.set()
        for caller in callers:
            caller.join(10)

        print(f"\nseconds from issue to the next certificate in /certs: {renewals}")
        assert all(len(r) >= 3 for r in renewals.values()), renewals
        for instance, gaps in renewals.items():
            for gap in gaps[:3]:
                assert 27.0 <= gap <= 33.0, (instance, gaps)
        for pair in pairs:
            assert pair.failures == [], (pair.protocol, pair.failures[:5])
            assert pair.calls > 100, pair.protocol
            # The connection opened before the first renewal is the one still in use.
            stats = pair.caller.stats()
            assert stats[f"{pair.cluster}.upstream_cx_total"] == first_cx[pair.protocol]
            assert stats.get(f"{pair.cluster}.upstream_cx_destroy", 0) == 0
            assert pair.echo(b"after", timeout=2) == b"after"
    finally:
        stop.set()
        for pair in pairs:
            pair.close()
        grpc_app.stop(0)
