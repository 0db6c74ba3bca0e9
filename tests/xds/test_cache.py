"""The snapshot cache: versions are hashes of bytes, each resource is serialized once, a write that
changes nothing wakes nobody, and the encoded responses are what Envoy's protos parse."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport import wire
from interlock.xds.transport.cache import SnapshotCache
from interlock.xds.transport.content import version_of
from tests.support.xds_client import (
    make_cluster,
    make_endpoints,
    make_listener,
    make_route,
    make_secret,
)


class RecordingWatcher:
    """A watcher that remembers what it was told (the cache's whole watcher interface)."""

    def __init__(self) -> None:
        self.wakes = 0
        self.revisions: list[int] = []

    def wake(self) -> None:
        self.wakes += 1

    def on_revision(self, revision: int) -> None:
        self.revisions.append(revision)


def mesh(body: str = "hello", port: int = 8080) -> dict[str, list[Any]]:
    return {
        rt.CLUSTER: [make_cluster("a"), make_cluster("b")],
        rt.ENDPOINT: [make_endpoints("a", port), make_endpoints("b", 9090)],
        rt.LISTENER: [make_listener("http", 10000, "routes")],
        rt.ROUTE: [make_route("routes", body)],
        rt.SECRET: [make_secret("token")],
    }


def test_resources_are_named_and_versioned_by_their_bytes() -> None:
    cache = SnapshotCache()
    assert cache.set_snapshot("k", mesh(), revision=1)
    snapshot = cache.get("k")
    assert snapshot is not None
    assert snapshot.revision == 1
    assert set(snapshot.resources(rt.CLUSTER)) == {"a", "b"}
    assert set(snapshot.resources(rt.ENDPOINT)) == {"a", "b"}
    assert set(snapshot.resources(rt.ROUTE)) == {"routes"}
    entry = snapshot.resources(rt.CLUSTER)["a"]
    assert entry.version == version_of(make_cluster("a").SerializeToString(deterministic=True))
    assert cluster_pb2.Cluster.FromString(entry.to_any().value) == make_cluster("a")
    assert entry.to_any().type_url == rt.CLUSTER
    assert snapshot.version(rt.CLUSTER)  # every type has a non-empty version
    assert snapshot.version("type.googleapis.com/unknown.Type")


def test_an_identical_write_changes_nothing_and_wakes_nobody() -> None:
    cache = SnapshotCache()
    watcher = RecordingWatcher()
    cache.watch("k", watcher)
    assert cache.set_snapshot("k", mesh(), revision=1)
    assert watcher.wakes == 1
    before = cache.get("k")
    assert not cache.set_snapshot("k", mesh(), revision=2)  # new message objects, same bytes
    assert watcher.wakes == 1
    assert watcher.revisions == [2]
    after = cache.get("k")
    assert after is not None and before is not None
    assert after.revision == 2
    assert after.same_resources(before)
    assert cache.set_snapshot("k", mesh(body="changed"), revision=3)
    assert watcher.wakes == 2


def test_each_resource_is_serialized_once_and_encoded_once_across_keys() -> None:
    cache = SnapshotCache()
    for n in range(50):
        cache.set_snapshot(f"proxy-{n}", mesh(), revision=1)
    stats = cache.stats
    assert stats.resources_serialized == 50 * 7  # one SerializeToString per message given
    assert stats.entries_encoded == 7  # equal bytes are wrapped and framed once
    first, last = cache.get("proxy-0"), cache.get("proxy-49")
    assert first is not None and last is not None
    assert first.resources(rt.CLUSTER)["a"] is last.resources(rt.CLUSTER)["a"]
    assert first.content(rt.CLUSTER) is last.content(rt.CLUSTER)  # contents are shared too
    # one changed endpoint: one new entry; the unchanged ones are reused
    cache.set_snapshot("proxy-0", mesh(port=8081), revision=2)
    assert stats.entries_encoded == 8
    changed = cache.get("proxy-0")
    assert changed is not None
    assert changed.resources(rt.CLUSTER)["a"] is last.resources(rt.CLUSTER)["a"]
    assert changed.resources(rt.ENDPOINT)["a"] is not last.resources(rt.ENDPOINT)["a"]
    assert changed.version(rt.ENDPOINT) != last.version(rt.ENDPOINT)
    assert changed.version(rt.CLUSTER) == last.version(rt.CLUSTER)


def test_a_response_body_is_encoded_once_per_content() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("one", mesh(), revision=1)
    cache.set_snapshot("two", mesh(), revision=1)
    one, two = cache.get("one"), cache.get("two")
    assert one is not None and two is not None
    body = one.content(rt.CLUSTER).sotw_body()
    assert two.content(rt.CLUSTER).sotw_body() is body
    assert cache.stats.sotw_bodies_encoded == 1


def test_encoded_sotw_and_delta_responses_parse_as_envoy_protos() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("k", mesh(), revision=1)
    snapshot = cache.get("k")
    assert snapshot is not None
    content = snapshot.content(rt.CLUSTER)
    sotw = discovery_pb2.DiscoveryResponse.FromString(
        content.sotw_body() + wire.text_field(wire.SOTW_NONCE, "7")
    )
    assert sotw.version_info == content.version
    assert sotw.type_url == rt.CLUSTER
    assert sotw.nonce == "7"
    assert [cluster_pb2.Cluster.FromString(r.value).name for r in sotw.resources] == ["a", "b"]
    assert all(r.type_url == rt.CLUSTER for r in sotw.resources)

    only_a = content.subset(frozenset({"a", "missing"}))
    delta = discovery_pb2.DeltaDiscoveryResponse.FromString(
        only_a.delta_body(content) + wire.text_field(wire.DELTA_NONCE, "8")
    )
    assert delta.system_version_info == only_a.version
    assert delta.type_url == rt.CLUSTER
    assert list(delta.removed_resources) == ["b"]
    assert not delta.resources  # "a" is held at the same version
    fresh = discovery_pb2.DeltaDiscoveryResponse.FromString(only_a.delta_body(None))
    assert [(r.name, r.version) for r in fresh.resources] == [("a", only_a.entries["a"].version)]
    assert cluster_pb2.Cluster.FromString(fresh.resources[0].resource.value) == make_cluster("a")


def test_keys_watches_and_drop() -> None:
    cache = SnapshotCache()
    watcher = RecordingWatcher()
    cache.set_snapshot("a", mesh(), revision=1)
    cache.set_snapshot("b", mesh(), revision=1)
    cache.watch("b", watcher)
    cache.watch("c", watcher)  # a key may be watched before it has a snapshot
    assert cache.keys() == {"a", "b"}
    assert cache.watched_keys() == {"b", "c"}
    cache.drop("a")
    assert cache.get("a") is None
    assert cache.keys() == {"b"}
    cache.unwatch("c", watcher)
    assert cache.watched_keys() == {"b"}
    cache.set_snapshot("c", mesh(), revision=1)
    assert watcher.wakes == 0
    cache.advance_revision(5)
    assert watcher.revisions == [5]
    b = cache.get("b")
    assert b is not None and b.revision == 5


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({rt.CLUSTER: [make_endpoints("a", 1)]}, "given as a resource of"),
        ({rt.CLUSTER: [cluster_pb2.Cluster()]}, "has no name"),
        ({rt.CLUSTER: [make_cluster("a"), make_cluster("a")]}, "are named 'a'"),
    ],
)
def test_invalid_resources_are_refused_and_the_last_snapshot_kept(
    resources: dict[str, list[Any]], message: str
) -> None:
    cache = SnapshotCache()
    cache.set_snapshot("k", mesh(), revision=1)
    with pytest.raises(ValueError, match=message):
        cache.set_snapshot("k", resources, revision=2)
    snapshot = cache.get("k")
    assert snapshot is not None and snapshot.revision == 1


def test_what_a_reconnecting_proxy_holds_resolves_to_the_content_it_was_sent() -> None:
    """A delta reconnect names what it holds (name -> version); when that is exactly a content
    the cache knows, that content is used as is (no placeholder per resource), and anything
    else becomes placeholders that are never sent."""
    cache = SnapshotCache()
    cache.set_snapshot("k", mesh(), revision=1)
    snapshot = cache.get("k")
    assert snapshot is not None
    sent = snapshot.content(rt.CLUSTER)
    versions = {name: entry.version for name, entry in sent.entries.items()}

    assert cache.pool.held(rt.CLUSTER, versions) is sent

    stale = {name: "0000000000000000" for name in versions}
    held = cache.pool.held(rt.CLUSTER, stale)
    assert held is not sent
    assert set(held.entries) == set(versions)
    assert all(entry.placeholder for entry in held.entries.values())
