"""The access-log service against a real control plane, over gRPC: a stream needs a proxy token
like an xDS stream, its entries count for the token's service (a node claiming another one is
refused), and the graph never puts a sample ahead of now."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2

from interlock.model import Service
from interlock.telemetry.als import METHOD, SERVICE
from interlock.telemetry.graph import Graph
from interlock.xds import naming
from tests.support.inprocess import InProcessServer

B = naming.outbound_cluster(Service("b", port=8080))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path).start()
    yield srv
    srv.stop()


def proxy_token(server: InProcessServer, service: str, instance: str) -> tuple[str, str]:
    """Register ``service`` (and b, the callee) and ``instance``; its proxy token and id."""
    with server.api() as api:
        for name in {service, "b"}:
            assert api.put(f"/v1/services/{name}", json={"port": 8080}).is_success
        body = {"address": "127.0.0.1", "port": 15006}
        assert api.put(f"/v1/services/{service}/instances/{instance}", json=body).is_success
        r = api.post(f"/v1/services/{service}/instances/{instance}/token")
        assert r.status_code == 201
        return str(r.json()["token"]), str(r.json()["token_id"])


def outbound(
    node_id: str, cluster: str, *, starts: Sequence[float], namespace: str | None = None
) -> als_pb2.StreamAccessLogsMessage:
    """What a sidecar's Envoy sends first: its node, then requests it made to b."""
    message = als_pb2.StreamAccessLogsMessage()
    message.identifier.node.id = node_id
    message.identifier.node.cluster = cluster
    if namespace is not None:
        message.identifier.node.metadata.fields["namespace"].string_value = namespace
    message.identifier.log_name = naming.ACCESS_LOG_OUTBOUND
    for start in starts:
        entry = message.http_logs.log_entry.add()
        entry.common_properties.upstream_cluster = B
        entry.common_properties.start_time.FromNanoseconds(int(start * 1e9))
        entry.response.response_code.value = 200
    return message


async def stream(
    server: InProcessServer, token: str | None, *messages: als_pb2.StreamAccessLogsMessage
) -> grpc.StatusCode:
    """Send ``messages`` on one ALS stream; the status it ended with."""
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    async with server.xds_channel() as channel:
        call = channel.stream_unary(
            f"/{SERVICE}/{METHOD}",
            request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
            response_deserializer=als_pb2.StreamAccessLogsResponse.FromString,
        )

        async def requests() -> object:
            for message in messages:
                yield message

        try:
            await call(requests(), metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


def graph(server: InProcessServer, window: float = 60.0, now: float | None = None) -> Graph:
    assert server.components is not None
    return server.components.graph.snapshot(window, now)


def entries(server: InProcessServer) -> int:
    assert server.components is not None
    return server.components.access_logs.entries


@pytest.mark.parametrize("token", [None, "ilp_not-a-token", "revoked"])
async def test_a_stream_without_a_valid_proxy_token_records_nothing(
    server: InProcessServer, token: str | None
) -> None:
    valid, token_id = proxy_token(server, "a", "a-1")
    if token == "revoked":
        with server.api() as api:
            assert api.delete(f"/v1/tokens/{token_id}").is_success
        token = valid
    message = outbound("a-1", "a", starts=[time.time()])
    assert await stream(server, token, message) == grpc.StatusCode.UNAUTHENTICATED
    assert entries(server) == 0
    assert graph(server).edges == ()


async def test_entries_count_for_the_tokens_service(server: InProcessServer) -> None:
    token, _ = proxy_token(server, "a", "a-1")
    now = time.time()
    message = outbound("a-1", "a", starts=[now, now], namespace="default")
    assert await stream(server, token, message) == grpc.StatusCode.OK
    (edge,) = graph(server).edges
    assert (edge.source, edge.destination, edge.requests) == ("a.default", "b.default", 2)


@pytest.mark.parametrize(
    ("node_id", "cluster", "namespace"),
    [("a-1", "b", None), ("a-1", "a", "payments"), ("b-1", "a", None)],
    ids=["another-service", "another-namespace", "another-instance"],
)
async def test_a_node_claiming_another_identity_than_its_token_is_refused(
    server: InProcessServer, node_id: str, cluster: str, namespace: str | None
) -> None:
    token, _ = proxy_token(server, "a", "a-1")
    message = outbound(node_id, cluster, starts=[time.time()], namespace=namespace)
    assert await stream(server, token, message) == grpc.StatusCode.PERMISSION_DENIED
    assert entries(server) == 0
    assert graph(server).edges == ()
    with server.api() as api:  # counted with the xDS streams refused for the same reason
        metrics = api.get("/metrics").text
    assert 'interlock_xds_streams_rejected_total{code="permission_denied"} 1.0' in metrics


async def test_a_stream_must_say_who_it_is_first(server: InProcessServer) -> None:
    token, _ = proxy_token(server, "a", "a-1")
    message = outbound("a-1", "a", starts=[time.time()])
    message.ClearField("identifier")
    assert await stream(server, token, message) == grpc.StatusCode.INVALID_ARGUMENT
    assert entries(server) == 0


async def test_a_later_identifier_claiming_another_service_ends_the_stream(
    server: InProcessServer,
) -> None:
    token, _ = proxy_token(server, "a", "a-1")
    first = outbound("a-1", "a", starts=[time.time()])
    second = outbound("a-1", "b", starts=[time.time()])
    assert await stream(server, token, first, second) == grpc.StatusCode.PERMISSION_DENIED
    (edge,) = graph(server).edges
    assert (edge.source, edge.requests) == ("a.default", 1)  # only what a's node sent


async def test_a_sample_from_the_future_lands_now_and_a_stale_one_is_dropped_and_counted(
    server: InProcessServer,
) -> None:
    token, _ = proxy_token(server, "a", "a-1")
    now = time.time()
    message = outbound("a-1", "a", starts=[now + 3600, now - 3600])
    assert await stream(server, token, message) == grpc.StatusCode.OK
    assert entries(server) == 2
    (edge,) = graph(server, window=5).edges
    assert edge.requests == 1  # the stale sample was dropped
    # Nothing lies ahead of the current second: a window half an hour from now is empty.
    assert graph(server, window=60, now=now + 1800).edges == ()
    with server.api() as api:
        metrics = api.get("/metrics").text
    assert 'interlock_access_log_entries_dropped_total{reason="too_old"} 1.0' in metrics
    assert 'interlock_access_log_entries_dropped_total{reason="edge_limit"} 0.0' in metrics
