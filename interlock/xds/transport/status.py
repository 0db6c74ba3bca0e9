"""What every open xDS stream was sent and what it ACKed or NACKed, per resource type.

The server records; the API reads (``GET /v1/proxies``, ``GET /v1/revisions/{rev}``). Nothing here
knows services or policies: a stream is a node id, a snapshot key and per-type versions.

Revisions: ``revision_sent`` / ``revision_acked`` of a type is the newest mesh revision whose
content for that type equals the response sent / ACKed. When a newer snapshot leaves a type's
content unchanged, both advance to the newer revision without a push. While a make-before-break
transition is in flight (old clusters kept until the routes that used them are replaced) the
content sent is not exactly any snapshot's, and its revision is ``None``.

A stream has *reached* revision R when every type it was sent has been ACKed at a revision ≥ R.
``StatusRegistry.wait_for_revision`` and ``StatusRegistry.lagging`` build "wait until revision R
is ACKed everywhere" on it, and ``StatusRegistry.add_listener`` reports every ACK, NACK and sync
as it happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

log = logging.getLogger(__name__)

Variant = Literal["sotw", "delta"]
EventKind = Literal["connected", "sent", "ack", "nack", "synced", "disconnected"]


@dataclass(frozen=True, slots=True)
class NackStatus:
    """The last response of a type a proxy rejected: Envoy's message and what was rejected."""

    message: str
    version: str
    revision: int | None
    at: float


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """One resource type on one stream. Times are epoch seconds."""

    type_url: str
    version_sent: str | None = None
    revision_sent: int | None = None
    sent_at: float | None = None
    version_acked: str | None = None
    revision_acked: int | None = None
    acked_at: float | None = None
    last_nack: NackStatus | None = None
    #: A response was sent and is neither ACKed nor NACKed yet.
    pending: bool = False


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """One open stream, as the API shows it."""

    stream_id: int
    node_id: str
    node_cluster: str
    node_metadata: dict[str, Any]
    snapshot_key: str
    variant: Variant
    service: str  # "ads", "cds", "lds", "rds", "eds", "sds"
    connected_since: float
    envoy_version: str
    peer: str
    types: dict[str, TypeStatus]
    #: Highest revision every type sent on this stream is ACKed at (None: not there yet).
    synced_revision: int | None


@dataclass(frozen=True, slots=True)
class RefusedProxy:
    """A proxy whose streams are refused for a reason its operator must see (an Envoy release
    outside the supported range): the newest attempt per node id."""

    node_id: str
    node_cluster: str
    node_metadata: dict[str, Any]
    envoy_version: str
    peer: str
    reason: str
    at: float


#: A refusal is shown while its proxy tried again within this many seconds (Envoy retries a
#: refused ADS stream every few seconds, with back-off up to 30 s by default).
REFUSED_SHOWN_SECONDS = 300.0
#: At most this many refused proxies are remembered (the oldest attempts are forgotten first).
REFUSED_KEPT = 1000


class StatusEvent(NamedTuple):
    """Told to listeners as it happens (a named tuple: one is made per response and per ACK)."""

    kind: EventKind
    stream_id: int
    snapshot_key: str
    node_id: str
    type_url: str | None = None
    version: str | None = None
    revision: int | None = None
    message: str | None = None


class _TypeRecord:
    __slots__ = (
        "acked_at",
        "last_nack",
        "pending",
        "revision_acked",
        "revision_sent",
        "sent_at",
        "type_url",
        "version_acked",
        "version_sent",
    )

    def __init__(self, type_url: str) -> None:
        self.type_url = type_url
        self.version_sent: str | None = None
        self.revision_sent: int | None = None
        self.sent_at: float | None = None
        self.version_acked: str | None = None
        self.revision_acked: int | None = None
        self.acked_at: float | None = None
        self.last_nack: NackStatus | None = None
        self.pending = False

    def freeze(self) -> TypeStatus:
        return TypeStatus(
            self.type_url,
            self.version_sent,
            self.revision_sent,
            self.sent_at,
            self.version_acked,
            self.revision_acked,
            self.acked_at,
            self.last_nack,
            self.pending,
        )


class StreamRecord:
    """The server's handle on one stream's status. Every method is cheap and synchronous."""

    def __init__(
        self,
        registry: StatusRegistry,
        stream_id: int,
        *,
        node_id: str,
        node_cluster: str,
        node_metadata: dict[str, Any],
        snapshot_key: str,
        variant: Variant,
        service: str,
        envoy_version: str,
        peer: str,
    ) -> None:
        self._registry = registry
        self.stream_id = stream_id
        self.node_id = node_id
        self.node_cluster = node_cluster
        self.node_metadata = node_metadata
        self.snapshot_key = snapshot_key
        self.variant: Variant = variant
        self.service = service
        self.envoy_version = envoy_version
        self.peer = peer
        self.connected_since = registry.clock()
        self._types: dict[str, _TypeRecord] = {}

    def _type(self, type_url: str) -> _TypeRecord:
        found = self._types.get(type_url)
        if found is None:
            found = self._types[type_url] = _TypeRecord(type_url)
        return found

    def _emit(self, kind: EventKind, rec: _TypeRecord, message: str | None = None) -> None:
        registry = self._registry
        if not registry.wants(kind):
            if kind != "nack":
                registry.reached(self)
            return
        registry.emit(
            StatusEvent(
                kind,
                self.stream_id,
                self.snapshot_key,
                self.node_id,
                rec.type_url,
                rec.version_acked if kind != "nack" else rec.version_sent,
                rec.revision_acked if kind != "nack" else rec.revision_sent,
                message,
            ),
            self,
        )

    def sent(self, type_url: str, version: str, revision: int | None) -> None:
        """A response of ``type_url`` carrying ``version`` went out."""
        rec = self._type(type_url)
        rec.version_sent = version
        rec.revision_sent = revision
        rec.sent_at = self._registry.clock()
        rec.pending = True
        if self._registry.wants("sent"):
            self._registry.notify(
                StatusEvent(
                    "sent",
                    self.stream_id,
                    self.snapshot_key,
                    self.node_id,
                    type_url,
                    version,
                    revision,
                )
            )

    def acked(self, type_url: str) -> None:
        """The proxy ACKed the last response of ``type_url``."""
        rec = self._type(type_url)
        rec.version_acked = rec.version_sent
        rec.revision_acked = rec.revision_sent
        rec.acked_at = self._registry.clock()
        rec.pending = False
        self._emit("ack", rec)

    def nacked(self, type_url: str, message: str) -> None:
        """The proxy rejected the last response of ``type_url`` with ``message``."""
        rec = self._type(type_url)
        now = self._registry.clock()
        rec.last_nack = NackStatus(message, rec.version_sent or "", rec.revision_sent, now)
        rec.pending = False
        self._emit("nack", rec, message)

    def held(self, type_url: str, version: str, revision: int) -> None:
        """The proxy reconnected already holding ``version``, which is current at ``revision``."""
        rec = self._type(type_url)
        rec.version_sent = rec.version_acked = version
        rec.revision_sent = rec.revision_acked = revision
        rec.acked_at = self._registry.clock()
        rec.pending = False
        self._emit("ack", rec)

    def in_sync(self, type_url: str, revision: int) -> None:
        """The content last sent and ACKed for ``type_url`` is also what ``revision`` asks for."""
        rec = self._types.get(type_url)
        if rec is None or rec.pending or rec.version_acked != rec.version_sent:
            return
        if rec.revision_acked == revision and rec.revision_sent == revision:
            return
        rec.revision_sent = rec.revision_acked = revision
        self._emit("synced", rec)

    def still_rejected(self, type_url: str, revision: int) -> None:
        """The content the proxy last rejected for ``type_url`` is still what ``revision`` asks
        for: the NACK now stands against ``revision`` too (nothing is resent: no NACK storm)."""
        rec = self._types.get(type_url)
        if rec is None or rec.pending or rec.last_nack is None:
            return
        nack = rec.last_nack
        if nack.version != rec.version_sent or (nack.revision or 0) >= revision:
            return
        rec.last_nack = NackStatus(nack.message, nack.version, revision, nack.at)
        rec.revision_sent = revision
        self._emit("nack", rec, nack.message)

    def synced_revision(self) -> int | None:
        """The highest revision every type sent on this stream is ACKed at, if any."""
        lowest: int | None = None
        for rec in self._types.values():
            if rec.version_sent is None:
                continue
            if rec.pending or rec.version_acked != rec.version_sent or rec.revision_acked is None:
                return None
            if lowest is None or rec.revision_acked < lowest:
                lowest = rec.revision_acked
        return lowest

    def freeze(self) -> ProxyStatus:
        return ProxyStatus(
            stream_id=self.stream_id,
            node_id=self.node_id,
            node_cluster=self.node_cluster,
            node_metadata=self.node_metadata,
            snapshot_key=self.snapshot_key,
            variant=self.variant,
            service=self.service,
            connected_since=self.connected_since,
            envoy_version=self.envoy_version,
            peer=self.peer,
            types={t: rec.freeze() for t, rec in self._types.items()},
            synced_revision=self.synced_revision(),
        )


@dataclass(eq=False)
class _Waiter:
    revision: int
    pending: set[int]
    done: asyncio.Future[None]


class StatusRegistry:
    """All open streams' status; listeners are told of every change as it happens."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._records: dict[int, StreamRecord] = {}
        self._listeners: list[tuple[Callable[[StatusEvent], None], frozenset[str] | None]] = []
        #: The kinds some listener wants (None: every kind).
        self._wanted: frozenset[str] | None = frozenset()
        self._waiters: set[_Waiter] = set()
        #: Refusals by node id, the oldest attempt first.
        self._refused: dict[str, RefusedProxy] = {}

    # -- reading -----------------------------------------------------------------------------
    def proxies(self) -> list[ProxyStatus]:
        """Every open stream, by stream id."""
        return [self._records[sid].freeze() for sid in sorted(self._records)]

    def refused(self) -> list[RefusedProxy]:
        """Proxies refused lately (see :meth:`refuse`) and not connected since, by node id."""
        horizon = self.clock() - REFUSED_SHOWN_SECONDS
        return sorted(
            (r for r in self._refused.values() if r.at >= horizon), key=lambda r: r.node_id
        )

    def proxy(self, stream_id: int) -> ProxyStatus | None:
        record = self._records.get(stream_id)
        return None if record is None else record.freeze()

    def add_listener(
        self, listener: Callable[[StatusEvent], None], kinds: Collection[EventKind] | None = None
    ) -> Callable[[], None]:
        """Call ``listener`` (synchronously, on the event loop) for every event (of ``kinds``,
        when given); returns a function that removes it. A listener must not block;
        exceptions are logged. An event no listener wants is not even made: a push to
        thousands of streams reports thousands of them."""
        entry = (listener, None if kinds is None else frozenset(kinds))
        self._listeners.append(entry)
        self._rewant()

        def remove() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
                self._rewant()

        return remove

    def _rewant(self) -> None:
        wanted: set[str] = set()
        for _, kinds in self._listeners:
            if kinds is None:
                self._wanted = None
                return
            wanted |= kinds
        self._wanted = frozenset(wanted)

    def wants(self, kind: EventKind) -> bool:
        """Some listener wants events of ``kind``."""
        wanted = self._wanted
        return wanted is None or kind in wanted

    def lagging(self, revision: int, keys: Collection[str] | None = None) -> list[ProxyStatus]:
        """Open streams (of ``keys``, if given) that have not reached ``revision``."""
        return [
            record.freeze()
            for sid, record in sorted(self._records.items())
            if (keys is None or record.snapshot_key in keys) and not _reached(record, revision)
        ]

    async def wait_for_revision(self, revision: int, keys: Collection[str] | None = None) -> None:
        """Return once every stream open now (of ``keys``, if given) has reached ``revision`` or
        closed. Bound it with ``asyncio.timeout`` and ask :meth:`lagging` who is behind."""
        pending = {
            sid
            for sid, record in self._records.items()
            if (keys is None or record.snapshot_key in keys) and not _reached(record, revision)
        }
        if not pending:
            return
        waiter = _Waiter(revision, pending, asyncio.get_running_loop().create_future())
        self._waiters.add(waiter)
        try:
            await waiter.done
        finally:
            self._waiters.discard(waiter)

    # -- recording (the server) --------------------------------------------------------------
    def open(
        self,
        stream_id: int,
        *,
        node_id: str,
        node_cluster: str,
        node_metadata: dict[str, Any],
        snapshot_key: str,
        variant: Variant,
        service: str,
        envoy_version: str,
        peer: str = "",
    ) -> StreamRecord:
        """Register a new stream."""
        record = StreamRecord(
            self,
            stream_id,
            node_id=node_id,
            node_cluster=node_cluster,
            node_metadata=node_metadata,
            snapshot_key=snapshot_key,
            variant=variant,
            service=service,
            envoy_version=envoy_version,
            peer=peer,
        )
        self._records[stream_id] = record
        if self._refused:
            self._refused.pop(node_id, None)
        self._notify(StatusEvent("connected", stream_id, snapshot_key, node_id))
        return record

    def refuse(
        self,
        *,
        node_id: str,
        node_cluster: str,
        node_metadata: dict[str, Any],
        envoy_version: str,
        peer: str,
        reason: str,
    ) -> None:
        """Remember that ``node_id``'s stream was refused for ``reason`` (until it connects)."""
        self._refused.pop(node_id, None)
        self._refused[node_id] = RefusedProxy(
            node_id, node_cluster, node_metadata, envoy_version, peer, reason, self.clock()
        )
        while len(self._refused) > REFUSED_KEPT:
            del self._refused[next(iter(self._refused))]

    def close(self, record: StreamRecord) -> None:
        """Forget a stream that ended."""
        if self._records.pop(record.stream_id, None) is None:
            return
        for waiter in tuple(self._waiters):
            waiter.pending.discard(record.stream_id)
            if not waiter.pending and not waiter.done.done():
                waiter.done.set_result(None)
        self._notify(
            StatusEvent("disconnected", record.stream_id, record.snapshot_key, record.node_id)
        )

    def emit(self, event: StatusEvent, record: StreamRecord) -> None:
        """Tell listeners and revision waiters about ``event`` on ``record``."""
        if event.kind != "nack":
            self.reached(record)
        self._notify(event)

    def reached(self, record: StreamRecord) -> None:
        """``record`` may have reached the revision some waiter waits for (an ACK or sync)."""
        for waiter in tuple(self._waiters):
            if record.stream_id in waiter.pending and _reached(record, waiter.revision):
                waiter.pending.discard(record.stream_id)
                if not waiter.pending and not waiter.done.done():
                    waiter.done.set_result(None)

    def notify(self, event: StatusEvent) -> None:
        """Tell listeners only (an event no revision waiter cares about)."""
        self._notify(event)

    def _notify(self, event: StatusEvent) -> None:
        for listener, kinds in tuple(self._listeners):
            if kinds is not None and event.kind not in kinds:
                continue
            try:
                listener(event)
            except Exception:
                log.exception("status listener failed on %s", event.kind)


def _reached(record: StreamRecord, revision: int) -> bool:
    synced = record.synced_revision()
    return synced is not None and synced >= revision
