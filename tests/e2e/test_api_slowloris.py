"""A slowloris on the REST API never stops xDS: with the server held to 300 file descriptors,
hundreds of connections that never finish their TLS handshake or their headers leave room for a
new xDS stream to connect and get its config at once, and the API serves again as soon as the
header timeout has closed them."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import time
from pathlib import Path

import pytest

from interlock.xds.transport import resource_types as rt
from tests.e2e.test_abuse import proxy, register
from tests.support import mesh
from tests.support.mesh import ServerProcess, wait_until

pytestmark = pytest.mark.e2e

NOFILE = 300
SILENT = 320  # TCP connections that never start TLS
HALF_SENT = 40  # TLS connections that send half a request's headers


def closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        if isinstance(sock, ssl.SSLSocket):
            sock.setblocking(False)
            return sock.recv(1) == b""
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ssl.SSLWantReadError:
        return False
    except (ConnectionError, OSError):
        return True


async def test_a_slowloris_on_the_api_never_stops_xds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        mesh, "INTERLOCK", ["prlimit", f"--nofile={NOFILE}:{NOFILE}", *mesh.INTERLOCK]
    )
    server = ServerProcess(tmp_path, extra=["--api-header-timeout", "2s"])
    server.start()
    held: list[socket.socket] = []
    try:
        token = register(server, "a", "a-1", 21000)
        context = server.tls()
        for _ in range(HALF_SENT):
            raw = socket.create_connection(("127.0.0.1", server.api_port), timeout=5)
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
            tls.sendall(b"GET /v1/services HTTP/1.1\r\nHost: interlock\r\nX-Slow: ")
            held.append(tls)
        for _ in range(SILENT):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.api_port))
            held.append(sock)
        await asyncio.sleep(0.5)
        # More connections than the server has descriptors: a new xDS stream still gets in.
        started = time.monotonic()
        async with server.xds_channel() as channel, proxy(channel, "a", "a-1", token) as p:
            await p.subscribe(rt.CLUSTER)
            await p.recv_type(rt.CLUSTER, within=5)
        xds_seconds = time.monotonic() - started
        # The API serves again: a request waits for a slot the header timeout frees.
        started = time.monotonic()
        with server.api() as api:
            r = await asyncio.to_thread(api.get, "/v1/services", timeout=40)
        assert r.status_code == 200
        api_seconds = time.monotonic() - started
        # ... and every slow connection is closed by the server in the end.
        await asyncio.to_thread(
            wait_until,
            lambda: all(closed_by_peer(s) for s in held),
            40,
            0.2,
            "the server to close every slow connection",
        )
        print(
            f"\nxDS stream served in {xds_seconds:.2f} s under {len(held)} slow connections; "
            f"a REST request waited {api_seconds:.2f} s for a slot"
        )
        assert xds_seconds < 5
        assert server.proc is not None
        assert "Too many open files" not in server.log()
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
        server.stop()
