"""The reconciler's incremental path, on a real SQLite store and the real snapshot cache: an
instance change re-serializes only the load assignments it touched, and the view ends up
exactly where a full rebuild would put it; any other change rebuilds in full."""

from __future__ import annotations

import asyncio
from pathlib import Path

from envoy.config.core.v3 import base_pb2

from interlock.model import Instance, Service
from interlock.reconcile import DebounceSettings, Reconciler
from interlock.store import Store
from interlock.xds.translate import translate
from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache

SERVICES = 20


def _node() -> base_pb2.Node:
    node = base_pb2.Node(id="web-1", cluster="web")
    node.metadata.update({"inbound_port": "15006", "app_port": "8080", "outbound_port": "15001"})
    return node


async def _scenario(store: Store) -> None:
    cache = SnapshotCache()
    reconciler = Reconciler(store, cache, DebounceSettings(quiet=0.01, max_wait=0.05))
    await reconciler.start()
    try:
        key = await reconciler.open_stream(_node(), [])
        assert isinstance(key, str)
        snapshot = cache.get(key)
        assert snapshot is not None
        endpoints_before = dict(snapshot.resources(rt.ENDPOINT))
        clusters_before = snapshot.content(rt.CLUSTER)
        serialized = cache.stats.resources_serialized

        # One instance moves: one load assignment is serialized, nothing else.
        store.put_instance(Instance("svc-7", "svc-7-0", "127.0.0.70", 15010))
        await reconciler.rebuild()
        snapshot = cache.get(key)
        assert snapshot is not None
        assert reconciler.incremental_builds == 1
        assert cache.stats.resources_serialized - serialized == 1
        assert snapshot.content(rt.CLUSTER) is clusters_before
        changed = {
            name
            for name, entry in snapshot.resources(rt.ENDPOINT).items()
            if endpoints_before[name] is not entry
        }
        assert changed == {"outbound|8080||svc-7.default"}
        # ... and the view is exactly what a full translation of the new state gives.
        state = store.load_state()
        full = translate(state, reconciler.views[key].proxy)
        served = reconciler.views[key].published
        for kind in ("listeners", "clusters", "routes", "endpoints"):
            assert [m.SerializeToString(deterministic=True) for m in getattr(served, kind)] == [
                m.SerializeToString(deterministic=True) for m in getattr(full, kind)
            ], kind
        assert snapshot.revision == state.revision

        # A service change is not an instance change: the view is translated in full.
        store.put_service(Service("svc-7", port=9090))
        await reconciler.rebuild()
        assert reconciler.incremental_builds == 1
        snapshot = cache.get(key)
        assert snapshot is not None
        assert "outbound|9090||svc-7.default" in snapshot.resources(rt.CLUSTER)
    finally:
        await reconciler.stop()


def test_an_instance_change_serializes_only_its_assignment(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'mesh.db'}") as store:
        store.put_service(Service("web", port=8080))
        for i in range(SERVICES):
            store.put_service(Service(f"svc-{i}", port=8080))
            for j in range(3):
                store.put_instance(Instance(f"svc-{i}", f"svc-{i}-{j}", "127.0.0.1", 15100 + j))
        asyncio.run(_scenario(store))
