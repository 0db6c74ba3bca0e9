"""B12 — per-proxy scope (Sidecar): 1,000 services x 10 endpoints, client views each scoped by
a Sidecar to 5 of them; one endpoint of one service moves.

In process, through the same path the reconciler takes (``translate`` for every view, the
incremental ``refresh_endpoints`` for the change, ``SnapshotCache.set_snapshot`` whose result
says whether a view's watchers are woken). A view whose snapshot is unchanged wakes no stream
(``SnapshotCache._store``; ``tests/e2e/test_scope.py`` checks a real Envoy's counters), so
*views pushed* is the number of views whose streams receive anything; *bytes pushed* is the
serialized size of the resources that changed in them (what a delta stream is sent, per
stream). The same is measured for one unscoped view of the same mesh, whose change every
view would receive. Memory per proxy: the Python heap the view's translation and cache entries
hold (tracemalloc, so the cost of shared objects — the state — is not counted), and the bytes
of its serialized configuration (what its Envoy holds).
"""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from typing import Any

from bench import topology
from bench.report import Figure
from interlock.model import Instance, MeshState, Proxy, Service
from interlock.model.policy.documents import read_resources
from interlock.reconcile import as_type_map
from interlock.xds.translate import Resources, refresh_endpoints, translate
from interlock.xds.transport.cache import SnapshotCache

SERVICES = 1000
ENDPOINTS = 10
REACH = 5
CHANGED = 0  # svc-0: which clients reach it is known from the topology below


def reached_by(client: int, views: int) -> list[int]:
    """The services client ``client`` reaches: 5 consecutive ones, the clients spread over
    the whole mesh so that each service has ``views * 5 / 1000`` dependents (at least 1)."""
    start = client * SERVICES // views
    return [(start + j) % SERVICES for j in range(REACH)]


def state(views: int) -> MeshState:
    clients = [Service(f"client-{k}", "default", port=8080) for k in range(views)]
    instances = [i for s in range(SERVICES) for i in topology.instances_of(s, ENDPOINTS)] + [
        Instance(f"client-{k}", f"client-{k}-0", "10.250.0.1", 15006) for k in range(views)
    ]
    sidecars: list[dict[str, Any]] = [
        {
            "apiVersion": topology.NET,
            "kind": "Sidecar",
            "metadata": {"name": f"client-{k}", "namespace": "default"},
            "spec": {
                "workloadSelector": {"labels": {"app": f"client-{k}"}},
                "egress": [{"hosts": [f"./svc-{s}" for s in reached_by(k, views)]}],
            },
        }
        for k in range(views)
    ]
    resources = [
        dataclasses.replace(r, created_revision=n + 1, revision=n + 1, generation=1)
        for n, r in enumerate(read_resources(sidecars, batch=True))
    ]
    return MeshState.build(1, [*topology.services(SERVICES), *clients], instances, resources)


def proxy(client: int) -> Proxy:
    return Proxy(
        f"client-{client}-0",
        f"client-{client}",
        inbound_port=15006,
        app_port=9000,
        outbound_port=15001,
    )


def _size(resources: Resources) -> int:
    return sum(
        len(m.SerializeToString(deterministic=True))
        for messages in as_type_map(resources).values()
        for m in messages
    )


def _changed_bytes(cache: SnapshotCache, key: str, before: Any) -> int:
    after = cache.get(key)
    assert after is not None
    total = 0
    for type_url in after.type_urls():
        old = before.resources(type_url)
        for name, entry in after.resources(type_url).items():
            if name not in old or old[name].version != entry.version:
                total += len(entry.sotw_field or b"")
    return total


def _one_endpoint_moved(current: MeshState) -> MeshState:
    moved = topology.instances_of(CHANGED, ENDPOINTS)
    moved[0] = dataclasses.replace(moved[0], address="10.99.99.99")
    return current.with_instances(current.revision + 1, {f"svc-{CHANGED}": moved})


def b12(quick: bool) -> list[Figure]:
    views = 100 if quick else 1000
    started = time.monotonic()
    mesh = state(views)
    cache = SnapshotCache()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    previous: dict[int, Resources] = {}
    config_bytes = 0
    for k in range(views):
        previous[k] = translate(mesh, proxy(k))
        cache.set_snapshot(f"client-{k}", as_type_map(previous[k]), revision=1)
    heap_per_view = (tracemalloc.get_traced_memory()[0] - base) / views
    tracemalloc.stop()
    config_bytes = sum(_size(r) for r in previous.values()) // views

    changed = _one_endpoint_moved(mesh)
    pushed_views = 0
    pushed_bytes = 0
    cpu = time.process_time()
    for k in range(views):
        key = f"client-{k}"
        before = cache.get(key)
        refreshed = refresh_endpoints(previous[k], changed, proxy(k), [f"svc-{CHANGED}"])
        assert refreshed is not None
        if cache.set_snapshot(key, as_type_map(refreshed), revision=2):
            pushed_views += 1
            pushed_bytes += _changed_bytes(cache, key, before)
    refresh_cpu = time.process_time() - cpu
    dependents = sum(1 for k in range(views) if CHANGED in reached_by(k, views))

    # One unscoped view of the same mesh (no Sidecar selects it), for comparison.
    whole = proxy(views)
    unscoped_cache = SnapshotCache()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    unscoped = translate(mesh, whole)
    unscoped_cache.set_snapshot("whole", as_type_map(unscoped), revision=1)
    unscoped_heap = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    unscoped_bytes = _size(unscoped)
    before = unscoped_cache.get("whole")
    refreshed = refresh_endpoints(unscoped, changed, whole, [f"svc-{CHANGED}"])
    assert refreshed is not None
    unscoped_cache.set_snapshot("whole", as_type_map(refreshed), revision=2)
    unscoped_push = _changed_bytes(unscoped_cache, "whole", before)

    seconds = time.monotonic() - started
    return [
        Figure(
            "B12",
            f"scoped views: one endpoint moves ({SERVICES:,} svc, {views:,} views x {REACH})",
            "only dependents pushed",
            f"{pushed_views} of {views:,} views pushed, {pushed_bytes:,} B",
            pushed_views == dependents,
            {
                "views": views,
                "dependents": dependents,
                "views_pushed": pushed_views,
                "bytes_pushed": pushed_bytes,
                "unscoped_bytes_pushed_per_view": unscoped_push,
                "refresh_cpu_seconds": refresh_cpu,
            },
            note=(
                f"{dependents} view(s) reach svc-{CHANGED}; unscoped, all {views:,} would be "
                f"pushed {unscoped_push:,} B each ({views * unscoped_push:,} B); refreshing "
                f"every view took {refresh_cpu * 1000:.0f} ms CPU"
            ),
            seconds=seconds,
        ),
        Figure(
            "B12",
            "memory per proxy, scoped to 5 of 1,000 services",
            "report",
            f"{heap_per_view / 1024:.0f} KiB heap, {config_bytes / 1024:.1f} KiB config",
            None,
            {
                "heap_bytes_per_view": heap_per_view,
                "config_bytes_per_view": config_bytes,
                "unscoped_heap_bytes": unscoped_heap,
                "unscoped_config_bytes": unscoped_bytes,
            },
            note=(
                f"unscoped: {unscoped_heap / 1024:.0f} KiB heap, "
                f"{unscoped_bytes / 1024:.0f} KiB config per view; heap is the control "
                "plane's per view (translation + cache entries, tracemalloc), config what "
                "the proxy's Envoy is sent"
            ),
        ),
    ]
