"""B11 — data plane: the latency two sidecars with mutual TLS add to a call, at 1,000 req/s.

The goal says the sidecars must add no more than *the same two Envoys configured statically*:
the control plane is not on the request path. So the judged comparison holds the Envoy
configuration fixed and changes only how it was delivered (xDS or a static file). Four ways to
reach the same app (an Envoy answering 200 with a direct response: a fast, steady upstream):

* **direct** — the load generator calls the app;
* **interlock** — through two `interlock sidecar` s (real Envoys driven over xDS by a real
  control plane on CPU 0, mTLS with SVIDs over SDS), calling the callee by Host header on the
  caller's outbound listener;
* **static-identical** — the same two Envoy configurations, delivered statically. Once the
  sidecars serve the call, each sidecar Envoy's effective configuration is read from its admin
  ``/config_dump?include_eds`` and its bootstrap file (named on that Envoy's command line) and
  turned into one static bootstrap: the sidecar's bootstrap without ``dynamic_resources``;
  every active listener with each RDS reference replaced by the ``route_config`` it names;
  every active cluster, EDS ones as STATIC with the dumped ``load_assignment``; every SDS
  secret as a static secret of the same name, the references keeping their names and losing
  their ``sds_config``. config_dump redacts private keys, so certificates and keys are files: a
  fresh SVID with the same SPIFFE ID and key type, issued by ``interlock.ca``, and that CA's
  root as ``trusted_ca``. Only the listener ports (and the caller's endpoint for the callee)
  change, so both pairs run side by side. The access-log gRPC cluster stays ``interlock_xds``
  (the control plane keeps running) with the sidecar's own proxy token file, so the access
  logs go where the sidecars' go. Each bootstrap passes ``envoy --mode validate`` first, the
  two Envoys run with the sidecar Envoys' own command-line flags; their own config dumps are
  checked to hold the sidecars' listeners (routes inline) and clusters and secrets by name,
  and the sidecars' xDS versions are checked unchanged at the end (nothing was pushed while
  measuring);
* **minimal** (informational, not judged) — two hand-written static Envoys with mTLS and
  nothing else (the caller: plain HTTP in, mTLS out with the ``client`` SVID checking the
  server's SPIFFE ID; the callee: mTLS in, plain to the app). Its distance to static-identical
  is what the mesh's per-request features cost: JSON access logs to stdout and to the ALS,
  per-source virtual clusters, the always-present RBAC, local rate limit, fault and CORS
  filters, path normalization.

The load generator is a separate process on CPU 1 (with the Envoys): an asyncio open-loop
generator that schedules requests at a fixed rate over a pool of keep-alive connections and
measures each from its *scheduled* time (so a stall is not hidden by sending later). Its own
overhead is reported: the lateness of sends against the schedule and its CPU use; the direct
call's latency is the floor it adds to everything.

Sub-millisecond differences on a shared 2-core machine are noisy, so the ways are measured
interleaved, all four running side by side: rounds of every way for 3 s (1.5 s quick, each
after a 0.5 s warm-up on fresh client connections), the order rotated every round. A way's
added latency in a round is its p50 (p99) minus direct's p50 (p99) in the same round, so a slow
stretch of the machine shifts both; the figure is the median over rounds.

A round is *disturbed* when, in any of its segments, the generator sent late by more than
``LATE_LIMIT`` (3 ms) at p99 (about 1 ms on a quiet machine): CPU 1 was taken by something
else, and the Envoys beside the generator lost it too. At 1,000 req/s the rig itself keeps
CPU 1 about 85% busy (measured: ~0.13 ms of CPU per request in the app Envoy, ~0.55 ms in a
mesh-configured pair, 15-20% of the core in the generator), so a little outside load tips it
into queueing (32 connections: a 32 ms stall backs requests up) and its latencies then say
nothing about the proxies. Rounds go on until 5 are
undisturbed (3 quick) or the next would pass ~100 s (~36 s); the medians are of undisturbed
rounds only, and with fewer than ``MIN_CLEAN`` (3) of them the figure is not judged (n/a, the
note says why). Every round's p50/p99 and whether it was disturbed are in the numbers.

Interlock passes when its median added p50 and p99 are each at most static-identical's plus the
larger of 10% and an absolute floor: ``FLOOR_P50`` 50 µs, ``FLOOR_P99`` 100 µs. The floor is
the resolution of this rig, fixed beforehand, not fitted to a result: static-identical adds
only ~0.3-0.5 ms at p50 here, so 10% of it is 30-50 µs — below the generator's own timing
jitter (an asyncio loop in Python, sends ~1 ms late at p99 even when quiet) — and a 3 s p99 is
the 30th-slowest of 3,000 samples, which a single scheduler stall moves by more than 0.1 ms.
As a check that does not depend on timing, the CPU time the way's two Envoys spend per
request (from /proc) is reported too; the same configuration should cost the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench import controlplane as cp
from bench.report import Figure
from bench.static_config import (
    Credentials,
    admin_address,
    cp_clock,
    envoy_command,
    same_request_path,
    split_config_flag,
    static_identical,
    xds_versions,
)
from bench.stats import pct
from tests.support.net import free_ports

RATE = 1000.0
POOL = 32
TRUST_DOMAIN = "interlock.local"
WARMUP = 0.5  # seconds at RATE on fresh connections before each measured segment
FLOOR_P50 = 50e-6  # absolute tolerance floors: the rig's resolution (see the docstring)
FLOOR_P99 = 100e-6
LATE_LIMIT = 3e-3  # generator sends later than this at p99: CPU 1 was busy elsewhere
MIN_CLEAN = 3  # fewer undisturbed rounds than this: not judged
VALIDATE_FLAGS = ("--disable-hot-restart", "--log-level", "warning")
WAYS = ("direct", "interlock", "identical", "minimal")
LABELS = {"interlock": "interlock", "identical": "static-identical", "minimal": "minimal"}


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


def _generator_main(conn: Any, cpus: Any) -> None:
    """Serve measurement requests ``(port, host, seconds)`` until ``None``."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    while (job := conn.recv()) is not None:
        port, host, seconds = job
        asyncio.run(_open_loop(port, host, RATE, WARMUP))  # connections, caches
        cpu0 = time.process_time()
        started = time.monotonic()
        latencies, lateness, errors = asyncio.run(_open_loop(port, host, RATE, seconds))
        cpu = (time.process_time() - cpu0) / (time.monotonic() - started)
        conn.send((latencies, lateness, errors, cpu))


@dataclass
class Segment:
    """One way measured once."""

    latencies: list[float]
    lateness: list[float]
    errors: int
    generator_cpu: float
    proxy_cpu: float = float("nan")  # CPU seconds per request of the way's Envoys (see Rig.pids)

    @property
    def p50(self) -> float:
        return pct(self.latencies, 0.5)

    @property
    def p99(self) -> float:
        return pct(self.latencies, 0.99)


class Generator:
    """The load generator process, kept for every segment (one start, pinned to CPU 1)."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        _, rest = cp.cores()
        self._proc = ctx.Process(target=_generator_main, args=(child, rest), daemon=True)
        self._proc.start()

    def measure(self, port: int, host: str, seconds: float) -> Segment:
        self._conn.send((port, host, seconds))
        if not self._conn.poll(seconds + WARMUP + 60):
            raise TimeoutError("the load generator did not finish")
        latencies, lateness, errors, cpu = self._conn.recv()
        return Segment(latencies, lateness, errors, cpu)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


# -- Envoys --------------------------------------------------------------------------------------
def _envoy(
    workdir: Path, name: str, config: dict[str, Any], flags: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """An Envoy running ``config`` (its output to ``<name>.log``); ``flags``: its command-line
    flags other than ``-c`` (default: ours)."""
    from tests.support.envoy_validate import envoy_binary

    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    if flags is None:
        flags = ["--disable-hot-restart", "--log-level", "warning"]
        flags += ["--base-id", str(int.from_bytes(os.urandom(2), "big"))]
    log = (workdir / f"{name}.log").open("ab")
    try:
        return subprocess.Popen(
            [envoy_binary(), "-c", str(path), *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def _validate(workdir: Path, name: str, config: dict[str, Any]) -> None:
    """``envoy --mode validate`` on ``config``; raises with Envoy's output when refused."""
    from tests.support.envoy_validate import envoy_binary

    path = workdir / f"{name}.validate.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), *VALIDATE_FLAGS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"envoy --mode validate refused {name}:\n{done.stdout}{done.stderr}")


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
    return {"admin": admin_address(admin), "static_resources": {"listeners": [manager]}}


def _minimal_pair(
    workdir: Path, app_port: int
) -> tuple[list[subprocess.Popen[bytes]], int, list[int]]:
    """The two hand-written minimal Envoys; (processes, caller's port, admin ports)."""
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
        "admin": admin_address(admin_c),
        "static_resources": {
            "listeners": [_listener("out", client_port, "server", None)],
            "clusters": [_cluster("server", server_port, {"common_tls_context": upstream})],
        },
    }
    downstream = {"common_tls_context": common("server"), "require_client_certificate": True}
    server = {
        "admin": admin_address(admin_s),
        "static_resources": {
            "listeners": [_listener("in", server_port, "app", downstream)],
            "clusters": [_cluster("app", app_port, None)],
        },
    }
    procs = [_envoy(workdir, "minimal-client", client), _envoy(workdir, "minimal-server", server)]
    return procs, client_port, [admin_c, admin_s]


# -- running it -----------------------------------------------------------------------------------
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


def _stats(admin_port: int, needle: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(
            f"http://127.0.0.1:{admin_port}/stats", params={"filter": needle}, timeout=2
        ).text
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            with contextlib.suppress(ValueError):
                out[name] = int(value)
    return out


def _mtls_handshakes(admin_port: int) -> int:
    """TLS handshakes the callee's inbound listener completed (mTLS in use when > 0)."""
    return sum(
        v
        for k, v in _stats(admin_port, r"^listener\..*\.ssl\.handshake$").items()
        if not k.startswith("listener.admin")
    )


def _config_dump(admin_port: int) -> dict[str, Any]:
    r = httpx.get(
        f"http://127.0.0.1:{admin_port}/config_dump", params={"include_eds": ""}, timeout=5
    )
    r.raise_for_status()
    return dict(r.json())


def _identical_pair(
    wd: Path, sidecars: list[Any], stack: contextlib.ExitStack
) -> tuple[int, dict[str, int], dict[str, dict[str, str]], dict[str, list[int]]]:
    """Start the two static-identical Envoys; (caller's port, their admin ports by sidecar
    instance, the sidecars' xDS versions they were built from, pids: {"interlock": the
    sidecars' Envoys, "identical": these})."""
    ports: dict[int, int] = {}
    for s in sidecars:
        inbound, outbound = free_ports(2)
        ports[s.inbound_port] = inbound
        ports[s.outbound_port] = outbound
    credentials = Credentials(wd)
    versions: dict[str, dict[str, str]] = {}
    admins: dict[str, int] = {}
    pids: dict[str, list[int]] = {"interlock": [], "identical": []}
    for s in sidecars:
        assert s.proc is not None
        pid, argv = envoy_command(s.proc.pid)
        pids["interlock"].append(pid)
        bootstrap_path, flags = split_config_flag(argv)
        dump = _config_dump(s.admin_port)
        versions[s.instance_id] = xds_versions(dump)
        (admins[s.instance_id],) = free_ports(1)
        config = static_identical(
            dump,
            yaml.safe_load(bootstrap_path.read_text()),
            admin_port=admins[s.instance_id],
            ports=ports,
            credentials=credentials,
        )
        name = f"identical-{s.service}"
        _validate(wd, name, config)
        proc = _envoy(wd, name, config, flags)
        stack.callback(cp.stop_process, proc)
        pids["identical"].append(proc.pid)
    caller = sidecars[-1]
    return ports[caller.outbound_port], admins, versions, pids


def _wait_converged(sidecars: list[Any], timeout: float = 30.0) -> None:
    """Until no sidecar's xDS versions change for a second (e.g. the callee's routes learn
    the caller's service for its per-source virtual clusters after the first 200)."""
    deadline = time.monotonic() + timeout
    before = [xds_versions(s.config_dump()) for s in sidecars]
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = [xds_versions(s.config_dump()) for s in sidecars]
        if now == before:
            return
        before = now
    raise TimeoutError(f"the sidecars' xDS versions still change after {timeout}s")


@dataclass
class Rig:
    """The four ways to the app, running side by side."""

    targets: dict[str, tuple[int, str]]  # way: (port, Host header)
    callee_admin: dict[str, int]  # way: the callee Envoy's admin port
    pids: dict[str, list[int]]  # way: the Envoys it adds (direct: the app)
    sidecars: list[Any]  # callee, caller
    versions: dict[str, dict[str, str]]  # the sidecars' xDS versions static-identical copies
    same_config: bool  # static-identical's dumps match the sidecars' (same_request_path)


def start_rig(wd: Path, stack: contextlib.ExitStack) -> Rig:
    """The app, the control plane and two sidecars, then the static-identical and the minimal
    pair; everything stopped by ``stack``."""
    from tests.support.mesh import Sidecar

    app_port, app_admin = free_ports(2)
    app = _envoy(wd, "app", _app_config(app_port, app_admin))
    stack.callback(cp.stop_process, app)
    _wait_200(app_port, "app")

    server = cp.ControlPlane(wd, cpus=cp.cores()[0]).start()
    stack.callback(server.stop)
    callee = Sidecar("server", "server-0", app_port, server, wd)  # type: ignore[arg-type]
    caller = Sidecar("client", "client-0", app_port, server, wd)  # type: ignore[arg-type]
    for s in (callee, caller):
        stack.callback(s.stop)
        s.start()
    for s in (callee, caller):
        s.wait_listening(timeout=60)
    _wait_200(caller.outbound_port, "server")
    _wait_converged([callee, caller])

    identical_port, identical_admins, versions, pids = _identical_pair(wd, [callee, caller], stack)
    _wait_200(identical_port, "server")
    same = all(
        same_request_path(s.config_dump(), _config_dump(identical_admins[s.instance_id]))
        for s in (callee, caller)
    )
    procs, minimal_port, minimal_admins = _minimal_pair(wd, app_port)
    for p in procs:
        stack.callback(cp.stop_process, p)
    _wait_200(minimal_port, "server")
    return Rig(
        targets={
            "direct": (app_port, "app"),
            "interlock": (caller.outbound_port, "server"),
            "identical": (identical_port, "server"),
            "minimal": (minimal_port, "server"),
        },
        callee_admin={
            "interlock": callee.admin_port,
            "identical": identical_admins[callee.instance_id],
            "minimal": minimal_admins[1],
        },
        pids={"direct": [app.pid], **pids, "minimal": [p.pid for p in procs]},
        sidecars=[callee, caller],
        versions=versions,
        same_config=same,
    )


def disturbed(segment: Segment) -> bool:
    """Whether the generator was starved of CPU during ``segment`` (sends late by more than
    ``LATE_LIMIT`` at p99): the Envoys beside it on CPU 1 were, too."""
    return pct(segment.lateness, 0.99) > LATE_LIMIT


def _cpu(pids: list[int]) -> float:
    return sum(cp.proc_cpu_seconds(p) for p in pids)


def measure_rounds(
    generator: Generator,
    rig: Rig,
    rounds: int,
    segment: float,
    budget: float,
) -> tuple[dict[str, list[Segment]], dict[str, list[Segment]]]:
    """Interleaved rounds (every way once per round, the order rotated each round): at least
    ``rounds``, then more while fewer than ``rounds`` were undisturbed and another round fits
    in ``budget`` seconds; (undisturbed rounds, all rounds), each as way: segments in round
    order."""
    targets = rig.targets
    ways = list(targets)

    def one(way: str) -> Segment:
        cpu = _cpu(rig.pids[way])
        measured = generator.measure(*targets[way], segment)
        measured.proxy_cpu = (_cpu(rig.pids[way]) - cpu) / (RATE * (WARMUP + segment))
        return measured

    clean: dict[str, list[Segment]] = {w: [] for w in ways}
    every: dict[str, list[Segment]] = {w: [] for w in ways}
    started = time.monotonic()
    done = 0
    while len(clean[ways[0]]) < rounds:
        elapsed = time.monotonic() - started
        if done >= rounds and elapsed * (done + 1) / done > budget:
            break
        k = done % len(ways)
        done += 1
        got = {w: one(w) for w in ways[k:] + ways[:k]}
        for w in ways:
            every[w].append(got[w])
            if not any(disturbed(s) for s in got.values()):
                clean[w].append(got[w])
    return clean, every


def b11(quick: bool) -> list[Figure]:
    # rounds take ~25 s (quick) / ~75 s when undisturbed, at most ~36 s / ~100 s
    rounds, segment, budget = (3, 1.5, 36.0) if quick else (5, 3.0, 100.0)
    with cp.workdir() as wd, contextlib.ExitStack() as stack:
        rig = start_rig(wd, stack)
        generator = Generator()
        stack.callback(generator.stop)
        clean, every = measure_rounds(generator, rig, rounds, segment, budget)
        handshakes = {w: _mtls_handshakes(port) for w, port in rig.callee_admin.items()}
        als = {
            w: _stats(rig.callee_admin[w], "grpc_access_log.logs_written")
            for w in ("interlock", "identical")
        }
        unchanged = rig.same_config and all(
            xds_versions(s.config_dump()) == rig.versions[s.instance_id] for s in rig.sidecars
        )
    return _figures(clean, every, quick, segment, handshakes, als, unchanged)


def _added(segments: dict[str, list[Segment]], way: str, q: str) -> float:
    """The median over rounds of ``way``'s ``q`` minus direct's in the same round."""

    def value(s: Segment) -> float:
        return s.p50 if q == "p50" else s.p99

    pairs = zip(segments[way], segments["direct"], strict=True)
    return statistics.median(value(s) - value(d) for s, d in pairs)


def _ms2(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _figures(
    clean: dict[str, list[Segment]],
    every: dict[str, list[Segment]],
    quick: bool,
    segment: float,
    handshakes: dict[str, int],
    als: dict[str, dict[str, int]],
    unchanged: bool,
) -> list[Figure]:
    measured, kept = len(every["direct"]), len(clean["direct"])
    segments = clean if kept else every  # nothing undisturbed: show what there is, unjudged
    added = {w: (_added(segments, w, "p50"), _added(segments, w, "p99")) for w in WAYS[1:]}
    i50, i99 = added["interlock"]
    s50, s99 = added["identical"]
    m50, m99 = added["minimal"]
    within = i50 <= s50 + max(0.10 * s50, FLOOR_P50) and i99 <= s99 + max(0.10 * s99, FLOOR_P99)
    errors = sum(s.errors for way in every.values() for s in way)
    mtls = all(handshakes[w] > 0 for w in ("interlock", "identical"))
    numbers: dict[str, float] = {
        "rounds_measured": measured,
        "rounds_undisturbed": kept,
        "segment_seconds": segment,
        "identical_config_checked": float(unchanged),
    }
    for way, done in segments.items():
        pooled = [x for s in done for x in s.latencies]
        numbers[f"{way}_p50"] = statistics.median(s.p50 for s in done)
        numbers[f"{way}_p99"] = statistics.median(s.p99 for s in done)
        numbers[f"{way}_pooled_p50"] = pct(pooled, 0.5)
        numbers[f"{way}_pooled_p99"] = pct(pooled, 0.99)
        numbers[f"{way}_late_p99"] = statistics.median(pct(s.lateness, 0.99) for s in done)
        numbers[f"{way}_generator_cpu"] = statistics.median(s.generator_cpu for s in done)
        numbers[f"{way}_proxy_cpu_per_request"] = statistics.median(s.proxy_cpu for s in done)
    for way, done in every.items():
        numbers[f"{way}_errors"] = sum(s.errors for s in done)
        for i, s in enumerate(done):  # every round, disturbed or not (see round{i}_disturbed)
            numbers[f"{way}_round{i}_p50"] = s.p50
            numbers[f"{way}_round{i}_p99"] = s.p99
    for i in range(measured):
        numbers[f"round{i}_disturbed"] = float(any(disturbed(every[w][i]) for w in every))
    for way, (a50, a99) in added.items():
        numbers[f"{way}_added_p50"] = a50
        numbers[f"{way}_added_p99"] = a99
        numbers[f"{way}_mtls_handshakes"] = handshakes.get(way, 0)
    for way, counters in als.items():
        numbers[f"{way}_als_logs_written"] = sum(counters.values())
    scale = (
        f"medians of {kept} undisturbed of {measured} interleaved rounds, "
        f"{segment:g} s per way per round"
    )
    checks = []
    if kept < MIN_CLEAN:
        checks.append(
            f"NOT judged: CPU 1 too busy (generator late > {LATE_LIMIT * 1e3:g} ms at p99 "
            f"in {measured - kept} of {measured} rounds)"
        )
    if not mtls:
        checks.append("mTLS NOT confirmed on both callees")
    if not unchanged:
        checks.append(
            "static-identical's config dump differs from the sidecars', or their xDS "
            "versions changed while measuring"
        )
    passed = within and errors == 0 and mtls and unchanged
    return [
        Figure(
            "B11",
            f"added latency of two mTLS sidecars at {RATE:,.0f} req/s (vs direct)",
            "within 10% of the same two Envoys configured statically",
            f"interlock +{_ms2(i50)} p50 / +{_ms2(i99)} p99; "
            f"static-identical +{_ms2(s50)} / +{_ms2(s99)}",
            passed if not quick and kept >= MIN_CLEAN else None,
            numbers,
            note=(
                f"{scale}; pass: interlock <= static-identical + max(10%, "
                f"{FLOOR_P50 * 1e6:.0f} us p50 / {FLOOR_P99 * 1e6:.0f} us p99); "
                f"direct p50 {_ms2(numbers['direct_p50'])} p99 {_ms2(numbers['direct_p99'])}; "
                f"generator: sends late by p99 {_ms2(numbers['direct_late_p99'])}, "
                f"{numbers['direct_generator_cpu'] * 100:.0f}% of CPU 1; "
                f"{errors:.0f} errors; the two Envoys' CPU per request: "
                + ", ".join(
                    f"{LABELS[w]} {numbers[f'{w}_proxy_cpu_per_request'] * 1e6:.0f} us"
                    for w in WAYS[1:]
                )
                + "; ALS records written: interlock "
                f"{numbers['interlock_als_logs_written']:.0f}, static-identical "
                f"{numbers['identical_als_logs_written']:.0f}"
                + "".join(f"; {c}" for c in checks)
                + ("; reduced scale (quick)" if quick else "")
            ),
        ),
        Figure(
            "B11",
            "added latency of two hand-written minimal mTLS Envoys (informational)",
            "not judged: what the mesh's per-request features cost",
            f"minimal +{_ms2(m50)} p50 / +{_ms2(m99)} p99 "
            f"(static-identical +{_ms2(s50)} / +{_ms2(s99)})",
            None,
            {"minimal_added_p50": m50, "minimal_added_p99": m99},
            note=(
                "minimal pair: informational, not judged: the same two Envoys without the "
                "mesh's access logs, ALS, virtual clusters, policy filters and path "
                f"normalization; {scale}"
            ),
        ),
    ]
