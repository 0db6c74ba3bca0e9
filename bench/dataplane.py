"""B11 — data plane: the latency two sidecars with mutual TLS add to a call, at 1,000 req/s.

Three ways to reach the same app (an Envoy answering 200 with a direct response: a fast,
steady upstream):

* **direct** — the load generator calls the app;
* **static** — through two Envoys configured by hand in a static bootstrap: the caller's
  (plain HTTP in, mTLS out with the ``client`` SVID, checking the server's SPIFFE ID) and the
  callee's (mTLS in, requiring a client SVID of the trust domain, plain to the app);
  certificates from the CA library ``interlock.ca``;
* **interlock** — through two `interlock sidecar` s (real Envoys driven over xDS by a real
  control plane on CPU 0, mTLS with SVIDs over SDS), calling the callee by Host header on the
  caller's outbound listener.

The load generator is a separate process on CPU 1 (with the Envoys): an asyncio open-loop
generator that schedules requests at a fixed rate over a pool of keep-alive connections and
measures each from its *scheduled* time (so a stall is not hidden by sending later). Its own
overhead is reported: the lateness of sends against the schedule and its CPU use; the direct
call's latency is the floor it adds to everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import controlplane as cp
from bench.report import Figure
from bench.stats import ms, pct
from tests.support.net import free_ports

RATE = 1000.0
POOL = 32
TRUST_DOMAIN = "interlock.local"


# -- the load generator -------------------------------------------------------------------------
async def _open_loop(
    port: int, host: str, rate: float, seconds: float
) -> tuple[list[float], list[float], int]:
    """Send ``rate``/s for ``seconds``; (latencies from schedule, send lateness, errors)."""
    request = (f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").encode()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(POOL):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    lateness: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        reader, writer = await pool.get()
        lateness.append(time.monotonic() - scheduled)
        try:
            writer.write(request)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if not status.startswith(b"HTTP/1.1 200"):
                errors += 1
            latencies.append(time.monotonic() - scheduled)
            pool.put_nowait((reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            writer.close()
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic() + 0.05
    total = int(rate * seconds)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return latencies, lateness, errors


def _generator_main(conn: Any, port: int, host: str, seconds: float, cpus: Any) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    asyncio.run(_open_loop(port, host, RATE, 1.0))  # warm-up: connections, caches
    cpu0 = time.process_time()
    started = time.monotonic()
    latencies, lateness, errors = asyncio.run(_open_loop(port, host, RATE, seconds))
    conn.send(
        (latencies, lateness, errors, (time.process_time() - cpu0) / (time.monotonic() - started))
    )


def _measure(port: int, host: str, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    _, rest = cp.cores()
    proc = ctx.Process(target=_generator_main, args=(child, port, host, seconds, rest), daemon=True)
    proc.start()
    try:
        if not parent.poll(seconds + 60):
            raise TimeoutError("the load generator did not finish")
        latencies, lateness, errors, cpu = parent.recv()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return {
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "n": float(len(latencies)),
        "errors": float(errors),
        "late_p99": pct(lateness, 0.99),
        "generator_cpu": cpu,
    }


# -- Envoys --------------------------------------------------------------------------------------
def _envoy(workdir: Path, name: str, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    from tests.support.envoy_validate import envoy_binary

    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    log = (workdir / f"{name}.log").open("ab")
    try:
        return subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(path),
                "--disable-hot-restart",
                "--log-level",
                "warning",
                "--base-id",
                str(int.from_bytes(os.urandom(2), "big")),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def _admin(port: int) -> dict[str, Any]:
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def _listener(name: str, port: int, cluster: str, tls: dict[str, Any] | None) -> dict[str, Any]:
    manager = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3."
                        "Router"
                    },
                }
            ],
        },
    }
    chain: dict[str, Any] = {"filters": [manager]}
    if tls is not None:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                "DownstreamTlsContext",
                **tls,
            },
        }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [chain],
    }


def _cluster(name: str, port: int, tls: dict[str, Any] | None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if tls is not None:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                "UpstreamTlsContext",
                **tls,
            },
        }
    return cluster


def _app_config(port: int, admin: int) -> dict[str, Any]:
    manager = _listener("app", port, "none", None)
    vhost = manager["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    vhost["virtual_hosts"][0]["routes"] = [
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
        }
    ]
    return {"admin": _admin(admin), "static_resources": {"listeners": [manager]}}


def _static_pair(
    workdir: Path, app_port: int
) -> tuple[list[subprocess.Popen[bytes]], int, list[int]]:
    """The two hand-configured Envoys; (processes, caller's port, admin ports)."""
    from interlock.ca import CertificateAuthority, SpiffeId

    ca = CertificateAuthority.create_root(TRUST_DOMAIN, cp_clock)
    root = ca.bundle_pem().decode()
    svids = {
        name: ca.issue_svid(
            SpiffeId.for_service(TRUST_DOMAIN, "default", name), lifetime=timedelta(hours=1)
        )
        for name in ("client", "server")
    }

    def common(name: str) -> dict[str, Any]:
        svid = svids[name]
        assert svid.key_pem is not None
        return {
            "tls_certificates": [
                {
                    "certificate_chain": {"inline_string": svid.certificate_chain_pem().decode()},
                    "private_key": {"inline_string": svid.key_pem.decode()},
                }
            ],
            "validation_context": {"trusted_ca": {"inline_string": root}},
        }

    client_port, server_port, admin_c, admin_s = free_ports(4)
    upstream = common("client")
    upstream["validation_context"]["match_typed_subject_alt_names"] = [
        {
            "san_type": "URI",
            "matcher": {"exact": f"spiffe://{TRUST_DOMAIN}/ns/default/sa/server"},
        }
    ]
    client = {
        "admin": _admin(admin_c),
        "static_resources": {
            "listeners": [_listener("out", client_port, "server", None)],
            "clusters": [_cluster("server", server_port, {"common_tls_context": upstream})],
        },
    }
    downstream = {"common_tls_context": common("server"), "require_client_certificate": True}
    server = {
        "admin": _admin(admin_s),
        "static_resources": {
            "listeners": [_listener("in", server_port, "app", downstream)],
            "clusters": [_cluster("app", app_port, None)],
        },
    }
    procs = [_envoy(workdir, "static-client", client), _envoy(workdir, "static-server", server)]
    return procs, client_port, [admin_c, admin_s]


def cp_clock() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _wait_200(port: int, host: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=2)
            if r.status_code == 200:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"no 200 on port {port} (Host {host}) in {timeout}s: {last!r}")


def b11(quick: bool) -> list[Figure]:
    from tests.support.mesh import Sidecar

    seconds = 5.0 if quick else 20.0
    results: dict[str, dict[str, float]] = {}
    cp_cpus, _ = cp.cores()
    with cp.workdir() as wd, contextlib.ExitStack() as stack:
        app_port, app_admin = free_ports(2)
        app = _envoy(wd, "app", _app_config(app_port, app_admin))
        stack.callback(cp.stop_process, app)
        _wait_200(app_port, "app")
        results["direct"] = _measure(app_port, "app", seconds)

        procs, client_port, _ = _static_pair(wd, app_port)
        for p in procs:
            stack.callback(cp.stop_process, p)
        _wait_200(client_port, "server")
        results["static"] = _measure(client_port, "server", seconds)
        for p in procs:
            cp.stop_process(p)

        server = cp.ControlPlane(wd, cpus=cp_cpus).start()
        stack.callback(server.stop)
        callee = Sidecar("server", "server-0", app_port, server, wd)  # type: ignore[arg-type]
        caller = Sidecar("client", "client-0", app_port, server, wd)  # type: ignore[arg-type]
        for s in (callee, caller):
            stack.callback(s.stop)
            s.start()
        for s in (callee, caller):
            s.wait_listening(timeout=60)
        _wait_200(caller.outbound_port, "server")
        results["interlock"] = _measure(caller.outbound_port, "server", seconds)
        xfcc_mtls = "URI=spiffe://" in httpx.get(
            f"http://127.0.0.1:{callee.inbound_port}/", timeout=2
        ).text or _mtls_in_stats(callee.admin_url)

    direct = results["direct"]
    added = {
        k: (v["p50"] - direct["p50"], v["p99"] - direct["p99"])
        for k, v in results.items()
        if k != "direct"
    }
    s50, s99 = added["static"]
    i50, i99 = added["interlock"]
    within = i50 <= s50 * 1.10 and i99 <= s99 * 1.10
    errors = sum(v["errors"] for v in results.values())
    numbers = {
        f"{k}_{m}": v[m]
        for k, v in results.items()
        for m in ("p50", "p99", "errors", "late_p99", "generator_cpu")
    }
    numbers.update({"static_added_p50": s50, "static_added_p99": s99, "interlock_added_p50": i50})
    numbers["interlock_added_p99"] = i99
    return [
        Figure(
            "B11",
            f"added latency of two mTLS sidecars at {RATE:,.0f} req/s (vs direct)",
            "within 10% of the same two Envoys configured statically",
            f"interlock +{ms(i50)} p50 / +{ms(i99)} p99; static +{ms(s50)} / +{ms(s99)}",
            (within and errors == 0) if not quick else None,
            numbers,
            note=(
                f"direct p50 {ms(direct['p50'])} p99 {ms(direct['p99'])}; "
                f"generator: sends late by p99 {ms(direct['late_p99'])}, "
                f"{direct['generator_cpu'] * 100:.0f}% of CPU 1; {errors:.0f} errors; "
                f"{seconds:.0f} s per configuration"
                + ("" if xfcc_mtls else "; mTLS between sidecars NOT confirmed")
                + ("; reduced duration (quick)" if quick else "")
            ),
        )
    ]


def _mtls_in_stats(admin_url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(f"{admin_url}/stats", params={"filter": "ssl.handshake"}, timeout=2).text
        return any(
            line.endswith(": 0") is False and "ssl.handshake" in line for line in text.splitlines()
        )
    return False
