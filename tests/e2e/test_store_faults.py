"""The control plane outlives its database's faults, with real Envoys (issue 19 items 6, 7).

- SQLite held locked by another process past the busy timeout: writes answer 503 quickly
  (problem+json, ``Retry-After``), nothing stays wedged, and once the lock is released the
  next write reaches Envoy within 2 s.
- PostgreSQL paused for 30 s (a TCP proxy in front of it stops forwarding) under traffic: no
  request between the sidecars fails, the API (token check included) answers 503 within a
  few seconds instead of hanging, ``/healthz`` names the store and the reconciler's failures
  are counted; after it, a write reaches both Envoys within 2 s and the certificates that fell
  due during the outage are renewed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.api.problems import assert_problem
from tests.e2e.conftest import Mesh
from tests.store.databases import fresh_pg_schema
from tests.support.mesh import ServerProcess, Sidecar, Traffic, wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e]

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def clusters(sidecar: Sidecar) -> set[str]:
    return {
        c["cluster"]["name"]
        for cfg in sidecar.config_dump()["configs"]
        if cfg["@type"].endswith(".ClustersConfigDump")
        for c in cfg.get("dynamic_active_clusters", [])
    }


def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_sqlite_lock_past_the_busy_timeout_is_503_then_nothing_is_wedged(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path, extra=["--db-timeout", "0.5s"])
    mesh = Mesh(server, tmp_path, "delta")
    locker: subprocess.Popen[str] | None = None
    try:
        server.start()
        _, web = mesh.service("web", "web-1")
        db_path = str(make_url(server.db_url).database)
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, db_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        with server.api() as api:
            # Held past the busy timeout: a clean 503 at once, not a hung request.
            for _ in range(3):
                response, took = timed(lambda: api.put("/v1/services/held", json={"port": 8080}))
                body = assert_problem(response, 503)
                assert response.headers["Retry-After"] == "1"
                assert "locked" in body["detail"], body
                assert took < 3.0, took
            time.sleep(1.5)  # the liveness sweep's writes fail meanwhile, every second
            # Reads are not blocked (WAL): the server is healthy, only writes wait.
            assert api.get("/healthz").status_code == 200

            assert locker.stdin is not None
            locker.stdin.write("\n")
            locker.stdin.flush()
            assert locker.wait(10) == 0
            released = time.monotonic()
            assert api.put("/v1/services/late", json={"port": 8080}).status_code == 201
            wait_until(
                lambda: "outbound|8080||late.default" in clusters(web),
                2.0,
                what="the first write after the lock in Envoy",
            )
            print(f"write after release in Envoy {time.monotonic() - released:.2f}s")
            assert api.get("/readyz").status_code == 200
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
            locker.wait(5)
        mesh.close()
        server.stop()


# -- PostgreSQL paused for 30 s ------------------------------------------------------------

PAUSE_S = 30.0
LEAF_LIFETIME_S = 50.0
JITTER_S = LEAF_LIFETIME_S * 0.03  # renewal is due at half the lifetime, give or take this
_EXPIRY = re.compile(
    r'^interlock_proxy_certificate_expiry_seconds\{[^}]*proxy="(?P<proxy>[^"]+)"[^}]*\} '
    r"(?P<value>\S+)$",
    re.M,
)
_ERRORS = re.compile(r'^interlock_reconcile_errors_total\{stage="(\w+)"\} (\S+)$', re.M)


def metrics(api: httpx.Client) -> str:
    response = api.get("/metrics")
    response.raise_for_status()
    return response.text


def expiry_margins(api: httpx.Client) -> dict[str, float]:
    return {m["proxy"]: float(m["value"]) for m in _EXPIRY.finditer(metrics(api))}


def serials(sidecar: Sidecar) -> set[str]:
    data = httpx.get(f"{sidecar.admin_url}/certs", timeout=2).json()
    return {
        c["serial_number"] for entry in data.get("certificates", []) for c in entry["cert_chain"]
    }


@pytest.fixture
def paused_pg(postgres_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """A fresh schema on the test PostgreSQL, reached through a proxy the test can pause."""
    with fresh_pg_schema(postgres_url) as url:
        parsed = make_url(url)
        proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        try:
            yield parsed.set(port=proxy.port).render_as_string(hide_password=False), proxy
        finally:
            proxy.close()


@pytest.mark.postgres
def test_postgresql_paused_30s_under_traffic(
    paused_pg: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    db_url, proxy = paused_pg
    server = ServerProcess(
        tmp_path,
        db_url=db_url,
        extra=["--db-timeout", "1s", "--leaf-lifetime", f"{LEAF_LIFETIME_S:g}s"],
    )
    mesh = Mesh(server, tmp_path, "delta")
    try:
        server.start()
        _, web = mesh.service("web", "web-1")
        _, shop = mesh.service("shop", "shop-1")
        url = f"http://127.0.0.1:{web.outbound_port}/"
        wait_until(lambda: httpx.get(url, headers={"Host": "shop"}).status_code == 200, 10)
        with server.api() as api:
            before, measured = expiry_margins(api), time.monotonic()
            assert set(before) == {"web-1", "shop-1"}, before
            held = {sc.instance_id: serials(sc) for sc in (web, shop)}

            with Traffic(url, "shop", interval=0.02) as traffic:
                time.sleep(0.5)
                paused_at = time.monotonic()
                with proxy.paused():
                    time.sleep(3)  # past the token cache: every request checks its token
                    unknown = {"Authorization": "Bearer not-a-token"}
                    for call in (
                        lambda: api.get("/v1/services"),
                        lambda: api.get("/v1/services", headers=unknown),
                        lambda: api.put("/v1/services/during", json={"port": 8080}),
                    ):
                        response, took = timed(call)
                        assert_problem(response, 503)
                        assert response.headers["Retry-After"] == "1"
                        assert took < 6.0, (response.request.url, took)
                        request = response.request
                        print(f"{request.method} {request.url.path}: 503 in {took:.1f}s")
                    response, took = timed(lambda: api.get("/healthz"))
                    assert_problem(response, 503, "store")
                    assert took < 6.0, took
                    assert_problem(api.get("/readyz"), 503)
                    time.sleep(max(0.0, paused_at + PAUSE_S - time.monotonic()))
                resumed = time.monotonic()
                # Every certificate fell due for renewal during the outage, none before it.
                for margin in before.values():
                    due = measured + margin - LEAF_LIFETIME_S / 2
                    assert paused_at < due - JITTER_S and due + JITTER_S < resumed, before
                assert api.put("/v1/services/late", json={"port": 8080}).status_code == 201
                wait_until(
                    lambda: all("outbound|8080||late.default" in clusters(s) for s in (web, shop)),
                    2.0,
                    what="the first write after the outage in both Envoys",
                )
                print(f"write after the outage in both Envoys {time.monotonic() - resumed:.2f}s")
                # Renewed after the outage, well before they expire.
                wait_until(
                    lambda: min(expiry_margins(api).values()) > LEAF_LIFETIME_S * 0.8,
                    10,
                    what="certificates renewed after the outage",
                )
                print(f"certificates renewed {time.monotonic() - resumed:.2f}s after the outage")
                for sc in (web, shop):
                    wait_until(lambda sc=sc: serials(sc) - held[sc.instance_id], 5)
                time.sleep(1.0)
            failures = traffic.failures()
            print(f"{len(traffic.results)} requests between the sidecars, {len(failures)} failed")
            assert len(traffic.results) > 1000, len(traffic.results)
            assert failures == [], failures[:5]
            errors = {stage: float(n) for stage, n in _ERRORS.findall(metrics(api))}
            assert errors.get("check", 0) >= 1, errors
            wait_until(lambda: api.get("/readyz").status_code == 200, 10, what="ready again")
    finally:
        mesh.close()
        server.stop()
