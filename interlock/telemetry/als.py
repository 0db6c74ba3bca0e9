"""The gRPC access-log service (ALS) receiver: sidecars stream every request they log to the
control plane, which turns them into the service graph — no log shipper, no other system.

Edges come from the *caller's* side: an ``outbound`` entry names its source (the proxy's own
service) and its destination (the service of the upstream cluster). Requests from outside the
mesh are seen only on the callee's ``inbound`` side, as entries without the source header that
every sidecar stamps; they become edges from ``external``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2

from interlock.telemetry.graph import EXTERNAL, TrafficGraph
from interlock.xds import naming

log = logging.getLogger("interlock.telemetry.als")

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
METHOD = "StreamAccessLogs"


def _node_service(node: Any) -> str:
    namespace = "default"
    if node.HasField("metadata"):
        value = node.metadata.fields.get("namespace")
        if value is not None and value.string_value:
            namespace = value.string_value
    return f"{node.cluster}.{namespace}"


def _duration_ms(props: Any) -> float:
    for name in ("time_to_last_downstream_tx_byte", "time_to_last_upstream_rx_byte"):
        if props.HasField(name):
            d = getattr(props, name)
            return float(d.seconds * 1000 + d.nanos / 1e6)
    return 0.0


class AccessLogReceiver:
    """Feeds ``graph`` from ALS streams. ``on_entry`` (optional) sees every HTTP entry with its
    stream's log name and node service, e.g. for tests or a future log sink."""

    def __init__(
        self,
        graph: TrafficGraph,
        on_entry: Callable[[str, str, Any], None] | None = None,
        counter: Any = None,
    ) -> None:
        """``counter`` (a prometheus Counter, optional) counts every entry received."""
        self.counter = counter
        self.graph = graph
        self.on_entry = on_entry
        self.entries = 0

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC service, to serve beside xDS on the same port."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.stream_unary_rpc_method_handler(
                    self._stream,
                    request_deserializer=als_pb2.StreamAccessLogsMessage.FromString,
                    response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString,
                )
            },
        )

    async def _stream(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> als_pb2.StreamAccessLogsResponse:
        own = ""
        log_name = ""
        try:
            async for message in requests:
                if message.HasField("identifier"):
                    own = _node_service(message.identifier.node)
                    log_name = message.identifier.log_name
                if message.HasField("http_logs"):
                    for entry in message.http_logs.log_entry:
                        self.record(log_name, own, entry)
        except (grpc.RpcError, grpc.aio.AioRpcError) as exc:
            log.debug("access-log stream from %s ended: %s", own or "?", exc)
        return als_pb2.StreamAccessLogsResponse()

    def record(self, log_name: str, own: str, entry: Any) -> None:
        """Turn one HTTP access-log entry into a graph sample (or nothing)."""
        self.entries += 1
        if self.counter is not None:
            self.counter.inc()
        if self.on_entry is not None:
            self.on_entry(log_name, own, entry)
        props = entry.common_properties
        status = (
            entry.response.response_code.value if entry.response.HasField("response_code") else 0
        )
        at = (
            props.start_time.seconds + props.start_time.nanos / 1e9
            if props.HasField("start_time")
            else None
        )
        if log_name == naming.ACCESS_LOG_OUTBOUND:
            parsed = naming.parse_outbound_cluster(props.upstream_cluster)
            if parsed is None or not own:
                return  # no route matched: there is no destination to draw
            destination = f"{parsed[0]}.{parsed[1]}"
            self.graph.record(own, destination, status, _duration_ms(props), at)
        elif log_name == naming.ACCESS_LOG_INBOUND:
            headers = entry.request.request_headers
            if headers.get(naming.SOURCE_HEADER) or not own:
                return  # a mesh caller: already counted on its own side
            self.graph.record(EXTERNAL, own, status, _duration_ms(props), at)
