"""The glue's part for proxyless gRPC: a node from gRPC's xDS client gets the gRPC view even
when its bootstrap does not say ``kind: grpc``, and its view's problems are read per proxy
(what ``GET /v1/proxies/{node_id}`` shows)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from envoy.config.core.v3 import base_pb2

from interlock.model import Instance, ProxyKind, Service
from interlock.model.policy import read_resources
from interlock.reconcile import DebounceSettings, Reconciler
from interlock.store import Store
from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache

MIRRORING = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "greeter", "namespace": "default"},
    "spec": {
        "hosts": ["greeter"],
        "http": [{"route": [{"destination": {"host": "greeter"}}], "mirror": {"host": "greeter"}}],
    },
}


async def _scenario(store: Store) -> None:
    cache = SnapshotCache()
    reconciler = Reconciler(store, cache, DebounceSettings(quiet=0.01, max_wait=0.05))
    await reconciler.start()
    try:
        node = base_pb2.Node(id="c1", cluster="caller", user_agent_name="gRPC Python")
        key = await reconciler.open_stream(node, [])
        assert isinstance(key, str)
        assert reconciler.views[key].proxy.kind is ProxyKind.GRPC
        snapshot = cache.get(key)
        assert snapshot is not None
        assert "greeter" in snapshot.resources(rt.LISTENER)
        assert reconciler.problems_of(key) == ()

        store.apply_resources(read_resources([MIRRORING], batch=True))
        await reconciler.rebuild()
        (problem,) = reconciler.problems_of(key)
        assert (problem.resource, problem.field) == (
            "VirtualService/default/greeter",
            "http[0].mirror",
        )

        # An Envoy node (no gRPC user agent, no kind) is still a sidecar.
        envoy = base_pb2.Node(id="c2", cluster="caller", user_agent_name="envoy")
        sidecar = await reconciler.open_stream(envoy, [])
        assert (
            isinstance(sidecar, str) and reconciler.views[sidecar].proxy.kind is ProxyKind.SIDECAR
        )
    finally:
        await reconciler.stop()


def test_a_grpc_client_without_kind_gets_the_grpc_view_and_its_problems(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'mesh.db'}") as store:
        store.put_service(Service("caller", port=9))
        store.put_service(Service("greeter", port=50051))
        store.put_instance(Instance("greeter", "g1", "127.0.0.1", 50051, sidecar=False))
        asyncio.run(_scenario(store))
