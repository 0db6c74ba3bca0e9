"""The xDS path is TLS, and Envoy trusts exactly the control plane.

- An xDS server with a certificate from the mesh's own CA but another SPIFFE ID (what a
  compromised sidecar holds) is refused by Envoy's ``interlock_xds`` cluster: it gets no config.
- The control plane's certificate is renewed before it expires on both ports, while every
  stream opened before the renewal stays open and keeps receiving changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509

from interlock.ca import RotationState, SpiffeId, load_kek
from interlock.ca.storage import unseal_ca_key
from tests.e2e.conftest import Mesh
from tests.support.mesh import ServerProcess, UpstreamApp, wait_until
from tests.support.net import free_port, free_ports

pytestmark = pytest.mark.e2e


def served_serial(port: int) -> int:
    """The serial of the certificate a new TLS connection to ``port`` is shown."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def envoy_stats(admin_port: int) -> dict[str, int]:
    text = httpx.get(f"http://127.0.0.1:{admin_port}/stats", timeout=2).text
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():
            out[name] = int(value)
    return out


def xds_streams(server: ServerProcess, node_id: str) -> list[tuple[int, str]]:
    """The xDS streams the control plane holds for ``node_id``: (stream id, opened at)."""
    with server.api() as api:
        proxy = api.get(f"/v1/proxies/{node_id}").json()
    return [(s["stream_id"], s["connected_since"]) for s in proxy["streams"]]


def mesh_ca(server: ServerProcess) -> Any:
    """The server's signing CA, unsealed from its store with its KEK (as an attacker holding
    both would): to make a certificate the mesh trusts."""
    db = Path(server.db_url.removeprefix("sqlite:///"))
    kek = load_kek(str(db.with_name(db.name + ".kek")), None)
    engine = sa.create_engine(server.db_url)
    try:
        with engine.connect() as conn:
            (state_json,) = conn.exec_driver_sql("SELECT state FROM ca_state").one()
            state = RotationState.from_json(state_json)
            key_id = state.signing.key_id
            (sealed,) = conn.exec_driver_sql(
                "SELECT sealed FROM ca_keys WHERE key_id = ?", (key_id,)
            ).one()
    finally:
        engine.dispose()
    return state.authority(unseal_ca_key(bytes(sealed), kek, key_id), clock=_now)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ImpostorXds:
    """A gRPC server on 127.0.0.1 holding a certificate of the mesh's CA for a workload's
    identity (DNS localhost, IP 127.0.0.1): everything but the control plane's SPIFFE ID."""

    def __init__(self, ca: Any) -> None:
        import ipaddress

        svid = ca.issue_svid(
            SpiffeId.for_service(ca.trust_domain, "default", "a"),
            lifetime=dt.timedelta(hours=1),
            dns_names=["localhost"],
            ip_addresses=[ipaddress.ip_address("127.0.0.1")],
        )
        self.port = free_port()
        self.handshakes = 0
        self._creds = grpc.ssl_server_credentials([(svid.key_pem, svid.certificate_chain_pem())])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            server = grpc.aio.server()
            server.add_secure_port(f"127.0.0.1:{self.port}", self._creds)
            await server.start()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await server.stop(0)

        self._loop.run_until_complete(main())

    def __enter__(self) -> ImpostorXds:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_envoy_refuses_an_xds_server_with_another_identity_of_the_same_ca(
    server: ServerProcess, tmp_path: Path
) -> None:
    with server.api() as api:
        assert api.put("/v1/services/a", json={"port": 8080}).is_success
        body = {"address": "127.0.0.1", "port": 15006}
        assert api.put("/v1/services/a/instances/a-1", json=body).is_success
        token = api.post("/v1/services/a/instances/a-1/token").json()["token"]
    token_file = tmp_path / "xds-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    with ImpostorXds(mesh_ca(server)) as impostor:
        inbound, outbound, admin = free_ports(3)
        out = subprocess.run(
            [
                sys.executable, "-m", "interlock.cli", "bootstrap",
                "--service", "a", "--instance-id", "a-1", "--app-port", "9",
                "--inbound-port", str(inbound), "--outbound-port", str(outbound),
                "--admin-port", str(admin), "--xds", f"127.0.0.1:{impostor.port}",
                "--token-file", str(token_file), "--ca-dir", str(tmp_path / "ca"),
                "--control-plane", server.api_url,
            ],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        bootstrap = tmp_path / "bootstrap.yaml"
        bootstrap.write_text(out.stdout)
        log = tmp_path / "envoy.log"
        with log.open("wb") as out_file:
            envoy = subprocess.Popen(
                ["envoy", "-c", str(bootstrap), "--disable-hot-restart", "-l", "warning"],
                stdout=out_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            # The chain verifies (same CA): it is the SPIFFE ID that fails, every attempt.
            def refused() -> bool:
                assert envoy.poll() is None, log.read_text()
                stats = envoy_stats(admin)
                return stats.get("cluster.interlock_xds.ssl.fail_verify_san", 0) >= 2

            wait_until(refused, 15, what="Envoy to refuse the impostor's SAN")
            stats = envoy_stats(admin)
            assert stats.get("cluster.interlock_xds.ssl.handshake", 0) == 0
            assert stats.get("cluster.interlock_xds.ssl.fail_verify_error", 0) == 0
            assert stats.get("control_plane.connected_state", 0) == 0
            dump = httpx.get(f"http://127.0.0.1:{admin}/config_dump", timeout=2).json()
            assert not any(
                config.get(key)
                for config in dump["configs"]
                for key in ("dynamic_listeners", "dynamic_active_clusters")
            )
        finally:
            envoy.terminate()
            envoy.wait(10)


@pytest.fixture
def short_lived(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path, extra=["--leaf-lifetime", "16s"])
    srv.start()
    yield srv
    srv.stop()


def test_the_control_plane_certificate_renews_without_dropping_streams(
    short_lived: ServerProcess, tmp_path: Path
) -> None:
    mesh = Mesh(short_lived, tmp_path, "delta")
    try:
        _, a = mesh.service("a", "a-1")
        b_app = UpstreamApp("b", "b-1")
        mesh.apps.append(b_app)
        mesh.sidecar("b", "b-1", b_app)
        first = {p: served_serial(p) for p in (short_lived.api_port, short_lived.xds_port)}
        streams = xds_streams(short_lived, "a-1")
        # Renewed at half its 16 s lifetime (give or take 3%), on both ports.
        wait_until(
            lambda: all(served_serial(p) != s for p, s in first.items()),
            14,
            interval=0.5,
            what="a renewed control plane certificate",
        )
        # The stream opened before the renewal is the one that carries the next change.
        b2 = UpstreamApp("b", "b-2")
        mesh.apps.append(b2)
        mesh.sidecar("b", "b-2", b2)
        url = f"http://127.0.0.1:{a.outbound_port}/"
        wait_until(
            lambda: (
                {
                    httpx.get(url, headers={"Host": "b"}, timeout=2).json()["instance"]
                    for _ in range(10)
                }
                == {"b-1", "b-2"}
            ),
            10,
            what="the new instance in a's endpoints",
        )
        # The very stream (same id, same start) that was open before the renewal.
        assert xds_streams(short_lived, "a-1") == streams
        assert envoy_stats(a.admin_port)["control_plane.connected_state"] == 1
        # ... and the new certificate verifies for a new client, like the old one did.
        context = ssl.create_default_context(cafile=str(short_lived.ca_file))
        with (
            socket.create_connection(("127.0.0.1", short_lived.api_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            pass
    finally:
        mesh.close()
