"""A simulated fleet: thousands of ADS streams that behave like Envoy, without Envoy's cost,
sharded across processes.

Each stream, like Envoy:

- authenticates with its proxy token (``authorization: Bearer …``) and sends its node (id =
  instance id, cluster = service, metadata = ports) on the first request;
- subscribes CDS and LDS (wildcard), then EDS for every EDS cluster it receives, RDS for every
  route configuration its listeners name, and SDS for ``default`` and ``ROOTCA``;
- ACKs every response at once (version and nonce for SotW, nonce for delta), and tracks the
  versions it holds: per type the SotW ``version_info``, or the delta name → version map;
- on a *warm* reconnect sends what it holds (SotW ``version_info``, delta
  ``initial_resource_versions``), on a *cold* one nothing (a restarted Envoy);
- when its stream fails, opens it again after a backoff with jitter (0.5 s doubling to 4 s),
  as Envoy retries ADS. A connect storm of thousands of streams at once has some calls fail
  before they reach the server (CANCELLED or INTERNAL in the client's gRPC core, never seen by
  the server's handler); those are retried and counted (``retries``), not hidden.

Cheapness: each stream is its own HTTP/2 connection (as each Envoy is), but what is derived
from a response — the delta version map, the names a SotW response carries, the EDS and RDS
names to follow — is computed once per shard per content version and shared by every stream
that holds that content (streams of one view receive identical contents). Responses are
parsed by upb; resources are never decoded except clusters' discovery type and listeners'
route names, once per content.

Every response is timestamped with ``time.monotonic()`` (one clock for every process on the
machine); the coordinator marks a moment (a commit) and asks each shard when each of its
streams received the next response of a type, or when it was fully served.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing as mp
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from bench.topology import FleetNode
from interlock.xds.transport import resource_types as rt

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
SECRETS = ("ROOTCA", "default")
#: What a stream must have been sent (and ACKed) to be fully served.
SERVED_TYPES = (rt.CLUSTER, rt.ENDPOINT, rt.LISTENER, rt.ROUTE, rt.SECRET)
NODE_METADATA = {
    "namespace": "default",
    "inbound_port": "15006",
    "app_port": "9000",
    "outbound_port": "15001",
}
_CACHE_LIMIT = 256


# -- the least protobuf needed to follow subscriptions -------------------------------------------
def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """Top-level ``(number, wire type, value)`` of a serialized message (values: int or bytes)."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 2:
            length, i = _varint(data, i)
            out.append((key >> 3, wire, data[i : i + length]))
            i += length
        elif wire == 0:
            value, i = _varint(data, i)
            out.append((key >> 3, wire, value))
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            break
    return out


def _cluster_eds_name(data: bytes) -> str | None:
    """The EDS service name of a serialized Cluster if its discovery type is EDS (3), else
    None. Fields: name = 1, type = 2, eds_cluster_config = 3 (service_name = 2)."""
    name = ""
    eds = False
    service_name = ""
    for number, wire, value in _fields(data):
        if number == 1 and wire == 2:
            name = value.decode()
        elif number == 2 and wire == 0:
            eds = value == 3
        elif number == 3 and wire == 2:
            for n, w, v in _fields(value):
                if n == 2 and w == 2:
                    service_name = v.decode()
    return (service_name or name) if eds else None


def _listener_routes(data: bytes) -> list[str]:
    """The RDS route configuration names a serialized Listener's HTTP connection managers
    name."""
    listener = listener_pb2.Listener.FromString(data)
    names = []
    chains = [*listener.filter_chains]
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for f in chain.filters:
            if f.typed_config.type_url.endswith("HttpConnectionManager"):
                hcm = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                if hcm.HasField("rds"):
                    names.append(hcm.rds.route_config_name)
    return names


@dataclass
class _Derived:
    """What a shard derived once from one content (shared by every stream holding it)."""

    versions: dict[str, str]  # delta: name → version of every resource held
    #: CDS: cluster → its EDS name (if EDS); LDS: listener → the RDS names it uses
    follow_map: dict[str, tuple[str, ...]]
    follow: frozenset[str] | None  # EDS names (from CDS) or RDS names (from LDS)


class _Shared:
    """Per-shard caches keyed by (type URL, content version)."""

    def __init__(self) -> None:
        self.derived: dict[tuple[str, str], _Derived] = {}

    def remember(self, key: tuple[str, str], value: _Derived) -> _Derived:
        if len(self.derived) >= _CACHE_LIMIT:
            self.derived.clear()
        self.derived[key] = value
        return value


def _follow_map(type_url: str, resources: dict[str, bytes]) -> dict[str, tuple[str, ...]]:
    """Per resource, the names of the other type it makes Envoy subscribe to."""
    if type_url == rt.CLUSTER:
        return {
            name: (eds,) if (eds := _cluster_eds_name(data)) is not None else ()
            for name, data in resources.items()
        }
    if type_url == rt.LISTENER:
        return {name: tuple(_listener_routes(data)) for name, data in resources.items()}
    return {}


def _followed(type_url: str, follow_map: dict[str, tuple[str, ...]]) -> frozenset[str] | None:
    if type_url not in (rt.CLUSTER, rt.LISTENER):
        return None
    return frozenset(n for names in follow_map.values() for n in names)


@dataclass
class StreamStats:
    #: per type: receive times of the latest responses (monotonic)
    received: dict[str, collections.deque[float]] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    responses: int = 0
    errors: int = 0
    error_codes: list[str] = field(default_factory=list)
    #: times the stream was opened again after it failed (Envoy's ADS retry)
    retries: int = 0
    connected_at: float = 0.0
    #: when every SERVED_TYPES type had been received since the last (re)connect
    served_at: float | None = None


class FleetStream:
    """One Envoy-like ADS stream on its own connection."""

    def __init__(
        self,
        address: str,
        node: FleetNode,
        variant: str,
        shared: _Shared,
        options: list[Any],
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """``credentials``: TLS to the control plane (its CA bundle), as Envoy's xDS cluster
        has; None for a --plaintext server."""
        self.address = address
        self.credentials = credentials
        self.variant = variant
        self.shared = shared
        self.options = options
        self.node = base_pb2.Node(
            id=node.node_id,
            cluster=node.service,
            user_agent_name="bench-fleet",
            user_agent_version="1",
        )
        meta = struct_pb2.Struct()
        meta.update(NODE_METADATA)
        self.node.metadata.CopyFrom(meta)
        self.metadata = (("authorization", f"Bearer {node.token}"),)
        self.stats = StreamStats()
        self.channel: grpc.aio.Channel | None = None
        self.call: Any = None
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        # what the proxy holds, per type: version (SotW version_info / delta system version)
        self.version: dict[str, str] = {}
        self.held: dict[str, _Derived] = {}
        self.nonce: dict[str, str] = {}
        self.subscribed: dict[str, frozenset[str]] = {}
        self._pending_types: set[str] = set()

    # -- requests ----------------------------------------------------------------------------
    def _request(self, type_url: str, **kw: Any) -> Any:
        if self.variant == "delta":
            return discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, **kw)
        return discovery_pb2.DiscoveryRequest(type_url=type_url, **kw)

    async def _requests(self, queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
        first = True
        while True:
            item = await queue.get()
            if item is None:
                return
            if first:
                item.node.CopyFrom(self.node)
                first = False
            yield item

    def _subscribe(self, type_url: str, names: frozenset[str], *, warm: bool = False) -> None:
        """Ask for exactly ``names`` of a non-wildcard type (sends only on a change)."""
        have = self.subscribed.get(type_url)
        if have == names:
            return
        self.subscribed[type_url] = names
        if self.variant == "delta":
            request = self._request(
                type_url,
                resource_names_subscribe=sorted(names - (have or frozenset())),
                resource_names_unsubscribe=sorted((have or frozenset()) - names),
            )
            if warm and type_url in self.held:
                request.initial_resource_versions.update(self.held[type_url].versions)
        else:
            request = self._request(
                type_url,
                resource_names=sorted(names),
                version_info=self.version.get(type_url, ""),
                response_nonce=self.nonce.get(type_url, ""),
            )
        self.queue.put_nowait(request)

    def _open(self, warm: bool) -> None:
        """Queue the first requests of a (re)connected stream."""
        subscribed = self.subscribed if warm else {}
        self.subscribed = {}
        self.nonce = {}
        if not warm:
            self.version = {}
            self.held = {}
        for type_url in (rt.CLUSTER, rt.LISTENER):
            request = self._request(type_url)
            if warm and type_url in self.held:
                if self.variant == "delta":
                    request.initial_resource_versions.update(self.held[type_url].versions)
                else:
                    request.version_info = self.version.get(type_url, "")
            self.queue.put_nowait(request)
        for type_url, names in subscribed.items():
            self._subscribe(type_url, names, warm=True)

    # -- responses ---------------------------------------------------------------------------
    def _on_response(self, data: bytes, now: float) -> None:
        stats = self.stats
        stats.responses += 1
        if self.variant == "delta":
            response = discovery_pb2.DeltaDiscoveryResponse.FromString(data)
            type_url = response.type_url
            version = response.system_version_info
            key = (type_url, version)
            derived = self.shared.derived.get(key)
            if derived is None:
                previous = self.held.get(type_url)
                versions = dict(previous.versions) if previous is not None else {}
                follow_map = dict(previous.follow_map) if previous is not None else {}
                for name in response.removed_resources:
                    versions.pop(name, None)
                    follow_map.pop(name, None)
                payloads: dict[str, bytes] = {}
                for resource in response.resources:
                    versions[resource.name] = resource.version
                    payloads[resource.name] = resource.resource.value
                follow_map.update(_follow_map(type_url, payloads))
                derived = self.shared.remember(
                    key, _Derived(versions, follow_map, _followed(type_url, follow_map))
                )
            self.queue.put_nowait(self._request(type_url, response_nonce=response.nonce))
        else:
            response = discovery_pb2.DiscoveryResponse.FromString(data)
            type_url = response.type_url
            version = response.version_info
            key = (type_url, version)
            derived = self.shared.derived.get(key)
            if derived is None:
                payloads = {str(i): r.value for i, r in enumerate(response.resources)}
                follow_map = _follow_map(type_url, payloads)
                derived = self.shared.remember(
                    key, _Derived({}, {}, _followed(type_url, follow_map))
                )
            self.nonce[type_url] = response.nonce
            self.version[type_url] = version
            self.queue.put_nowait(
                self._request(
                    type_url,
                    version_info=version,
                    response_nonce=response.nonce,
                    resource_names=sorted(self.subscribed.get(type_url, ())),
                )
            )
        self.version[type_url] = version
        self.held[type_url] = derived
        log = stats.received.get(type_url)
        if log is None:
            log = stats.received[type_url] = collections.deque(maxlen=64)
        log.append(now)
        stats.bytes[type_url] = stats.bytes.get(type_url, 0) + len(data)
        if stats.served_at is None:
            self._pending_types.discard(type_url)
            if not self._pending_types:
                stats.served_at = now
        if type_url == rt.CLUSTER:
            if derived.follow is not None:
                self._subscribe(rt.ENDPOINT, derived.follow)
            self._subscribe(rt.SECRET, frozenset(SECRETS))
        elif type_url == rt.LISTENER and derived.follow is not None:
            self._subscribe(rt.ROUTE, derived.follow)

    async def run(self, warm: bool) -> None:
        """Hold the stream; when it fails (not stopped by us), open it again after a backoff
        with jitter, warm, as Envoy retries its ADS stream (base 0.5 s, doubling to 4 s)."""
        self.stopping = False
        self.stats.connected_at = time.monotonic()
        self.stats.served_at = None
        backoff = 0.5
        while True:
            failed = await self._run_once(warm)
            if not failed or self.stopping:
                return
            self.stats.retries += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 4.0)
            warm = bool(self.held)

    async def _run_once(self, warm: bool) -> bool:
        """One stream on a fresh channel; True when it failed."""
        self._pending_types = set(SERVED_TYPES)
        self.queue = asyncio.Queue()
        self._open(warm)
        if self.channel is not None:
            await self.channel.close()
        if self.credentials is None:
            self.channel = grpc.aio.insecure_channel(self.address, options=self.options)
        else:
            # Each stream its own connection, so each reconnect is a TLS handshake of its own.
            self.channel = grpc.aio.secure_channel(
                self.address, self.credentials, options=self.options
            )
        method = (
            "DeltaAggregatedResources" if self.variant == "delta" else "StreamAggregatedResources"
        )
        stub: Any = self.channel.stream_stream(
            ADS + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=None,  # raw bytes: parsed (and measured) here
        )
        self.call = stub(self._requests(self.queue), metadata=self.metadata)
        failed = False
        try:
            async for data in self.call:
                self._on_response(data, time.monotonic())
            if not self.stopping:
                failed = True
                self.stats.errors += 1
                self.stats.error_codes.append("ended by the server")
        except grpc.aio.AioRpcError as exc:
            if not self.stopping:
                failed = True
                self.stats.errors += 1
                self.stats.error_codes.append(f"{exc.code().name}: {exc.details()}")
        except asyncio.CancelledError:
            pass
        finally:
            self.queue.put_nowait(None)
        return failed

    def start(self, warm: bool = False) -> None:
        self.task = asyncio.create_task(self.run(warm))

    async def stop(self) -> None:
        """Cancel the stream (as a proxy going away) and close its connection."""
        self.stopping = True
        if self.call is not None:
            self.call.cancel()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self.task
            self.task = None
        if self.channel is not None:
            await self.channel.close()
            self.channel = None


CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    # each stream its own connection, as each Envoy has
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.keepalive_time_ms", 60_000),
]


def _shard_main(
    conn: Any,
    address: str,
    nodes: list[FleetNode],
    variants: list[str],
    cpus: set[int] | None,
    ca_pem: bytes | None = None,
) -> None:
    """A fleet shard: runs ``nodes`` as streams and answers the coordinator's commands."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)

    async def main() -> None:
        shared = _Shared()
        credentials = None if ca_pem is None else grpc.ssl_channel_credentials(ca_pem)
        streams = [
            FleetStream(address, n, v, shared, CHANNEL_OPTIONS, credentials)
            for n, v in zip(nodes, variants, strict=True)
        ]
        loop = asyncio.get_running_loop()
        while True:
            command, arg = await loop.run_in_executor(None, conn.recv)
            try:
                reply = await _command(streams, command, arg)
            except Exception as exc:  # report, keep serving
                reply = RuntimeError(f"{type(exc).__name__}: {exc}")
            conn.send(reply)
            if command == "stop":
                return

    asyncio.run(main())


async def _command(streams: list[FleetStream], command: str, arg: Any) -> Any:
    if command == "connect":  # arg: (warm, batch, pause) — open streams in batches
        warm, batch, pause = arg
        for i, s in enumerate(streams):
            s.start(warm)
            if batch and (i + 1) % batch == 0:
                await asyncio.sleep(pause)
        return len(streams)
    if command == "served":  # how many are fully served since their last (re)connect
        return sum(1 for s in streams if s.stats.served_at is not None and s.task is not None)
    if command == "alive":  # streams open right now
        return sum(1 for s in streams if s.task is not None and not s.task.done())
    if command == "served_at":
        return [s.stats.served_at for s in streams]
    if command == "since":  # arg: (type_url, t0): each stream's first receive at or after t0
        type_url, t0 = arg
        out: list[float | None] = []
        for s in streams:
            found = None
            for t in s.stats.received.get(type_url, ()):
                if t >= t0:
                    found = t - t0
                    break
            out.append(found)
        return out
    if command == "bytes":  # per stream: bytes received per type so far
        return [dict(s.stats.bytes) for s in streams]
    if command == "responses":
        return sum(s.stats.responses for s in streams)
    if command == "errors":
        return [c for s in streams for c in s.stats.error_codes]
    if command == "retries":
        return sum(s.stats.retries for s in streams)
    if command == "drop":
        await asyncio.gather(*(s.stop() for s in streams))
        return True
    if command == "stop":
        await asyncio.gather(*(s.stop() for s in streams))
        return True
    raise ValueError(f"unknown command {command!r}")


class Fleet:
    """``nodes`` as streams over ``shards`` processes (pinned to ``cpus`` if given).

    ``variants``: one per node (``"sotw"`` or ``"delta"``); ``ca_pem``: the control plane's CA
    bundle (every stream then speaks TLS, verified), None for a --plaintext server."""

    def __init__(
        self,
        address: str,
        nodes: Sequence[FleetNode],
        variants: Sequence[str],
        *,
        shards: int,
        cpus: set[int] | None = None,
        ca_pem: bytes | None = None,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        self.size = len(nodes)
        per = max(1, (len(nodes) + shards - 1) // shards)
        try:
            for i in range(0, len(nodes), per):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_shard_main,
                    args=(
                        child,
                        address,
                        list(nodes[i : i + per]),
                        list(variants[i : i + per]),
                        cpus,
                        ca_pem,
                    ),
                    daemon=True,
                )
                proc.start()
                self.pipes.append(parent)
                self.procs.append(proc)
        except BaseException:
            self.close()
            raise

    def ask(self, command: str, arg: Any = None) -> list[Any]:
        for p in self.pipes:
            p.send((command, arg))
        replies = [p.recv() for p in self.pipes]
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def connect(
        self, *, warm: bool = False, timeout: float = 300.0, batch: int = 50, pause: float = 0.02
    ) -> float:
        """Open every stream (``batch`` at a time per shard); return the seconds until every
        one was fully served (CDS, EDS, LDS, RDS and SDS received)."""
        started = time.monotonic()
        self.ask("connect", (warm, batch, pause))
        self.wait_served(started, timeout)
        return time.monotonic() - started

    def wait_served(self, started: float, timeout: float) -> None:
        while (served := sum(self.ask("served"))) < self.size:
            if time.monotonic() - started > timeout:
                errors = self.errors()
                raise TimeoutError(
                    f"only {served}/{self.size} streams served after {timeout:.0f}s"
                    + (f"; stream errors: {errors[:3]}" if errors else "")
                )
            time.sleep(0.05)

    def served_times(self) -> list[float | None]:
        return [t for shard in self.ask("served_at") for t in shard]

    def latencies(self, type_url: str, t0: float) -> list[float | None]:
        """Per stream: seconds from ``t0`` to its first response of ``type_url`` at or after
        ``t0`` (None: none yet)."""
        return [x for shard in self.ask("since", (type_url, t0)) for x in shard]

    def wait_all(
        self, type_url: str, t0: float, timeout: float, interval: float = 0.01
    ) -> list[float | None]:
        """Poll :meth:`latencies` until every stream has one (or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.latencies(type_url, t0)
            if all(x is not None for x in found) or time.monotonic() > deadline:
                return found
            time.sleep(interval)

    def bytes_received(self) -> list[dict[str, int]]:
        return [b for shard in self.ask("bytes") for b in shard]

    def errors(self) -> list[str]:
        return [e for shard in self.ask("errors") for e in shard]

    def retries(self) -> int:
        """How many times streams were opened again after failing (see FleetStream.run)."""
        return int(sum(self.ask("retries")))

    def drop(self) -> None:
        self.ask("drop")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def close(self) -> None:
        with contextlib.suppress(EOFError, OSError, BrokenPipeError, RuntimeError):
            for p in self.pipes:
                p.send(("stop", None))
            for p in self.pipes:
                if p.poll(30):
                    p.recv()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.procs = []
        self.pipes = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
