"""Delta (incremental) ADS over real gRPC on 127.0.0.1, driven by a scripted Envoy-like client.

"Nothing was sent" is proven with the harness barrier (a secret re-subscribed; SDS goes last).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from interlock.xds.transport import resource_types as rt
from tests.support.xds_client import Harness, XdsClient, mesh_resources, running_harness


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running_harness() as h:
        yield h


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[XdsClient]:
    async with harness.client("proxy-1", variant="delta") as c:
        yield c


async def take(client: XdsClient, type_url: str, names: list[str] | None = None) -> Any:
    await client.subscribe(type_url, names)
    response = await client.recv()
    assert response.type_url == type_url
    await client.ack(response)
    return response


async def test_wildcard_forms(harness: Harness) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=1)
    async with harness.client("proxy-1", variant="delta") as legacy:
        everything = await take(legacy, rt.CLUSTER)  # no names on the first request
        assert everything.names == ["a", "b"] and everything.removed == []
        assert everything.version and everything.nonce
    async with harness.client("proxy-1", variant="delta") as explicit:
        assert (await take(explicit, rt.CLUSTER, ["*"])).names == ["a", "b"]
        # leaving the wildcard but keeping "a": b is no longer this stream's business
        await explicit.subscribe(rt.CLUSTER, ["a"])
        await explicit.unsubscribe(rt.CLUSTER, ["*"])
        assert await harness.barrier(explicit) == []
        harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 22}), revision=2)
        assert await harness.barrier(explicit) == []
    async with harness.client("proxy-1", variant="delta") as mixed:
        assert (await take(mixed, rt.LISTENER, ["*", "l", "nope"])).names == ["l"]
    async with harness.client("proxy-1", variant="delta") as named:
        assert (await take(named, rt.CLUSTER, ["b"])).names == ["b"]  # names only: no wildcard


async def test_only_changes_are_sent_and_deletions_are_removals(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=1)
    first = await take(client, rt.CLUSTER)
    await take(client, rt.ENDPOINT, ["a", "b"])
    versions = {name: v for name, (v, _) in first.resources.items()}

    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 22}), revision=2)
    endpoints = await client.recv()
    assert (endpoints.type_url, endpoints.names, endpoints.removed) == (rt.ENDPOINT, ["b"], [])
    await client.ack(endpoints)

    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}), revision=3)
    removal = await client.recv()
    assert (removal.type_url, removal.names, removal.removed) == (rt.CLUSTER, [], ["b"])
    await client.ack(removal)
    assert client.view(rt.CLUSTER).resources.keys() == {"a"}
    assert client.view(rt.CLUSTER).resources["a"][0] == versions["a"]


async def test_a_reconnect_with_initial_versions_gets_only_what_changed(harness: Harness) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2, "c": 3}), revision=1)
    async with harness.client("proxy-1", variant="delta") as first:
        held = {name: v for name, (v, _) in (await take(first, rt.CLUSTER)).resources.items()}
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 22, "d": 4}), revision=2)
    changed = mesh_resources({"a": 1, "b": 22, "d": 4})
    changed[rt.CLUSTER][1].connect_timeout.FromMilliseconds(4000)  # b's cluster changes
    harness.cache.set_snapshot("proxy-1", changed, revision=3)
    async with harness.client("proxy-1", variant="delta") as again:
        await again.subscribe(rt.CLUSTER, None, initial_versions=held)
        update = await again.recv()
        assert update.names == ["b", "d"]  # a is unchanged
        assert update.removed == ["c"]
        await again.ack(update)
        # unchanged held resources get nothing at all
    async with harness.client("proxy-1", variant="delta") as current:
        now = {n: e.version for n, e in harness.cache.get("proxy-1").resources(rt.CLUSTER).items()}  # type: ignore[union-attr]
        await current.subscribe(rt.CLUSTER, None, initial_versions=now)
        assert await harness.barrier(current) == []
        # Nothing was sent, yet its status says it holds revision 3's clusters (a rollout
        # must not wait for a proxy that reconnected up to date, e.g. after a restart).
        (status,) = [p for p in harness.status.proxies() if rt.CLUSTER in p.types]
        clusters = status.types[rt.CLUSTER]
        assert (clusters.revision_acked, clusters.pending) == (3, False)
        assert clusters.version_acked == harness.cache.get("proxy-1").version(rt.CLUSTER)  # type: ignore[union-attr]


async def test_a_changed_cluster_gets_its_endpoints_again(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=1)
    await take(client, rt.CLUSTER)
    await take(client, rt.ENDPOINT, ["a", "b"])
    changed = mesh_resources({"a": 1, "b": 2})
    changed[rt.CLUSTER][0].connect_timeout.FromMilliseconds(3000)  # cluster a, same endpoints
    harness.cache.set_snapshot("proxy-1", changed, revision=2)
    clusters = await client.recv()
    assert (clusters.type_url, clusters.names) == (rt.CLUSTER, ["a"])
    endpoints = await client.recv()
    assert (endpoints.type_url, endpoints.names, endpoints.removed) == (rt.ENDPOINT, ["a"], [])
    await client.ack(clusters)
    await client.ack(endpoints)
    assert await harness.barrier(client) == []


async def test_unsubscribing_unknown_names_is_ignored(harness: Harness, client: XdsClient) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}), revision=1)
    assert (await take(client, rt.ENDPOINT, ["a"])).names == ["a"]
    await client.unsubscribe(rt.ENDPOINT, ["never-subscribed"])
    assert await harness.barrier(client) == []
    await client.unsubscribe(rt.ENDPOINT, ["a"])
    assert await harness.barrier(client) == []
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 11}), revision=2)
    assert await harness.barrier(client) == []  # unsubscribed
    again = await take(client, rt.ENDPOINT, ["a"])
    assert again.names == ["a"]


async def test_a_name_subscribed_before_it_exists_is_pushed_when_created(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=1)
    await client.subscribe(rt.ROUTE, ["later"])
    assert await harness.barrier(client) == []
    routes = {"r": ("v1", None), "later": ("new", None)}
    harness.cache.set_snapshot("proxy-1", mesh_resources(routes=routes), revision=2)
    created = await client.recv()
    assert (created.type_url, created.names) == (rt.ROUTE, ["later"])


async def test_a_nack_is_recorded_and_not_answered_until_the_content_changes(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=1)
    await client.subscribe(rt.ROUTE, ["r"])
    rejected = await client.recv()
    await client.nack(rejected, "bad regex")
    assert await harness.barrier(client) == []
    assert not harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=2)
    assert await harness.barrier(client) == []
    rds = harness.status.proxies()[0].types[rt.ROUTE]
    assert rds.last_nack is not None
    # Revision 2 still asks for the rejected content: the NACK now stands against it too,
    # and nothing was resent.
    assert (rds.last_nack.message, rds.last_nack.revision) == ("bad regex", 2)

    harness.cache.set_snapshot("proxy-1", mesh_resources(routes={"r": ("v2", None)}), revision=3)
    fixed = await client.recv()
    assert fixed.names == ["r"]
    await client.ack(fixed)
    await harness.barrier(client)
    rds = harness.status.proxies()[0].types[rt.ROUTE]
    assert (rds.version_acked, rds.revision_acked) == (fixed.version, 3)


async def test_an_ack_with_a_stale_nonce_acknowledges_nothing(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}), revision=1)
    await client.subscribe(rt.CLUSTER)
    first = await client.recv()
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=2)
    second = await client.recv()
    await client.send(
        discovery_pb2.DeltaDiscoveryRequest(type_url=rt.CLUSTER, response_nonce=first.nonce)
    )
    await harness.barrier(client)
    cds = harness.status.proxies()[0].types[rt.CLUSTER]
    assert cds.pending and cds.version_acked is None
    await client.ack(second)
    await harness.barrier(client)
    cds = harness.status.proxies()[0].types[rt.CLUSTER]
    assert (cds.version_acked, cds.revision_acked) == (second.version, 2)


async def test_dropped_clusters_are_removed_only_after_the_routes_are_acked(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot(
        "proxy-1", mesh_resources({"a": 1, "b": 2}, {"r": ("v1", "b")}), revision=1
    )
    await take(client, rt.CLUSTER)
    await take(client, rt.ENDPOINT, ["a", "b"])
    await take(client, rt.LISTENER)
    await take(client, rt.ROUTE, ["r"])

    harness.cache.set_snapshot(
        "proxy-1", mesh_resources({"a": 1, "c": 3}, {"r": ("v2", "c")}), revision=2
    )
    make = await client.recv()
    assert (make.type_url, make.names, make.removed) == (rt.CLUSTER, ["c"], [])
    await client.subscribe(rt.ENDPOINT, ["c"])  # the new cluster warms: endpoints at once
    await client.ack(make)
    endpoints = await client.recv()
    assert (endpoints.type_url, endpoints.names) == (rt.ENDPOINT, ["c"])
    assert await harness.barrier(client) == []  # routes wait until c is in place
    await client.ack(endpoints)
    routes = await client.recv()
    assert routes.type_url == rt.ROUTE
    assert await harness.barrier(client) == []  # b stays while the old routes may use it

    await client.ack(routes)
    brk = await client.recv()
    assert (brk.type_url, brk.names, brk.removed) == (rt.CLUSTER, [], ["b"])
    await client.unsubscribe(rt.ENDPOINT, ["b"])  # like Envoy: b's endpoints go with b...
    await client.ack(brk)  # ...before it ACKs
    assert await harness.barrier(client) == []
    assert harness.status.proxies()[0].synced_revision == 2
