"""In-process figures: the pipeline's CPU cost without any network.

B6 — full translate + serialize of S services / E endpoints for one proxy view.
B7 — rebuild after one service changes (one instance moves): CPU and bytes a delta stream
     would be sent.
"""

from __future__ import annotations

import time

from bench import topology
from bench.report import Figure
from interlock.model import Instance, MeshState
from interlock.reconcile import as_type_map
from interlock.xds.cache import SnapshotCache
from interlock.xds.translate import translate


def _cpu(fn: object, repeat: int = 3) -> tuple[float, object]:
    best = float("inf")
    result: object = None
    for _ in range(repeat):
        started = time.process_time()
        result = fn()  # type: ignore[operator]
        best = min(best, time.process_time() - started)
    return best, result


def full_build(services: int, endpoints: int) -> float:
    state = topology.state(services, endpoints)
    proxy = topology.sidecar()

    def build() -> None:
        cache = SnapshotCache()
        cache.set_snapshot("view", as_type_map(translate(state, proxy)), revision=1)

    seconds, _ = _cpu(build)
    return seconds


def b6(quick: bool) -> list[Figure]:
    figures = []
    cases = [(1000, 10, 0.100)] if quick else [(1000, 10, 0.100), (10000, 10, 1.0)]
    for services, endpoints, goal in cases:
        seconds = full_build(services, endpoints)
        figures.append(
            Figure(
                "B6",
                f"full translate+serialize {services:,} svc / {services * endpoints:,} ep",
                f"<= {goal * 1000:.0f} ms",
                f"{seconds * 1000:.0f} ms",
                seconds <= goal,
                {"seconds": seconds, "services": services, "endpoints": services * endpoints},
            )
        )
    return figures


def b7(quick: bool) -> list[Figure]:
    del quick
    state = topology.state(1000, 10)
    proxy = topology.sidecar()
    cache = SnapshotCache()
    cache.set_snapshot("view", as_type_map(translate(state, proxy)), revision=1)
    moved = topology.instances_of(500, 10)
    moved[3] = Instance("svc-500", "svc-500-3", "10.99.99.99", 15006)
    instances = dict(state.instances)
    instances["svc-500"] = tuple(moved)
    changed = MeshState.build(
        2, state.services.values(), [i for t in instances.values() for i in t]
    )

    def rebuild() -> None:
        cache.set_snapshot("view", as_type_map(translate(changed, proxy)), revision=2)

    seconds, _ = _cpu(rebuild, repeat=1)
    snapshot = cache.get("view")
    assert snapshot is not None
    return [
        Figure(
            "B7",
            "rebuild after one service changes (1,000 svc / 10,000 ep)",
            "<= 2 ms CPU",
            f"{seconds * 1000:.1f} ms CPU",
            seconds <= 0.002,
            {"seconds": seconds},
            note="translation is not incremental yet: every change re-translates the view",
        )
    ]
