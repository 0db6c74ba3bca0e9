"""Fleet figures: one `interlock server` (pinned to CPU 0), a simulated fleet (CPU 1) and, for
the end-to-end figures, real Envoy sidecars.

Two sessions, each on its own control plane and database (on /dev/shm: seeding speed; the
store's own speed is B8's business):

* **mesh** — 100 services x 10 endpoints with policies; 1,000 streams (half SotW, half delta)
  over ``views`` client services, plus 5 real sidecars (``real-0`` … ``real-4``, each with a
  tiny app): B1 (endpoint change → every proxy ACKed), B2 (new route → first 200 through a
  real Envoy), B10 (idle CPU).
* **fleet** — 1,000 services x 10 endpoints with policies (B5's topology); delta streams over
  ``views`` client services: 2,000 streams for B3 (2,000) and B9 (drop and reconnect), then
  3,000 more, held for B4's ten minutes; *during the hold*, on the same streams, B3 (5,000),
  B5 (memory) and the idle CPU at 5,000 streams are measured (cheap: a few one-endpoint
  commits and reads of /proc), nothing else runs.

Latency is measured client-side: each fleet stream timestamps every response (ACKs go out at
once) with the machine-wide monotonic clock; a real Envoy's ACK is seen as the
``update_success`` counter of the changed cluster in its admin ``/stats``. ``t0`` is taken just
before the REST request, so API time, debounce, build and push are all inside the figure; the
server's own histograms (/metrics) split build time from the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import controlplane as cp
from bench import topology
from bench.fleet import Fleet
from bench.report import Figure
from bench.stats import ms, pct, summary
from interlock.store import Store
from interlock.xds.transport import resource_types as rt


@dataclass
class Scale:
    """How big each session is (full or quick)."""

    quick: bool
    views: int = 5
    mesh_services: int = 100
    mesh_streams: int = 1000
    real_envoys: int = 5
    b1_commits: int = 20
    b2_routes: int = 10
    idle_seconds: float = 30.0
    fleet_services: int = 1000
    fleet_first: int = 2000
    fleet_total: int = 5000
    b3_commits: int = 6
    hold_seconds: float = 600.0

    @classmethod
    def of(cls, quick: bool, views: int = 5) -> Scale:
        if not quick:
            return cls(quick=False, views=views)
        return cls(
            quick=True,
            views=views,
            mesh_services=100,
            mesh_streams=200,
            real_envoys=2,
            b1_commits=5,
            b2_routes=3,
            idle_seconds=8.0,
            fleet_services=1000,
            fleet_first=200,
            fleet_total=300,
            b3_commits=3,
            hold_seconds=20.0,
        )


def _shards(streams: int) -> int:
    return max(2, math.ceil(streams / 1000))


def _seed(workdir: Path, services: int, fleet: int, views: int) -> list[topology.FleetNode]:
    store = Store.open(f"sqlite:///{workdir / 'interlock.db'}")
    try:
        nodes, seconds = topology.seed(store, services, 10, fleet=fleet, views=views)
    finally:
        store.close()
    _say(f"seeded {services} services x 10 endpoints + {fleet} fleet instances in {seconds:.0f}s")
    return nodes


def _say(text: str) -> None:
    import sys

    print(f"  .. {text}", file=sys.stderr, flush=True)


def _change_endpoint(server: cp.ControlPlane, service: int, serial: int) -> float:
    """Move instance 0 of ``svc-<service>`` to a new address; returns t0 (before the PUT)."""
    t0 = time.monotonic()
    response = server.api().put(
        f"/v1/services/svc-{service}/instances/svc-{service}-0",
        json={
            "address": f"10.{250 - serial // 62500 % 50}.{serial // 250 % 250}.{serial % 250 + 1}",
            "port": 15006,
            "labels": {"version": "v2"},
            "locality": "region-a/zone-2",
            "sidecar": True,  # as seeded: only the address moves
        },
    )
    response.raise_for_status()
    return t0


class _Serial:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def _changed_service(k: int, services: int) -> int:
    """A service without policies (its one EDS cluster changes), spread over the mesh."""
    s = (k * 37 + 1) % services
    return s + 1 if s % topology.POLICY_EVERY == 0 else s


# -- real Envoys ------------------------------------------------------------------------------
def _cluster_counter(admin_url: str, client: httpx.Client, cluster: str) -> int:
    name = f"cluster.{cluster}.update_success"
    r = client.get(f"{admin_url}/stats", params={"filter": f"^{re.escape(name)}$"})
    for line in r.text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


@dataclass
class RealEnvoys:
    """``count`` `interlock sidecar` processes (each running a real Envoy) with their apps."""

    server: cp.ControlPlane
    workdir: Path
    count: int
    sidecars: list[Any] = field(default_factory=list)
    apps: list[Any] = field(default_factory=list)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5))

    def start(self) -> RealEnvoys:
        from tests.support.mesh import Sidecar, UpstreamApp

        for i in range(self.count):
            app = UpstreamApp(f"real-{i}", f"real-{i}-0")
            self.apps.append(app)
            sidecar = Sidecar(
                f"real-{i}",
                f"real-{i}-0",
                app.port,
                self.server,  # type: ignore[arg-type]
                self.workdir,
                xds_protocol="delta" if i % 2 == 0 else "sotw",
            )
            self.sidecars.append(sidecar.start())
        for sidecar in self.sidecars:
            sidecar.wait_listening(timeout=120)
        return self

    def counters(self, cluster: str) -> list[int]:
        return [_cluster_counter(s.admin_url, self.client, cluster) for s in self.sidecars]

    def wait_updated(
        self, cluster: str, before: list[int], t0: float, timeout: float
    ) -> list[float | None]:
        """Per Envoy: seconds from ``t0`` until the cluster's update counter moved."""
        found: list[float | None] = [None] * len(self.sidecars)
        deadline = time.monotonic() + timeout
        while any(f is None for f in found) and time.monotonic() < deadline:
            for i, sidecar in enumerate(self.sidecars):
                if found[i] is None:
                    now = time.monotonic()
                    if _cluster_counter(sidecar.admin_url, self.client, cluster) > before[i]:
                        found[i] = now - t0
            time.sleep(0.002)
        return found

    def stop(self) -> None:
        for sidecar in self.sidecars:
            with contextlib.suppress(Exception):
                sidecar.stop()
        for app in self.apps:
            with contextlib.suppress(Exception):
                app.close()
        self.client.close()


def _eds_cluster(service: int) -> str:
    return f"outbound|8080||svc-{service}.default"


# -- the mesh session: B1, B2, B10 --------------------------------------------------------------
def mesh_session(scale: Scale, wanted: set[str]) -> list[Figure]:
    figures: list[Figure] = []
    cp_cpus, _ = cp.cores()
    with cp.workdir(memory=True) as wd, contextlib.ExitStack() as stack:
        nodes = _seed(wd, scale.mesh_services, scale.mesh_streams, scale.views)
        server = cp.ControlPlane(wd, cpus=cp_cpus).start()
        stack.callback(server.stop)
        envoys = RealEnvoys(server, wd, scale.real_envoys)
        stack.callback(envoys.stop)
        envoys.start()
        variants = ["sotw" if i % 2 == 0 else "delta" for i in range(len(nodes))]
        _, rest = cp.cores()
        fleet = Fleet(
            server.xds_address,
            nodes,
            variants,
            shards=_shards(len(nodes)),
            cpus=rest,
            ca_pem=server.ca_pem,
        )
        stack.callback(fleet.close)
        took = fleet.connect(timeout=600)
        _say(f"{len(nodes)} streams + {scale.real_envoys} real Envoys served in {took:.1f}s")
        serial = _Serial()
        if "B1" in wanted:
            figures.append(_b1(scale, server, fleet, envoys, serial))
        if "B2" in wanted:
            figures.append(_b2(scale, server, envoys))
        if "B10" in wanted:
            figures.append(_b10(scale, server, fleet, len(nodes)))
        errors = fleet.errors()
        if errors:
            for f in figures:
                f.note = (f.note + f"; {len(errors)} stream errors: {errors[:2]}").lstrip("; ")
    return figures


def _b1(
    scale: Scale, server: cp.ControlPlane, fleet: Fleet, envoys: RealEnvoys, serial: _Serial
) -> Figure:
    all_acked: list[float] = []
    per_proxy: list[float] = []
    missing = 0
    m0 = server.metrics()
    for k in range(scale.b1_commits):
        service = _changed_service(k, scale.mesh_services)
        cluster = _eds_cluster(service)
        before = envoys.counters(cluster)
        t0 = _change_endpoint(server, service, serial())
        real = envoys.wait_updated(cluster, before, t0, timeout=30)
        simulated = fleet.wait_all(rt.ENDPOINT, t0, timeout=30)
        times = [t for t in (*real, *simulated) if t is not None]
        missing += len(real) + len(simulated) - len(times)
        per_proxy += times
        if len(times) == len(real) + len(simulated):
            all_acked.append(max(times))
        time.sleep(0.3)
    m1 = server.metrics()
    builds, build_sum, _ = cp.histogram_delta(m0, m1, "interlock_reconcile_build_seconds")
    p50, p99 = pct(all_acked, 0.5), pct(all_acked, 0.99)
    streams = fleet.size
    scale_ok = not scale.quick
    passed = (p50 <= 0.050 and p99 <= 0.250 and missing == 0) if scale_ok else None
    per_commit_build = build_sum / max(1, scale.b1_commits)
    return Figure(
        "B1",
        f"endpoint change -> every proxy ACKed ({streams:,} streams + {len(envoys.sidecars)} "
        "Envoys)",
        "p50 <= 50 ms, p99 <= 250 ms",
        f"p50 {ms(p50)}, p99 {ms(p99)}",
        passed,
        {
            "p50": p50,
            "p99": p99,
            "commits": float(scale.b1_commits),
            "per_proxy_p50": pct(per_proxy, 0.5),
            "per_proxy_p99": pct(per_proxy, 0.99),
            "missing_acks": float(missing),
            "views_built_per_commit": builds / max(1, scale.b1_commits),
            "build_seconds_per_commit": per_commit_build,
            "streams": float(streams),
        },
        note=(
            f"{scale.b1_commits} commits; per-proxy p50 {ms(pct(per_proxy, 0.5))}; "
            f"{builds / max(1, scale.b1_commits):.0f} views re-translated per commit, "
            f"{ms(per_commit_build)} of build per commit"
            + ("; reduced scale (quick)" if scale.quick else "")
            + (f"; {missing} ACKs never seen" if missing else "")
        ),
    )


def _b2(scale: Scale, server: cp.ControlPlane, envoys: RealEnvoys) -> Figure:
    from tests.support.mesh import UpstreamApp

    caller = envoys.sidecars[0]
    app = UpstreamApp("route-target", "route-target-0")
    times: list[float] = []
    fivexx = 0
    wrong_before = 0
    try:
        with httpx.Client(timeout=5) as client:
            url = f"http://127.0.0.1:{caller.outbound_port}/"
            for k in range(scale.b2_routes):
                host = f"route-{k}-{int(time.time())}.bench.test"
                before = client.get(url, headers={"Host": host}).status_code
                if before != 404:
                    wrong_before += 1
                document = {
                    "spec": {
                        "hosts": [host],
                        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                        "resolution": "STATIC",
                        "endpoints": [{"address": "127.0.0.1", "ports": {"http": app.port}}],
                    }
                }
                name = host.split(".", 1)[0]
                t0 = time.monotonic()
                server.api().put(
                    f"/v1/resources/ServiceEntry/default/{name}", json=document
                ).raise_for_status()
                deadline = t0 + 30
                while time.monotonic() < deadline:
                    status = client.get(url, headers={"Host": host}).status_code
                    if status >= 500:
                        fivexx += 1
                    if status == 200:
                        times.append(time.monotonic() - t0)
                        break
                    time.sleep(0.001)
                time.sleep(0.3)
    finally:
        app.close()
    p50, p99 = pct(times, 0.5), pct(times, 0.99)
    complete = len(times) == scale.b2_routes and wrong_before == 0
    passed = (p99 <= 0.300 and fivexx == 0 and complete) if not scale.quick else None
    return Figure(
        "B2",
        "new route end to end: PUT -> first 200 through Envoy (404 before)",
        "p99 <= 300 ms, zero 5xx",
        f"p50 {ms(p50)}, p99 {ms(p99)}, {fivexx} 5xx",
        passed,
        {
            "p50": p50,
            "p99": p99,
            "fivexx": float(fivexx),
            "routes": float(scale.b2_routes),
            "not_404_before": float(wrong_before),
        },
        note=(
            f"{scale.b2_routes} new ServiceEntry hosts via PUT /v1/resources, polled every ~1 ms "
            "through a real sidecar's outbound listener while the whole fleet is connected"
            + ("; reduced scale (quick)" if scale.quick else "")
            + ("" if complete else f"; only {len(times)} reached 200")
        ),
    )


def _idle(server: cp.ControlPlane, seconds: float) -> tuple[float, float, float]:
    """(CPU fraction of a core, builds, pushes) of the server over ``seconds`` of no writes."""
    m0 = server.metrics()
    c0, t0 = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = server.cpu_seconds(), time.monotonic()
    m1 = server.metrics()

    def total(m: dict[str, float], prefix: str) -> float:
        return sum(v for k, v in m.items() if k.startswith(prefix))

    builds = total(m1, "interlock_reconcile_builds_total") - total(
        m0, "interlock_reconcile_builds_total"
    )
    pushes = total(m1, "interlock_xds_pushes_total") - total(m0, "interlock_xds_pushes_total")
    return (c1 - c0) / (t1 - t0), builds, pushes


def _b10(scale: Scale, server: cp.ControlPlane, fleet: Fleet, streams: int) -> Figure:
    time.sleep(2.0)  # let the last pushes settle
    fraction, builds, pushes = _idle(server, scale.idle_seconds)
    passed = (fraction <= 0.02 and builds == 0 and pushes == 0) if not scale.quick else None
    return Figure(
        "B10",
        f"idle: {streams:,} streams (+ real Envoys), no changes",
        "<= 2% of a core, no periodic regeneration",
        f"{fraction * 100:.2f}% of a core, {builds:.0f} builds, {pushes:.0f} pushes",
        passed,
        {
            "cpu_fraction": fraction,
            "builds": builds,
            "pushes": pushes,
            "seconds": scale.idle_seconds,
        },
        note=f"server CPU time over {scale.idle_seconds:.0f} s from /proc"
        + ("; reduced scale (quick)" if scale.quick else ""),
    )


# -- the fleet session: B3, B9, B4 (hold) with B3 5k and B5 during the hold ------------------------
class Fleets:
    """Several :class:`Fleet` s (the fleet grows) asked as one."""

    def __init__(self) -> None:
        self.fleets: list[Fleet] = []

    @property
    def size(self) -> int:
        return sum(f.size for f in self.fleets)

    def add(self, fleet: Fleet) -> None:
        self.fleets.append(fleet)

    def latencies_all(self, t0: float, timeout: float) -> list[float | None]:
        deadline = time.monotonic() + timeout
        while True:
            found = [x for f in self.fleets for x in f.latencies(rt.ENDPOINT, t0)]
            if all(x is not None for x in found) or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def bytes(self) -> list[dict[str, int]]:
        return [b for f in self.fleets for b in f.bytes_received()]

    def errors(self) -> list[str]:
        return [e for f in self.fleets for e in f.errors()]

    def alive(self) -> int:
        return sum(sum(f.ask("alive")) for f in self.fleets)

    def close(self) -> None:
        for f in self.fleets:
            f.close()


def _push_round(
    server: cp.ControlPlane,
    fleets: Fleets,
    scale: Scale,
    serial: _Serial,
    commits: int,
    pause: float = 0.5,
    between: Callable[[], None] | None = None,
) -> tuple[list[float], list[float], int, float]:
    """``commits`` one-endpoint changes; per-stream receive latencies, per-commit max, streams
    that never received, and bytes received per stream per commit (EDS)."""
    latencies: list[float] = []
    worst: list[float] = []
    missing = 0
    eds_bytes: list[float] = []
    for k in range(commits):
        service = _changed_service(k + 7, scale.fleet_services)
        before = [b.get(rt.ENDPOINT, 0) for b in fleets.bytes()]
        t0 = _change_endpoint(server, service, serial())
        found = fleets.latencies_all(t0, timeout=60)
        got = [x for x in found if x is not None]
        missing += len(found) - len(got)
        latencies += got
        if got:
            worst.append(max(got))
        time.sleep(pause)
        after = [b.get(rt.ENDPOINT, 0) for b in fleets.bytes()]
        eds_bytes += [a - b for a, b in zip(after, before, strict=True)]
        if between is not None:
            between()
    mean_bytes = sum(eds_bytes) / max(1, len(eds_bytes))
    return latencies, worst, missing, mean_bytes


def _b3_figure(
    streams: int, goal: float, latencies: list[float], worst: list[float], missing: int, quick: bool
) -> Figure:
    s = summary(latencies)
    passed = (s["p99"] <= goal and missing == 0) if not quick else None
    return Figure(
        "B3",
        f"one-service delta push reaches all streams ({streams:,} streams)",
        f"p99 <= {ms(goal)}",
        f"p50 {ms(s['p50'])}, p99 {ms(s['p99'])}",
        passed,
        {**s, "streams": float(streams), "missing": float(missing), "worst_commit": max(worst)},
        note=f"{len(worst)} commits, slowest commit's last stream {ms(max(worst))}"
        + (f"; {missing} receipts missing" if missing else "")
        + ("; reduced scale (quick)" if quick else ""),
    )


def fleet_session(scale: Scale, wanted: set[str], hold: bool) -> list[Figure]:
    """B3 (2,000 then 5,000), B9, B4 (the hold), B5 — in that order on one fleet."""
    figures: list[Figure] = []
    cp_cpus, rest = cp.cores()
    with cp.workdir(memory=True) as wd, contextlib.ExitStack() as stack:
        nodes = _seed(wd, scale.fleet_services, scale.fleet_total, scale.views)
        server = cp.ControlPlane(wd, cpus=cp_cpus).start()
        stack.callback(server.stop)
        fleets = Fleets()
        stack.callback(fleets.close)
        serial = _Serial()
        first = nodes[: scale.fleet_first]
        fleets.add(
            Fleet(
                server.xds_address,
                first,
                ["delta"] * len(first),
                shards=_shards(len(first)),
                cpus=rest,
                ca_pem=server.ca_pem,
            )
        )
        took = fleets.fleets[0].connect(timeout=300)
        _say(
            f"{len(first)} delta streams served in {took:.1f}s (cold connect, "
            f"{fleets.fleets[0].retries()} stream retries)"
        )
        if "B3" in wanted:
            lat, worst, missing, _ = _push_round(server, fleets, scale, serial, scale.b3_commits)
            figures.append(_b3_figure(len(first), 0.300, lat, worst, missing, scale.quick))
        rss_first = server.rss()
        if "B9" in wanted:
            figures.append(_b9(scale, server, fleets.fleets[0], serial, len(first)))
        if not ({"B3", "B4", "B5"} & wanted):
            return figures
        if not hold:  # no B4: hold only as long as the measurements need
            scale = dataclasses.replace(scale, hold_seconds=min(scale.hold_seconds, 90.0))
        more = nodes[scale.fleet_first :]
        fleets.add(
            Fleet(
                server.xds_address,
                more,
                ["delta"] * len(more),
                shards=_shards(len(more)),
                cpus=rest,
                ca_pem=server.ca_pem,
            )
        )
        took = fleets.fleets[1].connect(timeout=300)
        _say(
            f"{len(more)} more streams served in {took:.1f}s ({fleets.fleets[1].retries()} "
            f"stream retries); holding {fleets.size:,}"
        )
        figures += _hold(scale, server, fleets, serial, wanted, rss_first, len(first))
    return figures


def _b9(scale: Scale, server: cp.ControlPlane, fleet: Fleet, serial: _Serial, n: int) -> Figure:
    """Every stream drops; a change is committed while they are down; every stream reconnects
    (warm: with the versions it holds, as Envoy does) and is served once it got the change."""
    fleet.drop()
    retries_before = fleet.retries()
    t0 = time.monotonic()
    service = _changed_service(99, scale.fleet_services)
    _change_endpoint(server, service, serial())
    fleet.ask("connect", (True, 0, 0.0))
    found = fleet.wait_all(rt.ENDPOINT, t0, timeout=120)
    got = [x for x in found if x is not None]
    missing = len(found) - len(got)
    worst = max(got) if got else math.nan
    errors = [e for e in fleet.errors() if "CANCELLED" not in e]
    retried = fleet.retries() - retries_before
    passed = (worst <= 10.0 and missing == 0) if not scale.quick else None
    return Figure(
        "B9",
        f"all streams drop and reconnect ({n:,} streams)",
        f"{n:,} streams fully served <= 10 s",
        f"all served in {worst:.2f} s" if not missing else f"{missing} never served",
        passed,
        {
            "seconds": worst,
            "p50": pct(got, 0.5),
            "missing": float(missing),
            "streams": float(n),
            "retries": float(retried),
        },
        note="warm reconnect, all at once (held versions sent, as Envoy does) with one endpoint "
        f"changed during the outage; served = the change received; {retried} streams failed to "
        "open in the storm and were retried with backoff, as Envoy does"
        + (f"; errors: {errors[:2]}" if errors else "")
        + ("; reduced scale (quick)" if scale.quick else ""),
    )


def _hold(
    scale: Scale,
    server: cp.ControlPlane,
    fleets: Fleets,
    serial: _Serial,
    wanted: set[str],
    rss_first: int,
    first: int,
) -> list[Figure]:
    """Hold every stream for ``hold_seconds``; meanwhile B3 at full size, B5 and idle CPU."""
    figures: list[Figure] = []
    total = fleets.size
    started = time.monotonic()
    end = started + scale.hold_seconds
    errors_before = len(fleets.errors())
    time.sleep(min(5.0, scale.hold_seconds / 4))
    rss_total = server.rss()
    idle_fraction, idle_builds, _ = _idle(server, min(30.0, scale.hold_seconds / 4))
    b7_bytes = math.nan
    if "B3" in wanted or "B7" in wanted:
        # commits spread over the hold (cheap: one endpoint each)
        remaining = max(0.0, end - time.monotonic() - 10)
        gap = remaining / max(1, scale.b3_commits)
        lat: list[float] = []
        worst: list[float] = []
        missing = 0
        sizes: list[float] = []
        for _ in range(scale.b3_commits):
            la, wo, mi, by = _push_round(server, fleets, scale, serial, 1, pause=0.5)
            lat += la
            worst += wo
            missing += mi
            sizes.append(by)
            time.sleep(max(0.0, min(gap - 2, end - time.monotonic() - 5)))
        b7_bytes = sum(sizes) / max(1, len(sizes))
        if "B3" in wanted:
            figures.append(_b3_figure(total, 1.0, lat, worst, missing, scale.quick))
    while time.monotonic() < end:
        time.sleep(min(5.0, end - time.monotonic()))
    held = time.monotonic() - started
    alive = fleets.alive()
    errors = fleets.errors()[errors_before:]
    if "B4" in wanted:
        ok = alive == total and not errors
        figures.append(
            Figure(
                "B4",
                f"concurrent streams held {held / 60:.1f} min by one process",
                ">= 5,000, zero stream errors",
                f"{alive:,}/{total:,} held, {len(errors)} errors",
                (ok and total >= 5000 and held >= 600) if not scale.quick else None,
                {"streams": float(total), "alive": float(alive), "errors": float(len(errors))},
                note="the hold also carried B3 (5,000) and B5; "
                + f"idle CPU at {total:,} streams {idle_fraction * 100:.2f}% of a core"
                + f" ({idle_builds:.0f} builds)"
                + (f"; errors: {errors[:2]}" if errors else "")
                + ("; reduced scale (quick)" if scale.quick else ""),
            )
        )
    if "B5" in wanted:
        per = (rss_total - rss_first) / max(1, total - first)
        passed = per <= 100_000 and rss_total <= 600e6
        figures.append(
            Figure(
                "B5",
                f"control-plane memory per proxy ({scale.fleet_services:,} svc / "
                f"{scale.fleet_services * 10:,} ep)",
                "<= 100 KB each; RSS <= 600 MB at 5,000",
                f"{per / 1000:.0f} KB each; RSS {rss_total / 1e6:.0f} MB at {total:,}",
                passed if not scale.quick else None,
                {"per_proxy_bytes": per, "rss_bytes": float(rss_total), "streams": float(total)},
                note=f"marginal: RSS {rss_first / 1e6:.0f} MB at {first:,} streams -> "
                f"{rss_total / 1e6:.0f} MB at {total:,}"
                + ("; reduced scale (quick)" if scale.quick else ""),
            )
        )
    if "B7" in wanted and not math.isnan(b7_bytes):
        figures.append(
            Figure(
                "B7",
                "bytes sent per delta stream for one service's change (on the wire)",
                "<= 2 KB",
                f"{b7_bytes:,.0f} B",
                b7_bytes <= 2048,
                {"bytes": b7_bytes},
                note="EDS response bytes each fleet stream received per one-endpoint commit",
            )
        )
    return figures


def sessions(scale: Scale, wanted: set[str]) -> Iterator[Figure]:
    """Run the sessions the wanted figures need."""
    if wanted & {"B1", "B2", "B10"}:
        yield from mesh_session(scale, wanted)
    if wanted & {"B3", "B4", "B5", "B9"}:
        yield from fleet_session(scale, wanted, hold="B4" in wanted)


__all__: Sequence[str] = ["Scale", "fleet_session", "mesh_session", "sessions"]
