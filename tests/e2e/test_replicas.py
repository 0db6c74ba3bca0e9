"""Two control-plane replicas on one PostgreSQL database share the work: a write through one
reaches the Envoys served by the other (LISTEN/NOTIFY), and either can restart alone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.store.databases import fresh_pg_schema
from tests.support.mesh import ServerProcess, Sidecar, Traffic, UpstreamApp, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    with fresh_pg_schema(postgres_url) as url:
        yield url


def test_a_write_through_one_replica_reaches_proxies_of_the_other(
    pg_url: str, tmp_path: Path, xds_protocol: str
) -> None:
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    # Replicas share the CA's key-encryption key and the admin token (written by the first).
    shared = {"admin_token_file": tmp_path / "admin-token", "kek_file": tmp_path / "ca.kek"}
    r1 = ServerProcess(tmp_path / "r1", db_url=pg_url, **shared)  # type: ignore[arg-type]
    r2 = ServerProcess(tmp_path / "r2", db_url=pg_url, **shared)  # type: ignore[arg-type]
    apps = [UpstreamApp("a", "a-1"), UpstreamApp("b", "b-1")]
    sidecars: list[Sidecar] = []
    try:
        r1.start()
        r2.start()
        # a's Envoy is served by replica 1; b registers (and is served) through replica 2.
        a = Sidecar("a", "a-1", apps[0].port, r1, tmp_path, xds_protocol)
        b = Sidecar("b", "b-1", apps[1].port, r2, tmp_path, xds_protocol)
        sidecars += [a, b]
        a.start().wait_listening()
        b.start().wait_listening()

        def b_answers() -> bool:
            r = httpx.get(f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "b"}, timeout=2)
            return r.status_code == 200 and r.json()["instance"] == "b-1"

        wait_until(b_answers, 5, what="b (registered through replica 2) reachable from a")

        # Deregistering through replica 2 empties a's endpoints (served by replica 1).
        with r2.api() as api:
            assert api.delete("/v1/services/b/instances/b-1").status_code == 200
        wait_until(
            lambda: (
                httpx.get(
                    f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "b"}, timeout=2
                ).status_code
                == 503
            ),
            5,
            what="503 once b has no instance",
        )

        # Both replicas report the same revision.
        with r1.api() as one, r2.api() as two:
            assert one.get("/v1/revision").json() == two.get("/v1/revision").json()
    finally:
        for sc in sidecars:
            sc.stop()
        for app in apps:
            app.close()
        r1.stop()
        r2.stop()


def _served_by(replica: ServerProcess, node_id: str) -> bool:
    with replica.api() as api:
        items = api.get("/v1/proxies").json()["items"]
    return any(p["node_id"] == node_id for p in items)


def test_a_sidecar_moves_to_another_replica_when_its_replica_stops_answering(
    pg_url: str, tmp_path: Path
) -> None:
    """`--xds R1,R2` (and `--control-plane` both): SIGSTOP of the replica a's Envoy streams
    from (its TCP connection stays open, nothing answers) → within its HTTP/2 keepalive the
    stream is on the other replica, and no request a → b fails meanwhile (Envoy serves its
    last config; both instances stay healthy, their leases renewed by the live replica)."""
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    shared = {"admin_token_file": tmp_path / "admin-token", "kek_file": tmp_path / "ca.kek"}
    r1 = ServerProcess(tmp_path / "r1", db_url=pg_url, **shared)  # type: ignore[arg-type]
    r2 = ServerProcess(tmp_path / "r2", db_url=pg_url, **shared)  # type: ignore[arg-type]
    apps = [UpstreamApp("a", "a-1"), UpstreamApp("b", "b-1")]
    sidecars: list[Sidecar] = []
    stopped: ServerProcess | None = None
    try:
        r1.start()
        r2.start()
        both = [
            *("--xds", f"{r1.xds_address},{r2.xds_address}"),
            *("--control-plane", f"{r1.api_url},{r2.api_url}"),
        ]
        a = Sidecar("a", "a-1", apps[0].port, r1, tmp_path, extra=both)
        b = Sidecar("b", "b-1", apps[1].port, r1, tmp_path, extra=both)
        sidecars += [a, b]
        a.start().wait_listening()
        b.start().wait_listening()
        outbound = f"http://127.0.0.1:{a.outbound_port}/"
        wait_until(
            lambda: httpx.get(outbound, headers={"Host": "b"}, timeout=2).status_code == 200,
            10,
            what="b reachable from a",
        )
        using = wait_until(
            lambda: next((r for r in (r1, r2) if _served_by(r, "a-1")), None),
            10,
            what="a's stream on a replica",
        )
        other = r2 if using is r1 else r1

        with Traffic(outbound, "b", interval=0.05, max_seconds=50) as traffic:
            # An idle stream PINGed every 3 s is not GOAWAYed by the server (too_many_pings):
            # the connections Envoy opened (ADS, access logs) are still open after 15 s, past
            # the third early PING that gRPC's default policy would punish.
            time.sleep(15)
            stats = a.stats()
            assert stats["cluster.interlock_xds.upstream_cx_protocol_error"] == 0
            assert stats["cluster.interlock_xds.upstream_cx_destroy"] == 0
            assert using.proc is not None
            os.kill(using.proc.pid, signal.SIGSTOP)
            stopped = using
            started = time.monotonic()
            wait_until(lambda: _served_by(other, "a-1"), 20, 0.2, what="a on the other replica")
            moved_after = time.monotonic() - started
            time.sleep(2)  # traffic on the new stream too
        print(f"a's stream moved after {moved_after:.1f} s; {len(traffic.results)} requests")
        # Keepalive: PING every 3 s, 2 s to answer; one more try may land on the stopped
        # replica (round robin) before the live one, plus the reconnect back-off.
        assert moved_after < 12.0
        assert len(traffic.results) > 50
        assert traffic.failures() == []
    finally:
        if stopped is not None and stopped.proc is not None:
            os.kill(stopped.proc.pid, signal.SIGCONT)
        for sc in sidecars:
            sc.stop()
        for app in apps:
            app.close()
        r1.stop()
        r2.stop()
