"""The xDS management server: ADS and the per-type services, state-of-the-world and delta, on one
grpc.aio port.

Every stream goes through the same handshake: the first request must come within
``StreamLimits.first_request_timeout`` (else DEADLINE_EXCEEDED), be at most
``StreamLimits.max_first_request`` bytes (else RESOURCE_EXHAUSTED: it is read before the stream
is authenticated, so it is kept small and never parsed when too big) and carry ``node.id``
(else INVALID_ARGUMENT); the ``open_stream`` hook maps the node and the call's metadata
to a snapshot key, or to a :class:`StreamGrant` (or raises :class:`StreamRejected`, which ends the
stream with its code before anything is sent); the stream then watches that key and sends nothing
until it has a snapshot. A grant can also limit the names a stream may subscribe to (a request
for any other name is dropped and reported to the grant's ``on_denied``) and name the
*principal* the stream speaks for, so that :meth:`XdsServer.terminate` can end every stream of
a principal (a revoked credential).
What is sent and when is described in :mod:`.stream`, :mod:`.sotw` and :mod:`.delta`.

Responses are handed to gRPC already serialized: a response body is encoded once per content and
shared by every stream sending it; only the nonce is appended per stream.

Per-type streams of one node (same snapshot key and node id) form one session, so that clusters
dropped from CDS wait for the routes on the RDS stream, as they do on an ADS stream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
from envoy.config.core.v3.base_pb2 import Node
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import DecodeError

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache
from interlock.xds.transport.delta import DeltaStream
from interlock.xds.transport.limits import FirstRequests, StreamLimits
from interlock.xds.transport.session import Session
from interlock.xds.transport.sotw import SotwStream
from interlock.xds.transport.status import StatusRegistry
from interlock.xds.transport.stream import ProtocolError, XdsStream

log = logging.getLogger("interlock.xds.transport.server")

Metadata = tuple[tuple[str, str | bytes], ...]
#: Called with (type URL, names) when a stream asks for names its grant does not allow.
OnDenied = Callable[[str, frozenset[str]], None]


@dataclass(frozen=True)
class StreamGrant:
    """What the ``open_stream`` hook allows one stream.

    ``key``: the snapshot it is served. ``principal``: who it speaks for (opaque; see
    :meth:`XdsServer.terminate`). ``allowed``: per type URL, the only names it may subscribe to
    (types not listed are unrestricted); names outside are never subscribed, so nothing is
    sent for them, and ``on_denied`` is told. ``on_close`` is called once, on the event loop,
    when the stream ends, however it ends (it must be quick and must not raise).
    """

    key: str
    principal: str = ""
    allowed: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    on_denied: OnDenied | None = None
    on_close: Callable[[], None] | None = None


OpenStream = Callable[[Node, Metadata], Awaitable[str | StreamGrant]]


def parsed(requests: AsyncIterator[bytes], parse: Callable[[bytes], Any]) -> AsyncIterator[Any]:
    """``requests`` parsed with ``parse``; a message that does not parse ends the stream
    with INVALID_ARGUMENT."""

    async def messages() -> AsyncIterator[Any]:
        async for raw in requests:
            yield _parse(raw, parse)

    return messages()


def _parse(raw: bytes, parse: Callable[[bytes], Any]) -> Any:
    try:
        return parse(raw)
    except DecodeError:
        raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, "a request does not parse") from None


#: gRPC service → (short name, SotW method, delta method, type it serves; None for ADS)
SERVICES: dict[str, tuple[str, str, str, str | None]] = {
    "envoy.service.discovery.v3.AggregatedDiscoveryService": (
        "ads",
        "StreamAggregatedResources",
        "DeltaAggregatedResources",
        None,
    ),
    "envoy.service.cluster.v3.ClusterDiscoveryService": (
        "cds",
        "StreamClusters",
        "DeltaClusters",
        rt.CLUSTER,
    ),
    "envoy.service.endpoint.v3.EndpointDiscoveryService": (
        "eds",
        "StreamEndpoints",
        "DeltaEndpoints",
        rt.ENDPOINT,
    ),
    "envoy.service.listener.v3.ListenerDiscoveryService": (
        "lds",
        "StreamListeners",
        "DeltaListeners",
        rt.LISTENER,
    ),
    "envoy.service.route.v3.RouteDiscoveryService": (
        "rds",
        "StreamRoutes",
        "DeltaRoutes",
        rt.ROUTE,
    ),
    "envoy.service.secret.v3.SecretDiscoveryService": (
        "sds",
        "StreamSecrets",
        "DeltaSecrets",
        rt.SECRET,
    ),
}


class StreamRejected(Exception):
    """Raised by the ``open_stream`` hook: the stream ends with ``code`` and nothing is sent.

    ``shown``: the proxy is listed with ``message`` among the refused ones of the status
    registry (`GET /v1/proxies`) until it connects, for refusals its operator must act on. Only
    for a stream that proved who it is (an unauthenticated one must not fill the list)."""

    def __init__(self, code: grpc.StatusCode, message: str, *, shown: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.shown = shown


def envoy_version(node: Any) -> str:
    """``name/version`` from the node's user agent fields ("" when the client names none)."""
    name = str(node.user_agent_name)
    if node.user_agent_version:
        return f"{name}/{node.user_agent_version}"
    if node.HasField("user_agent_build_version"):
        v = node.user_agent_build_version.version
        return f"{name}/{v.major_number}.{v.minor_number}.{v.patch}"
    return name


class _RejectionLog:
    """Logs refused streams without letting a flood of them flood the log: per status code,
    the first refusal of every ``interval`` seconds is logged, with how many were not."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._next: dict[grpc.StatusCode, float] = {}
        self._quiet: dict[grpc.StatusCode, int] = {}

    def note(self, node_id: str, exc: StreamRejected) -> None:
        now = time.monotonic()
        if now < self._next.get(exc.code, 0.0):
            self._quiet[exc.code] = self._quiet.get(exc.code, 0) + 1
            return
        self._next[exc.code] = now + self.interval
        quiet = self._quiet.pop(exc.code, 0)
        log.info(
            "stream from %r rejected: %s%s",
            node_id[:253],
            exc.message,
            f" (and {quiet} more {exc.code.name} since the last such line)" if quiet else "",
        )


class XdsServer:
    """Serves the snapshots of ``cache`` to every stream, recording status in ``status``."""

    def __init__(
        self,
        cache: SnapshotCache,
        status: StatusRegistry,
        open_stream: OpenStream,
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
        limits: StreamLimits | None = None,
    ) -> None:
        """``extra_handlers`` are other gRPC services served on the same port (e.g. the
        access-log service proxies stream to); ``limits`` bound what a client may cost."""
        self._extra_handlers = list(extra_handlers)
        self.limits = limits or StreamLimits()
        self._first_requests = FirstRequests(self.limits)
        self._cache = cache
        self._status = status
        self._open_stream = open_stream
        self._server: grpc.aio.Server | None = None
        self._ids = itertools.count(1)
        self._sessions: dict[tuple[str, str], Session] = {}
        self._rejections = _RejectionLog()
        self._principals: dict[str, set[int]] = {}
        #: The open streams by id (introspection; status is in the registry).
        self.streams: dict[int, XdsStream] = {}

    def principals(self) -> Collection[str]:
        """The principals of the open streams (those whose grant named one)."""
        return tuple(self._principals)

    def terminate(self, principal: str, code: grpc.StatusCode, message: str) -> int:
        """End every open stream of ``principal`` with ``code`` and ``message`` (nothing more
        is sent on them); returns how many."""
        ids = tuple(self._principals.get(principal, ()))
        for stream_id in ids:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.fail(code, message)
        return len(ids)

    async def start(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        """Listen on ``address`` (e.g. ``127.0.0.1:0``); returns the bound port."""
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                # Envoy PINGs every 3 s (the bootstrap's connection_keepalive, how a proxy
                # notices a replica that stopped answering): allow that, or gRPC answers the
                # third early PING of an idle stream with GOAWAY (too_many_pings).
                ("grpc.http2.min_ping_interval_without_data_ms", 2_000),
                ("grpc.keepalive_permit_without_calls", 1),
                *self.limits.grpc_options(),
            ],
            maximum_concurrent_rpcs=self.limits.max_streams,
        )
        server.add_generic_rpc_handlers([*self._handlers(), *self._extra_handlers])
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        self._server = server
        log.info("xDS server listening on port %d", port)
        return int(port)

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting streams and end the open ones after ``grace`` seconds."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def _handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers: list[grpc.GenericRpcHandler] = []
        for service, (short, sotw_method, delta_method, fixed) in SERVICES.items():
            # Requests arrive serialized: the first is size-checked before it is parsed.
            methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
                sotw_method: grpc.stream_stream_rpc_method_handler(
                    self._behaviour(SotwStream, short, fixed),
                    request_deserializer=None,
                    response_serializer=None,  # responses are bytes already
                ),
                delta_method: grpc.stream_stream_rpc_method_handler(
                    self._behaviour(DeltaStream, short, fixed),
                    request_deserializer=None,
                    response_serializer=None,
                ),
            }
            handlers.append(grpc.method_handlers_generic_handler(service, methods))
        return handlers

    def _behaviour(
        self, kind: type[XdsStream], service: str, fixed: str | None
    ) -> Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, bytes]], Awaitable[None]]:
        async def behaviour(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, bytes]
        ) -> None:
            await self._serve(kind, service, fixed, requests, context)

        return behaviour

    async def _serve(
        self,
        kind: type[XdsStream],
        service: str,
        fixed: str | None,
        requests: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, bytes],
    ) -> None:
        iterator = aiter(requests)
        raw = await self._first_requests.first(iterator, context, "xDS")
        if raw is None:
            return
        parse = kind.request_type.FromString
        try:
            first = parse(raw)
        except DecodeError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first request does not parse"
            )
        node = first.node
        if not node.id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first request of a stream must carry node.id"
            )
        metadata: Metadata = tuple((str(k), v) for k, v in (context.invocation_metadata() or ()))
        try:
            opened = await self._open_stream(node, metadata)
        except StreamRejected as exc:
            self._rejections.note(str(node.id), exc)
            if exc.shown:
                self._status.refuse(
                    node_id=str(node.id),
                    node_cluster=str(node.cluster),
                    node_metadata=MessageToDict(node.metadata),
                    envoy_version=envoy_version(node),
                    peer=str(context.peer() or ""),
                    reason=exc.message,
                )
            await context.abort(exc.code, exc.message)
        except Exception:
            log.exception("open_stream failed for node %r", str(node.id)[:253])
            await context.abort(grpc.StatusCode.INTERNAL, "the server cannot serve this proxy")
        grant = opened if isinstance(opened, StreamGrant) else StreamGrant(opened)
        key = grant.key
        stream_id = next(self._ids)
        record = self._status.open(
            stream_id,
            node_id=str(node.id),
            node_cluster=str(node.cluster),
            node_metadata=MessageToDict(node.metadata),
            snapshot_key=key,
            variant=kind.variant,
            service=service,
            envoy_version=envoy_version(node),
            peer=str(context.peer() or ""),
        )
        session = self._join_session(key, str(node.id), fixed)
        stream = kind(stream_id, key, self._cache, record, session, fixed)
        stream.allowed = grant.allowed
        stream.on_denied = grant.on_denied
        session.streams.append(stream)
        self.streams[stream_id] = stream
        if grant.principal:
            self._principals.setdefault(grant.principal, set()).add(stream_id)
        self._cache.watch(key, stream)
        log.debug(
            "stream %d opened: node %s, key %s, %s/%s",
            stream_id,
            node.id,
            key,
            service,
            kind.variant,
        )
        reader: asyncio.Task[None] | None = None
        try:
            stream.handle(first)
            reader = asyncio.create_task(
                stream.read(parsed(iterator, parse)), name=f"xds-read-{stream_id}"
            )
            await stream.run(context.write)
            if stream.failure is not None:
                await context.abort(stream.failure.code, stream.failure.message)
        except ProtocolError as exc:
            await context.abort(exc.code, exc.message)
        finally:
            # Synchronous clean-up first: nothing below an await is sure to run when the call
            # is cancelled again meanwhile.
            stream.close()
            self._cache.unwatch(key, stream)
            self._leave_session(key, str(node.id), fixed, session, stream)
            self.streams.pop(stream_id, None)
            if grant.principal:
                ids = self._principals.get(grant.principal)
                if ids is not None:
                    ids.discard(stream_id)
                    if not ids:
                        del self._principals[grant.principal]
            self._status.close(record)
            if grant.on_close is not None:
                try:
                    grant.on_close()
                except Exception:
                    log.exception("on_close failed for stream %d", stream_id)
            log.debug("stream %d closed", stream_id)
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    def _join_session(self, key: str, node_id: str, fixed: str | None) -> Session:
        if fixed is None:
            return Session()
        session = self._sessions.get((key, node_id))
        if session is None:
            session = self._sessions[(key, node_id)] = Session()
        return session

    def _leave_session(
        self, key: str, node_id: str, fixed: str | None, session: Session, stream: XdsStream
    ) -> None:
        if stream in session.streams:
            session.streams.remove(stream)
        if fixed is not None and not session.streams:
            self._sessions.pop((key, node_id), None)


__all__ = [
    "SERVICES",
    "Metadata",
    "OnDenied",
    "OpenStream",
    "StreamGrant",
    "StreamLimits",
    "StreamRejected",
    "XdsServer",
    "envoy_version",
    "parsed",
]
