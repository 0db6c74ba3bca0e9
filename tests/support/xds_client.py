"""A scripted xDS client that behaves like Envoy, for protocol tests and benchmarks.

One :class:`XdsClient` is one gRPC stream: aggregated (``service="ads"``) or one per-type service
(``"cds"``, ``"eds"``, ``"lds"``, ``"rds"``, ``"sds"``), state-of-the-world (``variant="sotw"``)
or delta (``variant="delta"``). Like Envoy it sends the node on the first request only, carries
the last accepted version and the last nonce in every SotW request, and keeps what it accepted.

Two ways to drive it:

- by hand: ``subscribe`` / ``unsubscribe``, then ``recv`` each response and ``ack`` or ``nack`` it;
- automatic (``auto_ack=True``): every response is answered at once, ACK or — when ``reject``
  returns a message for it — NACK, and tests wait for a state with ``wait_for``.

Resources are decoded only when asked for (``Response.resources``) or when ``track=True`` keeps
the accepted state per type in ``client.types``; a benchmark running thousands of clients turns
tracking off.

:class:`Harness` runs a real :class:`~interlock.xds.transport.server.XdsServer` on 127.0.0.1
for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2  # type: ignore[import-untyped, unused-ignore]
from google.rpc import status_pb2

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache
from interlock.xds.transport.limits import StreamLimits
from interlock.xds.transport.server import SERVICES, Metadata, StreamGrant, XdsServer
from interlock.xds.transport.status import StatusRegistry

MESSAGE_CLASSES: dict[str, Any] = {
    rt.CLUSTER: cluster_pb2.Cluster,
    rt.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    rt.LISTENER: listener_pb2.Listener,
    rt.ROUTE: route_pb2.RouteConfiguration,
    rt.SECRET: secret_pb2.Secret,
}
SERVICE_TYPES = {short: fixed for short, _, _, fixed in SERVICES.values()}
_METHODS = {short: (name, sotw, delta) for name, (short, sotw, delta, _) in SERVICES.items()}


class StreamClosed(Exception):
    """The server ended the stream; ``code`` and ``details`` are its status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


def decode(type_url: str, wrapped: Any) -> Any:
    """The message inside an ``Any`` of a known type URL."""
    cls = MESSAGE_CLASSES[type_url]
    return cls.FromString(wrapped.value)


def name_of(type_url: str, message: Any) -> str:
    return str(message.cluster_name if type_url == rt.ENDPOINT else message.name)


@dataclass
class Response:
    """One response, normalised over both variants."""

    type_url: str
    version: str  # version_info (SotW) or system_version_info (delta)
    nonce: str
    raw: Any
    removed: list[str] = field(default_factory=list)

    @functools.cached_property
    def resources(self) -> dict[str, tuple[str, Any]]:
        """name → (resource version, decoded message). SotW resources carry the response's
        version; delta resources their own."""
        out: dict[str, tuple[str, Any]] = {}
        if isinstance(self.raw, discovery_pb2.DiscoveryResponse):
            for wrapped in self.raw.resources:
                message = decode(self.type_url, wrapped)
                out[name_of(self.type_url, message)] = (self.version, message)
        else:
            for resource in self.raw.resources:
                out[resource.name] = (resource.version, decode(self.type_url, resource.resource))
        return out

    @property
    def names(self) -> list[str]:
        return sorted(self.resources)


@dataclass
class TypeView:
    """What the client asked for and accepted of one type."""

    type_url: str
    names: list[str] | None = None  # SotW: the last list sent (None: never sent)
    subscribed: set[str] = field(default_factory=set)  # delta: current subscription
    version: str = ""  # last accepted version_info / system_version_info
    nonce: str = ""  # last nonce received
    resources: dict[str, tuple[str, Any]] = field(default_factory=dict)  # accepted, if tracked
    acks: int = 0
    nacks: int = 0


class XdsClient:
    """One xDS stream that behaves like Envoy. Use ``async with XdsClient(...) as c`` or call
    :meth:`start` and :meth:`close`."""

    def __init__(
        self,
        channel: Any,
        node_id: str,
        *,
        variant: str = "sotw",
        service: str = "ads",
        cluster: str = "",
        node_metadata: Mapping[str, Any] | None = None,
        call_metadata: Metadata = (),
        auto_ack: bool = False,
        reject: Callable[[Response], str | None] | None = None,
        track: bool = True,
        user_agent: tuple[str, str] = ("interlock-test-client", "0.0.1"),
    ) -> None:
        if variant not in ("sotw", "delta"):
            raise ValueError(variant)
        self.channel = channel
        self.variant = variant
        self.service = service
        self.fixed_type = SERVICE_TYPES[service]
        self.node = base_pb2.Node(
            id=node_id,
            cluster=cluster,
            user_agent_name=user_agent[0],
            user_agent_version=user_agent[1],
        )
        if node_metadata:
            meta = struct_pb2.Struct()
            meta.update(dict(node_metadata))
            self.node.metadata.CopyFrom(meta)
        self.call_metadata = call_metadata
        self.auto_ack = auto_ack
        self.reject = reject
        self.track = track
        self.types: dict[str, TypeView] = {}
        self.responses: asyncio.Queue[Response | StreamClosed] = asyncio.Queue()
        self.received = 0
        self.closed: StreamClosed | None = None
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._node_sent = False
        self._changed = asyncio.Event()
        self._writing = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> XdsClient:
        service_name, sotw, delta = _METHODS[self.service]
        if self.variant == "sotw":
            method = self.channel.stream_stream(
                f"/{service_name}/{sotw}",
                request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
            )
        else:
            method = self.channel.stream_stream(
                f"/{service_name}/{delta}",
                request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
            )
        self._call = method(metadata=self.call_metadata or None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aenter__(self) -> XdsClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel the stream (like a proxy going away) and stop reading."""
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None

    async def half_close(self) -> None:
        """Tell the server this client will send nothing more."""
        await self._call.done_writing()

    async def finished(self) -> StreamClosed:
        """Wait for the server to end the stream; its final status."""
        code = await self._call.code()
        return StreamClosed(code, await self._call.details() or "")

    # -- requests ----------------------------------------------------------------------------
    def view(self, type_url: str) -> TypeView:
        found = self.types.get(type_url)
        if found is None:
            found = self.types[type_url] = TypeView(type_url)
        return found

    async def send(self, request: Any) -> None:
        """Send a request as is (adds the node to the first request of the stream)."""
        async with self._writing:  # gRPC allows one write in flight per call
            if not self._node_sent:
                request.node.CopyFrom(self.node)
                self._node_sent = True
            await self._call.write(request)

    async def subscribe(
        self,
        type_url: str,
        names: Iterable[str] | None = None,
        *,
        initial_versions: Mapping[str, str] | None = None,
    ) -> None:
        """SotW: ask for exactly ``names`` (None: the legacy empty list). Delta: add ``names``
        (None or empty: nothing, which is a legacy wildcard on the type's first request)."""
        view = self.view(type_url)
        if self.variant == "sotw":
            view.names = list(names or [])
            if type_url not in rt.WILDCARD_TYPES:
                for name in set(view.resources) - set(view.names):
                    del view.resources[name]
            await self._sotw_request(view)
        else:
            added = list(names or [])
            view.subscribed.update(added)
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, resource_names_subscribe=added
            )
            if initial_versions:
                request.initial_resource_versions.update(dict(initial_versions))
            await self.send(request)

    async def unsubscribe(self, type_url: str, names: Iterable[str]) -> None:
        """Stop asking for ``names``."""
        view = self.view(type_url)
        gone = list(names)
        for name in gone:
            view.resources.pop(name, None)
        if self.variant == "sotw":
            view.names = [n for n in (view.names or []) if n not in gone]
            await self._sotw_request(view)
        else:
            view.subscribed.difference_update(gone)
            # like Envoy: a subscription change alone carries no nonce (it acknowledges nothing)
            await self.send(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, resource_names_unsubscribe=gone
                )
            )

    async def _sotw_request(self, view: TypeView, error: str | None = None) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=view.type_url,
            version_info=view.version,
            resource_names=view.names or [],
            response_nonce=view.nonce,
        )
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.send(request)

    async def ack(self, response: Response) -> None:
        """Accept ``response``: apply it and tell the server."""
        view = self.view(response.type_url)
        view.version = response.version
        view.acks += 1
        if self.track:
            self._apply(view, response)
        if self.variant == "sotw":
            await self._sotw_request(view)
        else:
            await self.send(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=response.type_url, response_nonce=response.nonce
                )
            )
        self._changed.set()

    async def nack(self, response: Response, message: str = "rejected by the test") -> None:
        """Reject ``response``: keep the previous state and tell the server why."""
        view = self.view(response.type_url)
        view.nacks += 1
        if self.variant == "sotw":
            await self._sotw_request(view, error=message)
        else:
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=response.type_url, response_nonce=response.nonce
            )
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=message))
            await self.send(request)
        self._changed.set()

    def _apply(self, view: TypeView, response: Response) -> None:
        if self.variant == "sotw":
            if view.type_url in rt.WILDCARD_TYPES:
                view.resources = dict(response.resources)
            else:
                view.resources.update(response.resources)
        else:
            view.resources.update(response.resources)
            for name in response.removed:
                view.resources.pop(name, None)

    # -- responses ---------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            while True:
                raw = await self._call.read()
                if raw is grpc.aio.EOF:
                    break
                response = self._normalise(raw)
                self.received += 1
                view = self.view(response.type_url)
                view.nonce = response.nonce
                if self.auto_ack:
                    message = self.reject(response) if self.reject is not None else None
                    if message is None:
                        await self.ack(response)
                    else:
                        await self.nack(response, message)
                self.responses.put_nowait(response)
                self._changed.set()
        except grpc.aio.AioRpcError as exc:
            self.closed = StreamClosed(exc.code(), exc.details() or "")
        except asyncio.CancelledError:
            self.closed = StreamClosed(grpc.StatusCode.CANCELLED, "closed by the client")
            raise
        finally:
            if self.closed is None:
                self.closed = StreamClosed(grpc.StatusCode.OK, "")
            self.responses.put_nowait(self.closed)
            self._changed.set()

    def _normalise(self, raw: Any) -> Response:
        if isinstance(raw, discovery_pb2.DiscoveryResponse):
            return Response(raw.type_url, raw.version_info, raw.nonce, raw)
        return Response(
            raw.type_url, raw.system_version_info, raw.nonce, raw, list(raw.removed_resources)
        )

    async def recv(self, within: float = 10.0) -> Response:
        """The next response (raises :class:`StreamClosed` once the stream has ended)."""
        async with asyncio.timeout(within):
            item = await self.responses.get()
        if isinstance(item, StreamClosed):
            self.responses.put_nowait(item)
            raise item
        return item

    async def recv_type(self, type_url: str, within: float = 10.0) -> Response:
        """The next response of ``type_url``, skipping (and answering nothing for) others."""
        async with asyncio.timeout(within):
            while True:
                response = await self.recv(within)
                if response.type_url == type_url:
                    return response

    async def wait_for(self, predicate: Callable[[XdsClient], bool], within: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds; re-checked after every response and answer."""
        async with asyncio.timeout(within):
            while not predicate(self):
                if self.closed is not None and self.responses.empty():
                    raise self.closed
                self._changed.clear()
                await self._changed.wait()

    def pending(self) -> list[Response]:
        """Responses received and not yet taken with ``recv`` (taken now)."""
        out: list[Response] = []
        while not self.responses.empty():
            item = self.responses.get_nowait()
            if isinstance(item, StreamClosed):
                self.responses.put_nowait(item)
                break
            out.append(item)
        return out

    async def barrier(self, type_url: str, name: str, within: float = 10.0) -> list[Response]:
        """Prove the server has handled everything sent so far: re-subscribe ``name`` of a
        non-wildcard ``type_url`` (it must exist) and wait for it. Returns the responses that
        arrived before it, in order (ACKed when ``auto_ack``; the barrier's own is ACKed)."""
        view = self.view(type_url)
        held = name in (view.names or []) if self.variant == "sotw" else name in view.subscribed
        if held:
            await self.unsubscribe(type_url, [name])
        await self.subscribe(
            type_url, [*(view.names or []), name] if self.variant == "sotw" else [name]
        )
        before: list[Response] = []
        async with asyncio.timeout(within):
            while True:
                response = await self.recv(within)
                if response.type_url == type_url and name in response.resources:
                    if not self.auto_ack:
                        await self.ack(response)
                    return before
                before.append(response)


class Harness:
    """A real xDS server on 127.0.0.1 (ephemeral port) with its cache and status, plus a channel
    for clients. ``open_stream`` defaults to "the snapshot key is the node id"."""

    def __init__(
        self,
        open_stream: Callable[[Any, Metadata], Awaitable[str | StreamGrant]] | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        self.cache = SnapshotCache()
        self.status = StatusRegistry()
        self.server = XdsServer(
            self.cache, self.status, open_stream or self._by_node_id, limits=limits
        )
        self.port = 0
        self.channel: Any = None
        self.opened: list[tuple[str, Metadata]] = []

    async def _by_node_id(self, node: Any, metadata: Metadata) -> str:
        self.opened.append((str(node.id), metadata))
        return str(node.id)

    async def start(self) -> Harness:
        self.port = await self.server.start("127.0.0.1:0")
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        return self

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        await self.server.stop(0)

    async def barrier(self, client: XdsClient, within: float = 10.0) -> list[Response]:
        """``client.barrier`` on the probe secret, then wait until the server has recorded the
        barrier's ACK too, so status reads reflect everything the client sent."""
        before = await client.barrier(rt.SECRET, PROBE, within)
        version = client.view(rt.SECRET).version
        node_id = client.node.id

        def acked() -> bool:
            return any(
                p.node_id == node_id
                and (sds := p.types.get(rt.SECRET)) is not None
                and sds.version_acked == version
                and not sds.pending
                for p in self.status.proxies()
            )

        changed = asyncio.Event()
        remove = self.status.add_listener(lambda _event: changed.set())
        try:
            async with asyncio.timeout(within):
                while not acked():
                    changed.clear()
                    await changed.wait()
        finally:
            remove()
        return before

    async def barrier_status(self, predicate: Callable[[Any], bool], within: float = 10.0) -> None:
        """Wait until the one open stream's status satisfies ``predicate``."""

        def met() -> bool:
            proxies = self.status.proxies()
            return len(proxies) == 1 and predicate(proxies[0])

        changed = asyncio.Event()
        remove = self.status.add_listener(lambda _event: changed.set())
        try:
            async with asyncio.timeout(within):
                while not met():
                    changed.clear()
                    await changed.wait()
        finally:
            remove()

    def client(self, node_id: str, **kwargs: Any) -> XdsClient:
        """A client on this harness's channel (call ``start`` or use ``async with``)."""
        return XdsClient(self.channel, node_id, **kwargs)


@contextlib.asynccontextmanager
async def running_harness(
    open_stream: Callable[[Any, Metadata], Awaitable[str | StreamGrant]] | None = None,
    limits: StreamLimits | None = None,
) -> AsyncIterator[Harness]:
    harness = Harness(open_stream, limits)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()


# -- resources for tests (valid for a real Envoy) -------------------------------------------


def ads_source() -> Any:
    """A ConfigSource that says "over the aggregated stream"."""
    from envoy.config.core.v3 import config_source_pb2

    source = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    source.ads.SetInParent()
    return source


def grpc_source(xds_cluster: str, api_type: str = "GRPC") -> Any:
    """A ConfigSource for a per-type service reached through the static cluster ``xds_cluster``."""
    from envoy.config.core.v3 import config_source_pb2

    source = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    api = source.api_config_source
    api.api_type = config_source_pb2.ApiConfigSource.ApiType.Value(api_type)
    api.transport_api_version = config_source_pb2.V3
    api.grpc_services.add().envoy_grpc.cluster_name = xds_cluster
    return source


def make_cluster(name: str, source: Any | None = None) -> Any:
    """An EDS cluster whose endpoints come from ``source`` (ADS by default)."""
    message = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    message.connect_timeout.FromMilliseconds(1000)
    message.eds_cluster_config.eds_config.CopyFrom(source if source is not None else ads_source())
    return message


def make_endpoints(name: str, port: int, address: str = "127.0.0.1") -> Any:
    """A ClusterLoadAssignment with one endpoint."""
    message = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    socket = message.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    socket.address = address
    socket.port_value = port
    return message


def make_listener(name: str, port: int, route_name: str, source: Any | None = None) -> Any:
    """An HTTP listener on 127.0.0.1:``port`` whose routes come from RDS ``route_name``."""
    from envoy.extensions.filters.http.router.v3 import router_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    hcm.rds.route_config_name = route_name
    hcm.rds.config_source.CopyFrom(source if source is not None else ads_source())
    router = hcm.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    message = listener_pb2.Listener(name=name)
    socket = message.address.socket_address
    socket.address = "127.0.0.1"
    socket.port_value = port
    chain = message.filter_chains.add()
    network = chain.filters.add(name="envoy.filters.network.http_connection_manager")
    network.typed_config.Pack(hcm)
    return message


def make_route(
    name: str, body: str = "hello", *, upstream: str | None = None, bad_regex: bool = False
) -> Any:
    """Routes: ``/up`` to cluster ``upstream`` (if given), everything else answered ``body``.
    ``bad_regex`` adds a route Envoy rejects (an invalid RE2 pattern)."""
    message = route_pb2.RouteConfiguration(name=name)
    host = message.virtual_hosts.add(name="all", domains=["*"])
    if bad_regex:
        broken = host.routes.add()
        broken.match.safe_regex.regex = "(unclosed"
        broken.direct_response.status = 500
    if upstream is not None:
        up = host.routes.add()
        up.match.prefix = "/up"
        up.route.cluster = upstream
    fallback = host.routes.add()
    fallback.match.prefix = "/"
    fallback.direct_response.status = 200
    fallback.direct_response.body.inline_string = body
    return message


def make_secret(name: str, value: str = "s3cret") -> Any:
    """A generic secret (enough to exercise SDS)."""
    message = secret_pb2.Secret(name=name)
    message.generic_secret.secret.inline_string = value
    return message


PROBE = "probe"  # the secret every test mesh has, for ``XdsClient.barrier``


def mesh_resources(
    clusters: Mapping[str, int] | None = None,
    routes: Mapping[str, tuple[str, str | None]] | None = None,
    listeners: Mapping[str, tuple[int, str]] | None = None,
    secrets: Iterable[str] = (PROBE,),
    source: Any | None = None,
) -> dict[str, list[Any]]:
    """A snapshot's resources by type URL. ``clusters``: name → endpoint port (one EDS cluster and
    its endpoints each); ``routes``: name → (body, upstream cluster or None); ``listeners``: name
    → (port, route name); ``source``: where EDS/RDS come from (ADS by default)."""
    clusters = {"a": 8001} if clusters is None else clusters
    routes = {"r": ("v1", None)} if routes is None else routes
    listeners = {"l": (10000, "r")} if listeners is None else listeners
    return {
        rt.CLUSTER: [make_cluster(name, source) for name in clusters],
        rt.ENDPOINT: [make_endpoints(name, port) for name, port in clusters.items()],
        rt.LISTENER: [
            make_listener(name, port, route, source) for name, (port, route) in listeners.items()
        ],
        rt.ROUTE: [make_route(name, body, upstream=up) for name, (body, up) in routes.items()],
        rt.SECRET: [make_secret(name) for name in secrets],
    }
