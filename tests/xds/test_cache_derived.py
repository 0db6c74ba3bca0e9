"""Derived snapshots: a view shared by many proxies plus each proxy's own secrets, composed
without serializing the view again, following the view as it changes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache
from tests.support.xds_client import make_cluster, make_endpoints, make_secret
from tests.xds.test_cache import RecordingWatcher


def view(port: int = 8080) -> dict[str, list[Any]]:
    return {
        rt.CLUSTER: [make_cluster("a"), make_cluster("b")],
        rt.ENDPOINT: [make_endpoints("a", port), make_endpoints("b", 9090)],
    }


def secrets(value: str) -> dict[str, list[Any]]:
    return {rt.SECRET: [make_secret("default", value), make_secret("ROOTCA", "bundle")]}


def test_a_derived_snapshot_is_the_base_plus_its_own_and_shares_the_base_contents() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("view", view(), revision=3)
    serialized = cache.stats.resources_serialized
    assert cache.set_derived("p1", "view", secrets("one"))
    assert cache.set_derived("p2", "view", secrets("two"))
    assert cache.stats.resources_serialized == serialized + 4  # only the secrets
    base, p1, p2 = cache.get("view"), cache.get("p1"), cache.get("p2")
    assert base is not None and p1 is not None and p2 is not None
    for type_url in (rt.CLUSTER, rt.ENDPOINT):
        assert p1.content(type_url) is base.content(type_url) is p2.content(type_url)
    assert p1.revision == p2.revision == 3
    assert set(p1.resources(rt.SECRET)) == {"default", "ROOTCA"}
    assert p1.resources(rt.SECRET)["default"] is not p2.resources(rt.SECRET)["default"]
    assert p1.resources(rt.SECRET)["ROOTCA"] is p2.resources(rt.SECRET)["ROOTCA"]  # equal bytes
    assert cache.base_of("p1") == "view" and cache.base_of("view") is None


def test_derived_snapshots_follow_their_base() -> None:
    cache = SnapshotCache()
    watcher = RecordingWatcher()
    cache.set_derived("p1", "view", secrets("one"))
    assert cache.get("p1") is None  # nothing until the base has a snapshot
    cache.watch("p1", watcher)
    cache.set_snapshot("view", view(), revision=1)
    assert watcher.wakes == 1
    cache.set_snapshot("view", view(), revision=2)  # unchanged: a new revision only
    assert watcher.wakes == 1 and watcher.revisions == [2]
    cache.set_snapshot("view", view(port=8081), revision=3)
    assert watcher.wakes == 2
    derived = cache.get("p1")
    assert derived is not None and derived.revision == 3
    cache.advance_revision(4)
    assert watcher.revisions == [2, 4]
    assert cache.set_derived("p1", "view", secrets("one")) is False  # same secrets
    assert cache.set_derived("p1", "view", secrets("renewed")) is True
    assert watcher.wakes == 3
    assert "view" in cache.watched_keys()  # watched through p1


def test_rebasing_and_dropping() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("v1", view(), revision=1)
    cache.set_snapshot("v2", view(port=9999), revision=1)
    cache.set_derived("p", "v1", secrets("s"))
    cache.set_derived("p", "v2", secrets("s"))
    moved = cache.get("p")
    assert moved is not None
    assert moved.content(rt.ENDPOINT) is cache.get("v2").content(rt.ENDPOINT)  # type: ignore[union-attr]
    cache.set_snapshot("v1", view(port=1), revision=2)  # p no longer follows v1
    assert cache.get("p") is moved
    cache.drop("v2")
    assert cache.get("p") is None
    cache.set_snapshot("v2", view(), revision=3)
    assert cache.get("p") is not None
    with pytest.raises(ValueError, match="derived"):
        cache.set_snapshot("p", view(), revision=1)
    cache.drop("p")
    assert cache.base_of("p") is None


def test_composition_cost_per_proxy_is_small_and_independent_of_the_view_size() -> None:
    """Not a timed test: prints what composing costs, and checks no view bytes are redone."""
    cache = SnapshotCache()
    big = {
        rt.CLUSTER: [make_cluster(f"c{i}") for i in range(500)],
        rt.ENDPOINT: [make_endpoints(f"c{i}", 8000 + i) for i in range(500)],
    }
    cache.set_snapshot("view", big, revision=1)
    before = cache.stats.resources_serialized
    started = time.perf_counter()
    for n in range(1000):
        cache.set_derived(f"p{n}", "view", secrets(f"svid-{n}"))
    per_proxy = (time.perf_counter() - started) / 1000
    assert cache.stats.resources_serialized == before + 2000
    started = time.perf_counter()
    cache.set_snapshot("view", {**big, rt.CLUSTER: big[rt.CLUSTER][:-1]}, revision=2)
    recompose = time.perf_counter() - started
    print(
        f"\nper-proxy composition: {per_proxy * 1e6:.0f} µs; "
        f"a view change recomposing 1000 proxies: {recompose * 1e3:.1f} ms"
    )
