"""What a client may cost the xDS server: a stream that never sends is closed by the first-request
deadline, a first request too big is refused unparsed, and type URLs the server does not serve
leave no state behind however many a client invents."""

from __future__ import annotations

import time

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.limits import StreamLimits
from tests.support.xds_client import PROBE, mesh_resources, running_harness


async def test_a_stream_that_never_sends_is_closed_by_the_first_request_deadline() -> None:
    async with running_harness(limits=StreamLimits(first_request_timeout=0.5)) as harness:
        async with harness.client("p-1", variant="delta") as silent:
            started = time.monotonic()
            ended = await silent.finished()
            waited = time.monotonic() - started
        assert ended.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.4 < waited < 3.0, waited
        assert not harness.server.streams


async def test_a_first_request_too_big_is_refused_but_later_ones_may_be_bigger() -> None:
    limits = StreamLimits(max_first_request=2048)
    names = [f"cluster-{i:05d}" for i in range(500)]  # ~8 KB of names
    async with running_harness(limits=limits) as harness:
        harness.cache.set_snapshot("p-1", mesh_resources({"a": 1}), revision=1)
        async with harness.client("p-1", variant="delta") as big:
            await big.subscribe(rt.ENDPOINT, names)
            ended = await big.finished()
            assert ended.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "before the stream is authenticated" in ended.details
        assert harness.opened == []  # refused before the open hook saw it
        async with harness.client("p-1", variant="delta", auto_ack=True) as proxy:
            await proxy.subscribe(rt.CLUSTER)
            await proxy.recv_type(rt.CLUSTER)
            await proxy.subscribe(rt.ENDPOINT, [*names, "a"])  # after the first: allowed
            response = await proxy.recv_type(rt.ENDPOINT)
            assert response.names == ["a"]


async def test_unknown_type_urls_leave_no_state_and_the_stream_keeps_working() -> None:
    async with running_harness() as harness:
        harness.cache.set_snapshot("p-1", mesh_resources({"a": 1}), revision=1)
        async with harness.client("p-1", variant="delta", auto_ack=True) as proxy:
            await proxy.subscribe(rt.CLUSTER)
            await proxy.recv_type(rt.CLUSTER)
            for i in range(2000):
                await proxy.send(
                    discovery_pb2.DeltaDiscoveryRequest(
                        type_url=f"type.googleapis.com/made.up.Type{i}",
                        resource_names_subscribe=[f"name-{i}"],
                    )
                )
            await proxy.barrier(rt.SECRET, PROBE)  # every request above was handled
            (stream,) = harness.server.streams.values()
            assert set(stream.states) == {rt.CLUSTER, rt.SECRET}
            assert stream.ignored == 2000
            (record,) = harness.status.proxies()
            assert set(record.types) <= {rt.CLUSTER, rt.SECRET}


async def test_a_stream_cannot_subscribe_to_names_without_bound() -> None:
    async with running_harness() as harness:
        harness.cache.set_snapshot("p-1", mesh_resources({"a": 1}), revision=1)
        async with harness.client("p-1", variant="delta", auto_ack=True) as proxy:
            for chunk in range(3):  # delta subscriptions add up, request after request
                names = [f"c{chunk}-{i}" for i in range(40_000)]
                await proxy.subscribe(rt.ENDPOINT, names)
            ended = await proxy.finished()
        assert ended.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "100000 names" in ended.details
