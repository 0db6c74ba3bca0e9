"""A stalled proxy delays nobody: one real Envoy is SIGSTOPped while 1,000 writes happen; the
other Envoys converge within 2 s of the last write, the control plane's memory stays flat (a
stream that does not read is sent the newest state when it reads again, never a backlog), and
the stalled Envoy converges too once it runs again."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import ServerProcess, Sidecar, wait_until

pytestmark = pytest.mark.e2e

WRITES = 1000
FINAL_PORT = 20000 + WRITES


def envoy_pid(sidecar: Sidecar) -> int:
    """The Envoy process the sidecar supervises (its child)."""
    assert sidecar.proc is not None
    parent = sidecar.proc.pid
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"envoy" in Path(f"/proc/{entry}/cmdline").read_bytes():
                return int(entry)
    raise AssertionError(f"no Envoy under sidecar pid {parent}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def has_endpoint(sidecar: Sidecar, port: int) -> bool:
    text = httpx.get(f"{sidecar.admin_url}/clusters", timeout=2).text
    return any("churn" in line and f"::127.0.0.1:{port}::" in line for line in text.splitlines())


@pytest.fixture
def delta_mesh(server: ServerProcess, tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(server, tmp_path, "delta")
    try:
        yield m
    finally:
        m.close()


def test_a_stalled_envoy_delays_no_other_and_memory_stays_flat(
    server: ServerProcess, delta_mesh: Mesh
) -> None:
    with server.api() as api:
        assert api.put("/v1/services/churn", json={"port": 8080}).is_success
        body = {"address": "127.0.0.1", "port": 20000}
        assert api.put("/v1/services/churn/instances/churn-1", json=body).is_success
    sidecars = [delta_mesh.service(name, f"{name}-1")[1] for name in ("a", "b", "c")]
    for sc in sidecars:
        wait_until(lambda sc=sc: has_endpoint(sc, 20000), 15, what="the first endpoint")
    stalled, live = sidecars[0], sidecars[1:]
    assert server.proc is not None
    pid = envoy_pid(stalled)
    rss = {"before": rss_mb(server.proc.pid)}
    os.kill(pid, signal.SIGSTOP)
    try:
        done = [0]
        lock = threading.Lock()

        def writer(ports: range) -> None:
            with server.api() as api:
                for port in ports:
                    body = {"address": "127.0.0.1", "port": port}
                    r = api.put("/v1/services/churn/instances/churn-1", json=body)
                    assert r.is_success, r.text
                    with lock:
                        done[0] += 1
                        if done[0] == WRITES // 2:
                            rss["half"] = rss_mb(server.proc.pid)  # type: ignore[union-attr]

        threads = [
            threading.Thread(target=writer, args=(range(20001 + k, FINAL_PORT, 4),))
            for k in range(4)
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        with server.api() as api:  # the last write, alone: its port is the final state
            body = {"address": "127.0.0.1", "port": FINAL_PORT}
            assert api.put("/v1/services/churn/instances/churn-1", json=body).is_success
        last_write = time.monotonic()
        writing = last_write - started
        for sc in live:
            wait_until(lambda sc=sc: has_endpoint(sc, FINAL_PORT), 2.0, interval=0.02)
        converged = time.monotonic() - last_write
        rss["after"] = rss_mb(server.proc.pid)
    finally:
        os.kill(pid, signal.SIGCONT)
    print(
        f"\n{WRITES} writes in {writing:.1f} s; live Envoys converged {converged:.2f} s after "
        f"the last; server RSS MB before/half/after: {rss}"
    )
    assert done[0] == WRITES - 1
    # Flat: the second 500 writes cost no more memory than noise (nothing queues per write).
    assert rss["after"] - rss["half"] < 15, rss
    assert rss["after"] - rss["before"] < 40, rss
    wait_until(lambda: has_endpoint(stalled, FINAL_PORT), 15, what="the stalled Envoy, resumed")
