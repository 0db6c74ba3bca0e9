"""The reconciler outlives a store that fails under it (issue 19 item 6), on a real SQLite file
broken and repaired by another process: its periodic revision check fails, the failure is
counted and reported, and once the store works again the next write is published at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from envoy.config.core.v3 import base_pb2

from interlock.model import Service
from interlock.reconcile import DebounceSettings, Reconciler
from interlock.store import Store
from interlock.telemetry.metrics import ControlPlaneMetrics
from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache


def _node() -> base_pb2.Node:
    node = base_pb2.Node(id="web-1", cluster="web")
    node.metadata.update({"inbound_port": "15006", "app_port": "8080", "outbound_port": "15001"})
    return node


def _alter(db: Path, statement: str) -> None:
    """Run ``statement`` on ``db`` from another process, as an operator's shell would."""
    script = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=5); "
    script += "c.execute(sys.argv[2]); c.commit(); c.close()"
    subprocess.run([sys.executable, "-c", script, str(db), statement], check=True, timeout=10)


async def _until(condition: Callable[[], bool], within: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"not within {within}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _scenario(store: Store, db: Path) -> None:
    metrics = ControlPlaneMetrics()
    cache = SnapshotCache()
    debounce = DebounceSettings(quiet=0.01, max_wait=0.05, resync_interval=0.2)
    reconciler = Reconciler(store, cache, debounce, metrics)
    await reconciler.start()

    def errors(stage: str) -> float:
        return (
            metrics.registry.get_sample_value("interlock_reconcile_errors_total", {"stage": stage})
            or 0.0
        )

    try:
        key = await reconciler.open_stream(_node(), [])
        assert isinstance(key, str)

        _alter(db, "ALTER TABLE mesh RENAME TO mesh_away")  # every read of the revision fails
        await _until(lambda: errors("check") >= 1, 5)
        await _until(lambda: errors("rebuild") >= 2, 5)  # retried, with backoff
        assert reconciler.running_problem() is None  # still running...
        problem = reconciler.failing_problem()  # ... and says why it is behind
        assert problem is not None and "no such table: mesh" in problem, problem

        _alter(db, "ALTER TABLE mesh_away RENAME TO mesh")
        store.put_service(Service("late", port=8080))

        def published() -> bool:
            snapshot = cache.get(key)
            return snapshot is not None and "outbound|8080||late.default" in snapshot.resources(
                rt.CLUSTER
            )

        took = await _until(published, 2.0)
        print(f"the first write after the repair published in {took:.2f}s")
        assert reconciler.failing_problem() is None
        assert reconciler.running_problem() is None
    finally:
        await reconciler.stop()
    assert reconciler.running_problem() == "the reconciler is not running"


def test_the_reconciler_survives_a_store_that_fails_at_its_periodic_check(
    tmp_path: Path,
) -> None:
    db = tmp_path / "mesh.db"
    with Store.open(f"sqlite:///{db}", timeout=0.5) as store:
        store.put_service(Service("web", port=8080))
        asyncio.run(_scenario(store, db))
