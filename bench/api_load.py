"""B8 — REST registrations sustained for 60 s, on SQLite and on PostgreSQL.

A fresh `interlock server` (CPU 0) per database: SQLite in a temporary directory on disk (as a
user runs it: WAL, fsync on commit), PostgreSQL in a fresh schema of the test database (dropped
afterwards). The load comes from a separate process on CPU 1: ``clients`` asyncio coroutines,
each with its own keep-alive HTTP/1.1 connection, each sending ``PUT
/v1/services/reg-<s>/instances/<id>`` (a new instance every time, with the admin token) as
fast as answers come back (closed loop). A short sweep (4 s each) over the number of clients
first picks the one with the best throughput among those whose p99 meets the goal's 20 ms
(more clients queue more and raise p99 without raising the rate once the server is busy); if
none meets it, the one with the best throughput. Measured, not guessed: the API is one event
loop. PostgreSQL runs with the number SQLite picked.

Latency is client-side (send → full response), so it includes queueing in the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench import controlplane as cp
from bench.report import Figure
from bench.stats import ms, pct

PG_URL = os.environ.get(
    "INTERLOCK_BENCH_DATABASE_URL",
    os.environ.get(
        "INTERLOCK_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
)
SERVICES = 50
P99_GOAL_S = 0.020
RATE_GOAL = 1000.0  # registrations per second


async def _client(
    host: str,
    port: int,
    token: str,
    prefix: str,
    index: int,
    until: float,
    latencies: list[float],
    statuses: dict[int, int],
    tls: ssl.SSLContext | None = None,
) -> None:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    n = 0
    try:
        while time.monotonic() < until:
            service = f"reg-{(index + n) % SERVICES}"
            instance = f"{prefix}-{index}-{n}"
            n += 1
            body = json.dumps(
                {"address": f"10.1.{n // 250 % 250}.{n % 250 + 1}", "port": 8080}
            ).encode()
            request = (
                f"PUT /v1/services/{service}/instances/{instance} HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.monotonic()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            latencies.append(time.monotonic() - started)
            status = int(status_line.split()[1]) if status_line else 0
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _load_main(
    conn: Any,
    port: int,
    token: str,
    clients: int,
    seconds: float,
    prefix: str,
    cpus: Any,
    ca_pem: bytes | None = None,
) -> None:
    """Keep-alive clients (each connection's TLS handshake once, as a sidecar's client)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    tls = None
    if ca_pem is not None:
        tls = ssl.create_default_context(cadata=ca_pem.decode("ascii"))

    async def main() -> tuple[list[float], dict[int, int], float]:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(
            *(
                _client("127.0.0.1", port, token, prefix, i, until, latencies, statuses, tls)
                for i in range(clients)
            )
        )
        return latencies, statuses, time.monotonic() - started

    cpu0 = time.process_time()
    latencies, statuses, elapsed = asyncio.run(main())
    conn.send((latencies, statuses, elapsed, time.process_time() - cpu0))


def _load(
    server: cp.ControlPlane, clients: int, seconds: float
) -> tuple[list[float], dict[int, int], float, float]:
    """Run the load in a separate pinned process: (latencies, statuses, seconds, its CPU s)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    _, rest = cp.cores()
    proc = ctx.Process(
        target=_load_main,
        args=(
            child,
            server.api_port,
            server.admin_token,
            clients,
            seconds,
            uuid.uuid4().hex[:6],
            rest,
            server.ca_pem,
        ),
        daemon=True,
    )
    proc.start()
    try:
        if not parent.poll(seconds + 120):
            raise TimeoutError("the load generator did not finish")
        result: tuple[list[float], dict[int, int], float, float] = parent.recv()
        return result
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


@contextlib.contextmanager
def _pg_schema(url: str) -> Iterator[str]:
    """A fresh schema in the test database (dropped afterwards), as a URL."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            yield (
                make_url(url)
                .update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(hide_password=False)
            )
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


def _pg_available(url: str) -> str | None:
    """None if PostgreSQL answers at ``url``, else why not."""
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def _run_one(db: str, db_url: str | None, seconds: float, sweep: list[int]) -> Figure:
    cp_cpus, _ = cp.cores()
    with cp.workdir() as wd:
        server = cp.ControlPlane(wd, db_url, cpus=cp_cpus)
        try:
            server.start()
            api = server.api()
            for s in range(SERVICES):
                api.put(f"/v1/services/reg-{s}", json={"port": 8080}).raise_for_status()
            tried: dict[int, tuple[float, float]] = {}
            if len(sweep) > 1:
                for clients in sweep:
                    lat, statuses, elapsed, _ = _load(server, clients, 4.0)
                    done = statuses.get(200, 0) + statuses.get(201, 0)  # 201: a new instance
                    tried[clients] = (done / elapsed if elapsed else 0.0, pct(lat, 0.99))
                clients = _pick(tried)
            else:
                clients = sweep[0]
            m0 = server.metrics()
            c0 = server.cpu_seconds()
            lat, statuses, elapsed, gen_cpu = _load(server, clients, seconds)
            server_cpu = server.cpu_seconds() - c0
            m1 = server.metrics()
        finally:
            server.stop()
    ok = statuses.get(200, 0) + statuses.get(201, 0)
    rate = ok / elapsed
    p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
    errors = sum(n for s, n in statuses.items() if s not in (200, 201))
    _, _, buckets = cp.histogram_delta(m0, m1, "interlock_api_request_seconds", "PUT")
    server_p99 = cp.bucket_quantile(buckets, 0.99)
    sweep_note = (
        "; sweep " + ", ".join(f"{c} clients {r:,.0f}/s p99 {ms(p)}" for c, (r, p) in tried.items())
        if tried
        else ""
    )
    return Figure(
        "B8",
        f"REST registrations sustained {seconds:.0f} s ({db})",
        ">= 1,000/s, API p99 <= 20 ms",
        f"{rate:,.0f}/s, p99 {ms(p99)}",
        (rate >= RATE_GOAL and p99 <= P99_GOAL_S and errors == 0) if seconds >= 60 else None,
        {
            "per_second": rate,
            "p50": p50,
            "p99": p99,
            "errors": float(errors),
            "clients": float(clients),
            "server_cpu_per_request_ms": server_cpu / max(1, ok) * 1000,
            "server_p99_bucket": server_p99 if server_p99 is not None else float("nan"),
            "generator_cpu_fraction": gen_cpu / elapsed,
        },
        note=(
            f"{clients} keep-alive clients, p50 {ms(p50)}, {errors} errors; server "
            f"{server_cpu / max(1, ok) * 1000:.2f} ms CPU per registration"
            f" ({server_cpu / elapsed * 100:.0f}% of its core); "
            f"load generator {gen_cpu / elapsed * 100:.0f}% of CPU 1"
            + (f"; server-side p99 bucket <= {ms(server_p99)}" if server_p99 else "")
            + sweep_note
            + ("" if seconds >= 60 else "; shortened (quick)")
        ),
    )


def _pick(tried: dict[int, tuple[float, float]]) -> int:
    """The number of clients for the minute: the figure asks for a rate *and* a p99 at that
    rate, and the stored state (so p99) grows over the minute - a sweep p99 of 15 ms became
    21 ms over 60 s. Among the loads that reached the goal's rate with a fifth to spare: the
    best rate whose p99 is at most half the goal, else the lowest p99; if none reached it, the
    best rate."""
    enough = {c: (rate, p99) for c, (rate, p99) in tried.items() if rate >= RATE_GOAL * 1.2}
    roomy = {c: rate for c, (rate, p99) in enough.items() if p99 <= P99_GOAL_S / 2}
    if roomy:
        return max(roomy, key=lambda c: roomy[c])
    if enough:
        return min(enough, key=lambda c: enough[c][1])
    return max(tried, key=lambda c: tried[c][0])


def b8(quick: bool) -> list[Figure]:
    seconds = 10.0 if quick else 60.0
    sweep = [8] if quick else [2, 4, 8, 16, 32]
    figures = [_run_one("SQLite", None, seconds, sweep)]
    if quick:
        return figures
    why = _pg_available(PG_URL)
    if why is not None:
        figures.append(
            Figure(
                "B8",
                "REST registrations sustained 60 s (PostgreSQL)",
                ">= 1,000/s, API p99 <= 20 ms",
                "not run",
                None,
                note=f"PostgreSQL not reachable at the test URL: {why}",
            )
        )
        return figures
    with _pg_schema(PG_URL) as url:
        figures.append(_run_one("PostgreSQL", url, seconds, sweep))
    return figures
