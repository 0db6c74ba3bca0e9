"""The reconciler with the real key fetcher, a real SQLite store, the real snapshot cache and an
HTTPS issuer of the test's own: when the issuer rotates its key, the view whose workload the
RequestAuthentication selects gets the new key set at the same revision (nobody re-applies the
policy), and a view it does not select is sent nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from envoy.config.core.v3 import base_pb2

from interlock.model import Instance, Service
from interlock.model.policy import read_resources
from interlock.reconcile import DebounceSettings, Reconciler
from interlock.security.jwks import JwksSettings, KeyFetcher
from interlock.store import Store
from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache
from tests.support.jwks_issuer import ISSUER, RotatingIssuer


def _node(service: str) -> base_pb2.Node:
    node = base_pb2.Node(id=f"{service}-1", cluster=service)
    node.metadata.update({"inbound_port": "15006", "app_port": "8080", "outbound_port": "15001"})
    return node


def _listeners(cache: SnapshotCache, key: str) -> bytes:
    snapshot = cache.get(key)
    assert snapshot is not None
    return b"".join(e.sotw_field or b"" for _, e in sorted(snapshot.resources(rt.LISTENER).items()))


async def _scenario(store: Store, issuer: RotatingIssuer) -> None:
    cache = SnapshotCache()
    fetcher = KeyFetcher(JwksSettings(refresh=0.2, ca_file=issuer.ca.pem))
    reconciler = Reconciler(store, cache, DebounceSettings(quiet=0.01, max_wait=0.05), keys=fetcher)
    fetcher.on_change = reconciler.keys_changed
    await reconciler.start()  # fetches the key set once before serving
    fetcher.start()
    try:
        web = await reconciler.open_stream(_node("web"), [])
        other = await reconciler.open_stream(_node("other"), [])
        assert isinstance(web, str) and isinstance(other, str)
        assert b"key-0" in _listeners(cache, web)
        assert reconciler.problems_of(web) == ()
        other_before = cache.get(other)
        revision = store.revision()

        issuer.rotate()
        deadline = time.monotonic() + 5
        while b"key-1" not in _listeners(cache, web):
            assert time.monotonic() < deadline, "the rotated key never reached the view"
            await asyncio.sleep(0.05)
        assert b"key-0" not in _listeners(cache, web)
        assert store.revision() == revision
        # The view the policy does not select holds the very same resources.
        other_after = cache.get(other)
        assert other_before is not None and other_after is not None
        assert other_after.same_resources(other_before)
    finally:
        await fetcher.stop()
        await reconciler.stop()


def test_a_rotated_key_reaches_the_selected_view_without_a_write(tmp_path: Path) -> None:
    issuer = RotatingIssuer(tmp_path)
    try:
        with Store.open(f"sqlite:///{tmp_path / 'mesh.db'}") as store:
            store.put_service(Service("web", port=8080))
            store.put_service(Service("other", port=8080))
            store.put_instance(Instance("web", "web-1", "127.0.0.1", 15006))
            store.put_instance(Instance("other", "other-1", "127.0.0.2", 15006))
            document = {
                "apiVersion": "security.istio.io/v1",
                "kind": "RequestAuthentication",
                "metadata": {"name": "web-jwt", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "jwtRules": [{"issuer": ISSUER, "jwksUri": issuer.uri}],
                },
            }
            store.apply_resources(read_resources([document], batch=True))
            asyncio.run(_scenario(store, issuer))
    finally:
        issuer.close()
