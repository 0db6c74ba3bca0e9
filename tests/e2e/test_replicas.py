"""Two control-plane replicas on one PostgreSQL database share the work: a write through one
reaches the Envoys served by the other (LISTEN/NOTIFY), and either can restart alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.store.databases import fresh_pg_schema
from tests.support.mesh import ServerProcess, Sidecar, UpstreamApp, wait_until

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
