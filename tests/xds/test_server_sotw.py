"""State-of-the-world ADS over real gRPC on 127.0.0.1, driven by a scripted Envoy-like client.

"Nothing was sent" is proven with a barrier, not a timer: the client re-subscribes a secret, and
because the server sends SDS last in every push, anything else the server had to send arrives
before the barrier's response.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.server import Metadata, StreamRejected
from interlock.xds.transport.status import StatusEvent
from tests.support.xds_client import (
    PROBE,
    Harness,
    XdsClient,
    mesh_resources,
    running_harness,
)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running_harness() as h:
        yield h


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[XdsClient]:
    async with harness.client("proxy-1", cluster="web", node_metadata={"zone": "z1"}) as c:
        yield c


async def take(client: XdsClient, type_url: str, names: list[str] | None = None) -> Any:
    """Subscribe to ``type_url`` and ACK its first response."""
    await client.subscribe(type_url, names)
    response = await client.recv()
    assert response.type_url == type_url
    await client.ack(response)
    return response


async def test_a_response_is_versioned_and_its_ack_recorded(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=1)
    await client.subscribe(rt.CLUSTER)
    response = await client.recv()
    assert response.names == ["a", "b"]
    assert response.version == harness.cache.get("proxy-1").version(rt.CLUSTER)  # type: ignore[union-attr]
    assert response.nonce
    await client.ack(response)
    assert await harness.barrier(client) == []

    [proxy] = harness.status.proxies()
    assert (proxy.node_id, proxy.node_cluster, proxy.node_metadata) == (
        "proxy-1",
        "web",
        {"zone": "z1"},
    )
    assert (proxy.snapshot_key, proxy.variant, proxy.service) == ("proxy-1", "sotw", "ads")
    assert proxy.envoy_version == "interlock-test-client/0.0.1"
    cds = proxy.types[rt.CLUSTER]
    assert (cds.version_sent, cds.revision_sent) == (response.version, 1)
    assert (cds.version_acked, cds.revision_acked) == (response.version, 1)
    assert cds.last_nack is None and not cds.pending
    assert proxy.synced_revision == 1


async def test_a_nack_is_recorded_and_not_answered_until_the_content_changes(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=1)
    await client.subscribe(rt.ROUTE, ["r"])
    rejected = await client.recv()
    await client.nack(rejected, "invalid regex in route r")
    assert await harness.barrier(client) == []  # no NACK storm

    rds = harness.status.proxies()[0].types[rt.ROUTE]
    assert rds.last_nack is not None
    assert rds.last_nack.message == "invalid regex in route r"
    assert (rds.last_nack.version, rds.last_nack.revision) == (rejected.version, 1)
    assert rds.version_acked is None

    # republishing the same content (a new revision) sends nothing either, and the NACK now
    # stands against revision 2 too (it still asks for the rejected content)
    assert not harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=2)
    assert await harness.barrier(client) == []
    rds = harness.status.proxies()[0].types[rt.ROUTE]
    assert rds.last_nack is not None and rds.last_nack.revision == 2

    harness.cache.set_snapshot("proxy-1", mesh_resources(routes={"r": ("v2", None)}), revision=3)
    fixed = await client.recv()
    assert fixed.type_url == rt.ROUTE and fixed.version != rejected.version
    await client.ack(fixed)
    await harness.barrier(client)
    rds = harness.status.proxies()[0].types[rt.ROUTE]
    assert (rds.version_acked, rds.revision_acked) == (fixed.version, 3)
    assert rds.last_nack is not None and rds.last_nack.revision == 2


async def test_a_request_with_a_stale_nonce_gets_no_response(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=1)
    await client.subscribe(rt.ENDPOINT, ["a"])
    first = await client.recv()
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 11, "b": 2}), revision=2)
    second = await client.recv()
    assert second.nonce != first.nonce

    stale = discovery_pb2.DiscoveryRequest(
        type_url=rt.ENDPOINT, resource_names=["a", "b"], response_nonce=first.nonce
    )
    await client.send(stale)
    assert await harness.barrier(client) == []

    current = discovery_pb2.DiscoveryRequest(
        type_url=rt.ENDPOINT,
        resource_names=["a", "b"],
        response_nonce=second.nonce,
        version_info=second.version,
    )
    await client.send(current)
    newly = await client.recv()
    assert newly.names == ["b"]  # "a" is ACKed and unchanged: EDS responses are not SotW
    assert newly.version != second.version


async def test_after_an_ack_eds_carries_only_what_changed_and_cds_everything(
    harness: Harness, client: XdsClient
) -> None:
    """Over SotW, LDS and CDS responses are the state of the world; EDS (and RDS, SDS) update
    the resources they carry. So one cluster's new endpoints go out alone, while a proxy
    that has not ACKed, or NACKed, or just got CDS, gets everything it subscribes to."""
    clusters = {"a": 1, "b": 2, "c": 3}
    harness.cache.set_snapshot("proxy-1", mesh_resources(clusters), revision=1)
    await client.subscribe(rt.CLUSTER)
    cds = await client.recv()
    await client.ack(cds)
    await client.subscribe(rt.ENDPOINT, ["a", "b", "c"])
    eds = await client.recv()
    assert eds.names == ["a", "b", "c"]
    await client.ack(eds)
    await harness.barrier(client)

    harness.cache.set_snapshot("proxy-1", mesh_resources({**clusters, "b": 22}), revision=2)
    changed = await client.recv()
    assert (changed.type_url, changed.names) == (rt.ENDPOINT, ["b"])
    whole = harness.cache.get("proxy-1")
    assert whole is not None and changed.version == whole.version(rt.ENDPOINT)
    await client.nack(changed)
    await harness.barrier(client)

    harness.cache.set_snapshot("proxy-1", mesh_resources({**clusters, "c": 33}), revision=3)
    after_nack = await client.recv()
    assert after_nack.names == ["a", "b", "c"]  # it may hold neither b nor c as sent
    await client.ack(after_nack)
    await harness.barrier(client)

    more = {**clusters, "b": 22, "c": 33, "d": 4}
    harness.cache.set_snapshot("proxy-1", mesh_resources(more), revision=4)
    cds_again = await client.recv()
    assert cds_again.type_url == rt.CLUSTER and cds_again.names == ["a", "b", "c", "d"]
    # Only b's endpoints changed, but after a CDS response Envoy may have replaced clusters,
    # whose new EDS watches wait for a response naming them: this EDS response is whole.
    after_cds = await client.recv()
    assert (after_cds.type_url, after_cds.names) == (rt.ENDPOINT, ["a", "b", "c"])
    await client.ack(cds_again)
    await client.ack(after_cds)
    await harness.barrier(client)

    await client.subscribe(rt.ENDPOINT, ["a", "b", "c", "d"])
    only_d = await client.recv()
    assert (only_d.type_url, only_d.names) == (rt.ENDPOINT, ["d"])


async def test_after_lds_the_next_rds_response_carries_every_route(
    harness: Harness, client: XdsClient
) -> None:
    """A changed listener is a new listener to Envoy: RDS after LDS is whole again."""
    listeners = {"l": (10000, "r1"), "m": (10001, "r2")}
    routes = {"r1": ("v1", None), "r2": ("v1", None)}
    resources = mesh_resources(routes=routes, listeners=listeners)
    harness.cache.set_snapshot("proxy-1", resources, revision=1)
    await client.subscribe(rt.LISTENER)
    await client.ack(await client.recv())
    await client.subscribe(rt.ROUTE, ["r1", "r2"])
    rds = await client.recv()
    assert rds.names == ["r1", "r2"]
    await client.ack(rds)
    await harness.barrier(client)

    routes = {**routes, "r1": ("v2", None)}
    resources = mesh_resources(routes=routes, listeners=listeners)
    harness.cache.set_snapshot("proxy-1", resources, revision=2)
    changed = await client.recv()
    assert (changed.type_url, changed.names) == (rt.ROUTE, ["r1"])
    await client.ack(changed)
    await harness.barrier(client)

    listeners = {**listeners, "l": (10002, "r1")}
    routes = {**routes, "r2": ("v2", None)}
    resources = mesh_resources(routes=routes, listeners=listeners)
    harness.cache.set_snapshot("proxy-1", resources, revision=3)
    lds = await client.recv()
    assert lds.type_url == rt.LISTENER
    after_lds = await client.recv()
    assert (after_lds.type_url, after_lds.names) == (rt.ROUTE, ["r1", "r2"])


async def test_eds_sends_only_requested_names_and_an_empty_list_unsubscribes(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=1)
    only_a = await take(client, rt.ENDPOINT, ["a"])
    assert only_a.names == ["a"]

    await client.subscribe(rt.ENDPOINT, [])
    assert await harness.barrier(client) == []
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 11, "b": 2}), revision=2)
    assert await harness.barrier(client) == []  # unsubscribed: nothing pushed

    again = await take(client, rt.ENDPOINT, ["a"])
    assert again.names == ["a"]
    assert (
        again.resources["a"][1]
        .endpoints[0]
        .lb_endpoints[0]
        .endpoint.address.socket_address.port_value
        == 11
    )


async def test_a_name_requested_before_it_exists_is_pushed_when_created(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=1)
    await client.subscribe(rt.ROUTE, ["later"])
    assert await harness.barrier(client) == []
    routes = {"r": ("v1", None), "later": ("new", None)}
    harness.cache.set_snapshot("proxy-1", mesh_resources(routes=routes), revision=2)
    created = await client.recv()
    assert (created.type_url, created.names) == (rt.ROUTE, ["later"])


async def test_wildcard_forms(harness: Harness) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2, "c": 3}), revision=1)
    everything = ["a", "b", "c"]
    async with harness.client("proxy-1") as legacy:
        assert (await take(legacy, rt.CLUSTER, None)).names == everything
        # "*" beside a name keeps the wildcard (a newly requested name is sent again)
        assert (await take(legacy, rt.CLUSTER, ["*", "a"])).names == everything
        # naming resources without "*" leaves the wildcard: a change of b is not sent, one of a is
        await legacy.subscribe(rt.CLUSTER, ["a"])
        assert await harness.barrier(legacy) == []
        harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 22, "c": 3}), revision=2)
        assert await harness.barrier(legacy) == []
        changed = mesh_resources({"a": 1, "b": 22, "c": 3})
        changed[rt.CLUSTER][0].connect_timeout.FromMilliseconds(5000)
        harness.cache.set_snapshot("proxy-1", changed, revision=3)
        only_a = await legacy.recv()
        assert only_a.names == ["a"]
        await legacy.ack(only_a)
        # once names were given, an empty list is no longer a wildcard but "nothing"
        await legacy.subscribe(rt.CLUSTER, [])
        assert await harness.barrier(legacy) == []
        assert (await take(legacy, rt.CLUSTER, ["*"])).names == everything
    async with harness.client("proxy-1") as explicit:
        assert (await take(explicit, rt.CLUSTER, ["*"])).names == everything
    async with harness.client("proxy-1") as mixed:
        assert (await take(mixed, rt.LISTENER, ["*", "l", "nope"])).names == ["l"]


async def test_listeners_and_clusters_asked_by_name_say_which_exist(
    harness: Harness,
) -> None:
    """What gRPC's xDS client does: it names the listener of its target and the clusters of
    its routes. A name that does not exist gets an answer without it, and one that stops
    existing a response without it (absence is deletion), not silence."""
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}), revision=1)
    async with harness.client("proxy-1") as named:
        assert (await take(named, rt.LISTENER, ["nope"])).names == []
        assert (await take(named, rt.LISTENER, ["nope", "l"])).names == ["l"]
        assert (await take(named, rt.CLUSTER, ["b"])).names == []
        harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=2)
        appeared = await named.recv()
        assert (appeared.type_url, appeared.names) == (rt.CLUSTER, ["b"])
        await named.ack(appeared)
        harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}), revision=3)
        gone = await named.recv()
        assert (gone.type_url, gone.names) == (rt.CLUSTER, [])


async def test_a_stream_without_node_id_is_invalid_argument(harness: Harness) -> None:
    harness.cache.set_snapshot("", mesh_resources(), revision=1)
    async with harness.client("") as anonymous:
        await anonymous.subscribe(rt.CLUSTER)
        ended = await anonymous.finished()
        assert ended.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "node.id" in ended.details
        assert anonymous.received == 0
    assert harness.opened == []  # the hook never saw it


async def test_an_aggregated_request_without_type_url_is_invalid_argument(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=1)
    await client.send(discovery_pb2.DiscoveryRequest())
    ended = await client.finished()
    assert ended.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_rejected_stream_ends_with_the_hooks_code_and_receives_nothing() -> None:
    seen: list[tuple[str, Metadata]] = []

    async def deny(node: Any, metadata: Metadata) -> str:
        seen.append((node.id, metadata))
        raise StreamRejected(grpc.StatusCode.PERMISSION_DENIED, "unknown proxy")

    async with running_harness(deny) as harness:
        harness.cache.set_snapshot("intruder", mesh_resources(), revision=1)
        client = harness.client("intruder", call_metadata=(("authorization", "Bearer nope"),))
        async with client:
            await client.subscribe(rt.CLUSTER)
            ended = await client.finished()
            assert (ended.code, ended.details) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "unknown proxy",
            )
            assert client.received == 0
        [(node_id, metadata)] = seen
        assert node_id == "intruder"
        assert ("authorization", "Bearer nope") in metadata
        assert harness.status.proxies() == []


async def test_one_push_goes_cds_eds_lds_rds_sds(harness: Harness, client: XdsClient) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=1)
    await take(client, rt.CLUSTER)
    await take(client, rt.ENDPOINT, ["a"])
    await take(client, rt.LISTENER)
    await take(client, rt.ROUTE, ["r"])
    await take(client, rt.SECRET, [PROBE])
    changed = mesh_resources({"a": 2}, {"r": ("v2", "a")}, {"l": (10001, "r")}, secrets=())
    changed[rt.CLUSTER][0].connect_timeout.FromMilliseconds(2000)
    from tests.support.xds_client import make_secret

    changed[rt.SECRET] = [make_secret(PROBE, "rotated")]
    harness.cache.set_snapshot("proxy-1", changed, revision=2)
    order = []
    for _ in range(5):
        response = await client.recv()
        order.append(response.type_url)
        await client.ack(response)
    # listeners and routes also wait for the clusters and endpoints to be ACKed; the secret
    # is not held
    assert [t for t in order if t != rt.SECRET] == [rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE]
    assert order.index(rt.SECRET) > order.index(rt.ENDPOINT)


async def test_dropped_clusters_outlive_the_routes_that_used_them(
    harness: Harness, client: XdsClient
) -> None:
    before = mesh_resources({"a": 1, "b": 2}, {"r": ("v1", "b")})
    harness.cache.set_snapshot("proxy-1", before, revision=1)
    await take(client, rt.CLUSTER)
    await take(client, rt.ENDPOINT, ["a", "b"])
    await take(client, rt.LISTENER)
    await take(client, rt.ROUTE, ["r"])

    after = mesh_resources({"a": 1, "c": 3}, {"r": ("v2", "c")})
    harness.cache.set_snapshot("proxy-1", after, revision=2)
    make = await client.recv()
    assert (make.type_url, make.names) == (rt.CLUSTER, ["a", "b", "c"])  # b kept, c added
    # like Envoy: the new cluster warms and asks for its endpoints before ACKing CDS; they come
    # at once (no warming stall)
    await client.subscribe(rt.ENDPOINT, ["a", "b", "c"])
    await client.ack(make)
    endpoints = await client.recv()
    assert endpoints.type_url == rt.ENDPOINT and "c" in endpoints.names
    assert await harness.barrier(client) == []  # the routes wait until c is in place
    await client.ack(endpoints)
    routes = await client.recv()
    assert (routes.type_url, routes.names) == (rt.ROUTE, ["r"])
    status = harness.status.proxies()[0].types[rt.CLUSTER]
    assert status.revision_acked is None  # a transition, not yet revision 2
    assert await harness.barrier(client) == []  # b stays while the old routes may use it

    await client.ack(routes)
    brk = await client.recv()
    assert (brk.type_url, brk.names) == (rt.CLUSTER, ["a", "c"])
    await client.subscribe(rt.ENDPOINT, ["a", "c"])  # like Envoy: b's endpoints go with b...
    await client.ack(brk)  # ...before it ACKs
    assert await harness.barrier(client) == []
    assert harness.status.proxies()[0].synced_revision == 2


async def test_a_changed_cluster_gets_its_endpoints_again(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=1)
    await take(client, rt.CLUSTER)
    before = await take(client, rt.ENDPOINT, ["a", "b"])
    changed = mesh_resources({"a": 1, "b": 2})
    changed[rt.CLUSTER][0].connect_timeout.FromMilliseconds(3000)  # cluster a, same endpoints
    harness.cache.set_snapshot("proxy-1", changed, revision=2)
    clusters = await client.recv()
    assert clusters.type_url == rt.CLUSTER
    # Envoy warms the new version of a until it gets a's endpoints, and does not ask again
    endpoints = await client.recv()
    assert (endpoints.type_url, endpoints.names) == (rt.ENDPOINT, ["a", "b"])
    assert endpoints.version == before.version  # same content, sent again (whole: after CDS)
    await client.ack(clusters)
    await client.ack(endpoints)
    assert await harness.barrier(client) == []


async def test_a_nacked_route_keeps_the_clusters_its_predecessor_uses(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot(
        "proxy-1", mesh_resources({"a": 1, "b": 2}, {"r": ("v1", "b")}), revision=1
    )
    await take(client, rt.CLUSTER)
    await take(client, rt.LISTENER)
    await take(client, rt.ROUTE, ["r"])
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}, {"r": ("v2", "a")}), revision=2)
    routes = await client.recv()  # CDS is unchanged until the routes stop using b
    assert routes.type_url == rt.ROUTE
    await client.nack(routes, "rejected")
    assert await harness.barrier(client) == []  # b is still used by the routes Envoy kept
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}, {"r": ("v3", "a")}), revision=3)
    fixed = await client.recv()
    assert fixed.type_url == rt.ROUTE
    await client.ack(fixed)
    clusters = await client.recv()
    assert (clusters.type_url, clusters.names) == (rt.CLUSTER, ["a"])


async def test_a_write_that_changes_nothing_pushes_nothing(
    harness: Harness, client: XdsClient
) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=1)
    for type_url, names in (
        (rt.CLUSTER, None),
        (rt.ENDPOINT, ["a"]),
        (rt.LISTENER, None),
        (rt.ROUTE, ["r"]),
    ):
        await take(client, type_url, names)
    await harness.barrier(client)
    encoded = harness.cache.stats.sotw_bodies_encoded
    assert not harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=2)
    assert await harness.barrier(client) == []
    assert harness.cache.stats.sotw_bodies_encoded == encoded
    # the proxy is nonetheless current at revision 2
    assert harness.status.proxies()[0].synced_revision == 2


async def test_streams_share_one_encoded_response(harness: Harness) -> None:
    resources = mesh_resources({f"c{n}": n for n in range(20)})
    for n in range(30):
        harness.cache.set_snapshot(
            f"p{n}", mesh_resources({f"c{n}": n for n in range(20)}), revision=1
        )
    stats = harness.cache.stats
    assert stats.resources_serialized == 30 * sum(len(v) for v in resources.values())
    assert stats.entries_encoded == sum(len(v) for v in resources.values())
    clients = [harness.client(f"p{n}") for n in range(30)]
    try:
        for c in clients:
            await c.start()
            await c.subscribe(rt.CLUSTER)
        responses = [await c.recv() for c in clients]
        assert len({r.version for r in responses}) == 1
        assert len({r.nonce for r in responses}) <= 30
        assert stats.sotw_bodies_encoded == 1  # one CDS body for 30 streams
    finally:
        for c in clients:
            await c.close()


async def test_a_reconnect_gets_what_changed_since_the_version_it_holds(harness: Harness) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}), revision=1)
    async with harness.client("proxy-1") as first:
        old_clusters = await take(first, rt.CLUSTER)
        old_endpoints = await take(first, rt.ENDPOINT, ["a"])
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1, "b": 2}), revision=2)
    async with harness.client("proxy-1") as again:
        await again.send(
            discovery_pb2.DiscoveryRequest(type_url=rt.CLUSTER, version_info=old_clusters.version)
        )
        full = await again.recv()
        assert full.names == ["a", "b"]  # an old version gets the full state
        await again.ack(full)
        await again.send(
            discovery_pb2.DiscoveryRequest(
                type_url=rt.ENDPOINT, version_info=old_endpoints.version, resource_names=["a"]
            )
        )
        again.view(rt.ENDPOINT).names = ["a"]
        assert await harness.barrier(again) == []  # the current version: nothing
        eds = next(p for p in harness.status.proxies() if p.stream_id > 1).types[rt.ENDPOINT]
        assert (eds.version_acked, eds.revision_acked) == (old_endpoints.version, 2)


async def test_nothing_is_served_before_the_key_has_a_snapshot(harness: Harness) -> None:
    connected = asyncio.Event()
    harness.status.add_listener(lambda e: connected.set() if e.kind == "connected" else None)
    async with harness.client("late") as client:
        await client.subscribe(rt.CLUSTER)
        await client.subscribe(rt.ENDPOINT, ["a"])
        await asyncio.wait_for(connected.wait(), 10)
        assert "late" in harness.cache.watched_keys()
        assert client.received == 0
        harness.cache.set_snapshot("late", mesh_resources({"a": 1}), revision=7)
        first = await client.recv()
        assert (first.type_url, first.names) == (rt.CLUSTER, ["a"])
        second = await client.recv()
        assert (second.type_url, second.names) == (rt.ENDPOINT, ["a"])


async def test_status_events_and_waiting_for_a_revision(harness: Harness) -> None:
    events: list[StatusEvent] = []
    all_here, all_gone = asyncio.Event(), asyncio.Event()

    def listen(event: StatusEvent) -> None:
        events.append(event)
        if [e.kind for e in events].count("connected") == 3:
            all_here.set()
        if [e.kind for e in events].count("disconnected") == 3:
            all_gone.set()

    remove = harness.status.add_listener(listen)
    for n in range(3):
        harness.cache.set_snapshot(f"p{n}", mesh_resources(), revision=1)
    clients = [harness.client(f"p{n}", auto_ack=True) for n in range(3)]
    try:
        for c in clients:
            await c.start()
            await c.subscribe(rt.CLUSTER)
            await c.subscribe(rt.ROUTE, ["r"])
        await asyncio.wait_for(all_here.wait(), 10)  # (waiting covers the streams open now)
        await asyncio.wait_for(harness.status.wait_for_revision(1), 10)
        for n in range(3):
            routes = {"r": ("v2", None)}
            harness.cache.set_snapshot(f"p{n}", mesh_resources(routes=routes), revision=2)
        assert harness.status.lagging(2)  # nobody has ACKed yet: the push is in flight
        await asyncio.wait_for(harness.status.wait_for_revision(2), 10)
        assert harness.status.lagging(2) == []
        assert {p.synced_revision for p in harness.status.proxies()} == {2}
        acks = [e for e in events if e.kind == "ack" and e.revision == 2]
        assert {(e.snapshot_key, e.type_url) for e in acks} == {
            (f"p{n}", rt.ROUTE) for n in range(3)
        }
        # CDS did not change: it caught up with revision 2 without a push
        synced = [e for e in events if e.kind == "synced" and e.revision == 2]
        assert {(e.snapshot_key, e.type_url) for e in synced} == {
            (f"p{n}", rt.CLUSTER) for n in range(3)
        }
        assert [e.kind for e in events].count("connected") == 3
    finally:
        for c in clients:
            await c.close()
    await asyncio.wait_for(all_gone.wait(), 10)
    remove()
    assert harness.status.proxies() == []


async def test_a_listener_gets_only_the_kinds_it_asked_for(harness: Harness) -> None:
    """Events nobody listens to are not made (a push to thousands of streams makes thousands),
    and waiting for a revision does not depend on anyone listening."""
    acks: list[StatusEvent] = []
    remove = harness.status.add_listener(acks.append, ("ack",))
    harness.cache.set_snapshot("p0", mesh_resources(), revision=1)
    client = harness.client("p0", auto_ack=True)
    try:
        await client.start()
        await client.subscribe(rt.CLUSTER)
        await client.subscribe(rt.ROUTE, ["r"])
        await harness.barrier(client)  # both served and ACKed at revision 1
        routes = {"r": ("v2", None)}
        harness.cache.set_snapshot("p0", mesh_resources(routes=routes), revision=2)
        # CDS reaches revision 2 by a sync nobody listens to, RDS by an ACK
        await asyncio.wait_for(harness.status.wait_for_revision(2), 10)
        await harness.barrier(client)
        assert [p.synced_revision for p in harness.status.proxies()] == [2]
        assert not harness.status.wants("synced") and harness.status.wants("ack")
        assert {e.kind for e in acks} == {"ack"}
        assert (rt.ROUTE, 2) in {(e.type_url, e.revision) for e in acks}
    finally:
        await client.close()
        remove()
    assert harness.status.wants("synced") is False and harness.status.wants("ack") is False
