"""The gRPC access-log service (ALS) receiver: sidecars stream every request they log to the
control plane, which turns them into the service graph — no log shipper, no other system.

Edges come from the *caller's* side: an ``outbound`` entry names its source (the proxy's own
service) and its destination (the service of the upstream cluster). Requests from outside the
mesh are seen only on the callee's ``inbound`` side, as entries without the source header that
every sidecar stamps; they become edges from ``external``.

Streams are authenticated like xDS streams, by the proxy token Envoy sends on every stream to
the control plane (``authorization: Bearer …``), when their first message names the proxy's
node (Envoy's ``identifier``; a stream whose first message does not: INVALID_ARGUMENT). The
receiver is given an :data:`Authenticate` callable (the glue's) that refuses, as xDS does, a
stream without a token or with an unknown or revoked one (UNAUTHENTICATED) and a node that
claims another service, namespace or instance than its token's (PERMISSION_DENIED); a refused
stream ends before any of its entries is counted. A proxy's "own service" is therefore its
token's: it can draw edges only from its own service (``outbound``) or from ``external`` to it
(``inbound``).

The graph bounds what it keeps (:mod:`interlock.telemetry.graph`); entries it drops are counted
by reason in ``dropped``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf.message import DecodeError

from interlock.telemetry.graph import EXTERNAL, TrafficGraph
from interlock.xds import naming
from interlock.xds.transport.limits import FirstRequests, StreamLimits

log = logging.getLogger("interlock.telemetry.als")

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
METHOD = "StreamAccessLogs"

Metadata = Sequence[tuple[str, str | bytes]]
"""A stream's invocation metadata (``authorization`` among it)."""


@dataclass(frozen=True)
class Principal:
    """An instance of a service: what a stream's node claims, and what its token is bound to."""

    namespace: str
    service: str
    instance_id: str

    @property
    def node(self) -> str:
        """The service as a graph node: ``<service>.<namespace>``."""
        return f"{self.service}.{self.namespace}"


class StreamRefused(Exception):
    """Raised by an :data:`Authenticate` callable: the stream ends with ``code`` and
    ``message`` and nothing it sends is recorded."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Authenticate = Callable[[Metadata, Principal], Awaitable[Principal]]
"""A stream's metadata and what its node claims → the principal its token is bound to (the
claim itself), or :class:`StreamRefused`."""


def _claim(node: Any) -> Principal:
    """What a node claims to be, read as xDS reads a proxy's node (a name too long to be
    anyone's is cut, marked so that it still matches nobody's)."""
    namespace = "default"
    if node.HasField("metadata"):
        value = node.metadata.fields.get("namespace")
        if value is not None:  # not a string: no namespace, so nobody's
            namespace = value.string_value if value.HasField("string_value") else ""
    return Principal(_cut(namespace), _cut(str(node.cluster)), _cut(str(node.id)))


async def _parsed(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """The stream's messages, parsed (``DecodeError`` for one that does not parse)."""
    yield als_pb2.StreamAccessLogsMessage.FromString(first)
    async for raw in rest:
        yield als_pb2.StreamAccessLogsMessage.FromString(raw)


def _cut(name: str, limit: int = 253) -> str:
    return name if len(name) <= limit else name[:limit] + "…"


def _duration_ms(props: Any) -> float:
    for name in ("time_to_last_downstream_tx_byte", "time_to_last_upstream_rx_byte"):
        if props.HasField(name):
            d = getattr(props, name)
            return float(d.seconds * 1000 + d.nanos / 1e6)
    return 0.0


class AccessLogReceiver:
    """Feeds ``graph`` from ALS streams that ``authenticate`` accepts. ``on_entry`` (optional)
    sees every HTTP entry of an accepted stream with its log name and the authenticated
    service (``<service>.<namespace>``), e.g. for tests or a future log sink."""

    def __init__(
        self,
        graph: TrafficGraph,
        authenticate: Authenticate,
        on_entry: Callable[[str, str, Any], None] | None = None,
        counter: Any = None,
        dropped: Any = None,
        limits: StreamLimits | None = None,
    ) -> None:
        """``counter`` (a prometheus Counter, optional) counts every entry received;
        ``dropped`` (a Counter labelled ``reason``, optional) those the graph dropped.
        ``limits``: a stream's first message must come in time and be small (it is read
        before the stream is authenticated), as on the xDS streams beside it."""
        self.limits = limits or StreamLimits()
        self._first_requests = FirstRequests(self.limits)
        self.counter = counter
        self.dropped = dropped
        self.graph = graph
        self.authenticate = authenticate
        self.on_entry = on_entry
        self.entries = 0

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC service, to serve beside xDS on the same port."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.stream_unary_rpc_method_handler(
                    self._stream,
                    request_deserializer=None,  # parsed in _stream, the first size-checked
                    response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString,
                )
            },
        )

    async def _stream(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> als_pb2.StreamAccessLogsResponse:
        metadata = tuple((str(k), v) for k, v in (context.invocation_metadata() or ()))
        own = ""
        log_name = ""
        iterator = aiter(requests)
        try:
            raw = await self._first_requests.first(iterator, context, "access-log")
            if raw is None:
                return als_pb2.StreamAccessLogsResponse()
            async for message in _parsed(raw, iterator):
                if message.HasField("identifier"):
                    # Every identifier is checked (Envoy sends one, first): entries always
                    # count for the token's service.
                    own = await self._admit(metadata, message.identifier.node, context)
                    log_name = message.identifier.log_name
                elif not own:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "the first message of an access-log stream must carry its identifier",
                    )
                if message.HasField("http_logs"):
                    for entry in message.http_logs.log_entry:
                        self.record(log_name, own, entry)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a message does not parse")
        except (grpc.RpcError, grpc.aio.AioRpcError) as exc:
            log.debug("access-log stream from %s ended: %s", own or "?", exc)
        return als_pb2.StreamAccessLogsResponse()

    async def _admit(
        self, metadata: Metadata, node: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> str:
        """The graph node (``<service>.<namespace>``) of the stream's token, once
        ``authenticate`` accepts it for ``node``; else the stream ends."""
        try:
            principal = await self.authenticate(metadata, _claim(node))
        except StreamRefused as exc:
            log.info("access-log stream from %s refused: %s", context.peer(), exc.message)
            await context.abort(exc.code, exc.message)
        return principal.node

    def record(self, log_name: str, own: str, entry: Any) -> None:
        """Turn one HTTP access-log entry of a stream of service ``own`` (authenticated,
        ``<service>.<namespace>``) into a graph sample (or nothing)."""
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
            dropped = self.graph.record(own, destination, status, _duration_ms(props), at)
        elif log_name == naming.ACCESS_LOG_INBOUND:
            headers = entry.request.request_headers
            if headers.get(naming.SOURCE_HEADER) or not own:
                return  # a mesh caller: already counted on its own side
            dropped = self.graph.record(EXTERNAL, own, status, _duration_ms(props), at)
        else:
            return
        if dropped is not None and self.dropped is not None:
            self.dropped.labels(dropped).inc()
