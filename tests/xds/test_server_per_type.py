"""The per-type services (CDS, EDS, LDS, RDS, SDS on their own streams, SotW and delta), as used
by Envoy fleets whose bootstraps name separate config sources, over real gRPC on 127.0.0.1.

The streams of one node form one session, so make-before-break works across them: routes wait
for the endpoints of new clusters on the EDS stream, and old clusters wait for the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from interlock.xds.transport import resource_types as rt
from tests.support.xds_client import Harness, XdsClient, mesh_resources, running_harness

SERVICES = {"cds": rt.CLUSTER, "eds": rt.ENDPOINT, "lds": rt.LISTENER, "rds": rt.ROUTE}


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running_harness() as h:
        yield h


async def take(client: XdsClient, type_url: str, names: list[str] | None = None) -> Any:
    await client.subscribe(type_url, names)
    response = await client.recv()
    assert response.type_url == type_url
    await client.ack(response)
    return response


def sent(harness: Harness, service: str) -> str | None:
    [proxy] = [p for p in harness.status.proxies() if p.service == service]
    return proxy.types[SERVICES[service]].version_sent


@pytest.mark.parametrize("variant", ["sotw", "delta"])
async def test_each_service_serves_its_type(harness: Harness, variant: str) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources({"a": 1}), revision=1)
    streams = {s: harness.client("proxy-1", service=s, variant=variant) for s in SERVICES}
    for s in (*SERVICES, "sds"):
        streams.setdefault(s, harness.client("proxy-1", service=s, variant=variant))
    try:
        for client in streams.values():
            await client.start()
        assert (await take(streams["cds"], rt.CLUSTER)).names == ["a"]
        assert (await take(streams["eds"], rt.ENDPOINT, ["a"])).names == ["a"]
        assert (await take(streams["lds"], rt.LISTENER)).names == ["l"]
        assert (await take(streams["rds"], rt.ROUTE, ["r"])).names == ["r"]
        assert (await take(streams["sds"], rt.SECRET, ["probe"])).names == ["probe"]
        services = {p.service for p in harness.status.proxies()}
        assert services == {"cds", "eds", "lds", "rds", "sds"}
        assert {p.snapshot_key for p in harness.status.proxies()} == {"proxy-1"}
    finally:
        for client in streams.values():
            await client.close()


async def test_a_request_for_another_type_is_invalid_argument(harness: Harness) -> None:
    harness.cache.set_snapshot("proxy-1", mesh_resources(), revision=1)
    async with harness.client("proxy-1", service="cds") as cds:
        await cds.send(discovery_pb2.DiscoveryRequest(type_url=rt.LISTENER))
        ended = await cds.finished()
        assert ended.code == grpc.StatusCode.INVALID_ARGUMENT
        assert cds.received == 0


@pytest.mark.parametrize("variant", ["sotw", "delta"])
async def test_make_before_break_across_streams(harness: Harness, variant: str) -> None:
    harness.cache.set_snapshot(
        "proxy-1", mesh_resources({"a": 1, "b": 2}, {"r": ("v1", "b")}), revision=1
    )
    clients = {s: harness.client("proxy-1", service=s, variant=variant) for s in SERVICES}
    cds, eds, lds, rds = (clients[s] for s in SERVICES)
    try:
        for client in clients.values():
            await client.start()
        await take(cds, rt.CLUSTER)
        await take(eds, rt.ENDPOINT, ["a", "b"])
        await take(lds, rt.LISTENER)
        old_routes = await take(rds, rt.ROUTE, ["r"])

        after = mesh_resources({"a": 1, "c": 3}, {"r": ("v2", "c")})
        harness.cache.set_snapshot("proxy-1", after, revision=2)
        make = await cds.recv()
        assert "c" in make.names
        # Over separate streams the CDS ACK can arrive before the EDS request for c:
        await cds.ack(make)
        await eds.subscribe(rt.ENDPOINT, ["c"] if variant == "delta" else ["a", "b", "c"])
        endpoints = await eds.recv()
        assert "c" in endpoints.names
        # by now the RDS stream has been told of the CDS ACK: c's endpoints are not ACKed yet,
        # so the routes that use c were not sent
        assert sent(harness, "rds") == old_routes.version
        await eds.ack(endpoints)
        routes = await rds.recv()
        assert routes.version != old_routes.version
        await rds.ack(routes)

        brk = await cds.recv()
        if variant == "sotw":
            assert brk.names == ["a", "c"]
        else:
            assert (brk.names, brk.removed) == ([], ["b"])
        await cds.ack(brk)
    finally:
        for client in clients.values():
            await client.close()
