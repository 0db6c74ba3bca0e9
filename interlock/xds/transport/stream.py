"""One xDS stream's reader and writer, common to state-of-the-world and delta.

A stream has a reader (requests → subscription and ACK/NACK state, then a wake-up) and a writer
(the push loop). Wake-ups coalesce: the writer always works from the latest snapshot and the
latest requests, so a slow proxy gets the newest state, never a backlog.

One pass of the writer goes over the types the proxy asked for, in ``PUSH_ORDER``; for each it
asks the session what the proxy should hold (:mod:`.session`: make-before-break) and
sends it when that differs from what the proxy holds (per variant: ``needs_send``). When a
cluster itself changes, its endpoints are sent again right after CDS: Envoy warms the new version
of the cluster until it gets them, and over ADS it does not ask for them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport import wire
from interlock.xds.transport.cache import Snapshot, SnapshotCache
from interlock.xds.transport.content import Content
from interlock.xds.transport.session import Session, TypeState
from interlock.xds.transport.status import StreamRecord, Variant

log = logging.getLogger("interlock.xds.transport.server")

Write = Callable[[bytes], Awaitable[None]]

MAX_NAMES = 100_000
"""Names one stream may subscribe to of one type (a sidecar asks for one per cluster or
listener): past it the stream ends with RESOURCE_EXHAUSTED, so that delta subscriptions,
which add up request after request, cannot grow without bound."""


class ProtocolError(Exception):
    """A request the protocol does not allow; the stream ends with ``code``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class XdsStream:
    """One stream: base of ``sotw.SotwStream`` and ``delta.DeltaStream``."""

    variant: Variant
    nonce_field_number: int
    #: The request message class (requests arrive serialized; see ``server``).
    request_type: Any

    def __init__(
        self,
        stream_id: int,
        key: str,
        cache: SnapshotCache,
        record: StreamRecord,
        session: Session,
        fixed_type: str | None,
    ) -> None:
        self.stream_id = stream_id
        self.key = key
        self.cache = cache
        self.record = record
        self.session = session
        self.fixed_type = fixed_type
        self.states: dict[str, TypeState] = {}
        self._ordered: list[TypeState] = []
        self._event = asyncio.Event()
        self._nonces = 0
        self.closed = False
        self.failure: ProtocolError | None = None
        #: Per type URL, the only names this stream may subscribe to (see ``StreamGrant``).
        self.allowed: Mapping[str, frozenset[str]] = MappingProxyType({})
        self.on_denied: Callable[[str, frozenset[str]], None] | None = None
        #: Requests for types this server does not serve (ignored; see ``state_for``).
        self.ignored = 0

    # -- variant-specific ------------------------------------------------------------------
    def handle(self, request: Any) -> None:
        """Apply one request (raises :class:`ProtocolError` for one the protocol forbids)."""
        raise NotImplementedError

    def needs_send(self, state: TypeState, desired: Content) -> bool:
        """Whether the proxy must be sent something to hold ``desired``."""
        raise NotImplementedError

    def body(self, state: TypeState, desired: Content) -> bytes:
        """The response (without nonce) that takes the proxy to ``desired``."""
        raise NotImplementedError

    # -- shared request handling -----------------------------------------------------------
    def permitted(self, type_url: str, names: Iterable[str]) -> list[str]:
        """``names`` less those this stream may not subscribe to (reported to ``on_denied``)."""
        names = list(names)
        allowed = self.allowed.get(self.fixed_type or type_url)
        if allowed is None:
            return names
        denied = frozenset(n for n in names if n not in allowed)
        if not denied:
            return names
        if self.on_denied is not None:
            try:
                self.on_denied(self.fixed_type or type_url, denied)
            except Exception:
                log.exception("stream %d: on_denied failed", self.stream_id)
        return [n for n in names if n in allowed]

    def check_names(self, state: TypeState) -> None:
        """End the stream when ``state`` subscribes to more than :data:`MAX_NAMES` names."""
        if len(state.sub.names) > MAX_NAMES:
            raise ProtocolError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"at most {MAX_NAMES} names of one type may be subscribed on a stream",
            )

    def state_for(self, type_url: str) -> tuple[TypeState, bool] | None:
        """The state of the request's type (created on its first request: second item True),
        or None for a type this server does not serve: such a request is ignored (as the
        server sends nothing for it, that is what it would have come to) and no state is
        kept for it, so a client cannot grow the stream by inventing type URLs."""
        if self.fixed_type is not None:
            if type_url and type_url != self.fixed_type:
                raise ProtocolError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"this service serves {self.fixed_type}, not {type_url}",
                )
            type_url = self.fixed_type
        elif not type_url:
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT, "an aggregated stream needs type_url"
            )
        state = self.states.get(type_url)
        if state is not None:
            return state, False
        if type_url not in rt.PUSH_ORDER:
            self.ignored += 1
            if self.ignored == 1:
                log.info(
                    "stream %d (%s) asked for %s, which this server does not serve; ignored",
                    self.stream_id,
                    self.record.node_id,
                    type_url[:200],
                )
            return None
        state = self.states[type_url] = TypeState(type_url)
        self._ordered.append(state)
        self._ordered.sort(key=lambda s: rt.push_rank(s.type_url))
        return state, True

    def ack_or_nack(self, state: TypeState, nonce: str, error: str | None) -> bool:
        """Record the ACK/NACK a request carries; False when its nonce is stale.

        A nonce is stale when a newer response of the type was sent on this stream. An empty
        nonce, or any nonce before this stream sent the type anything, is not stale and
        acknowledges nothing.
        """
        if not nonce or state.nonce is None:
            return True
        if nonce != state.nonce:
            return False
        if state.acked or state.nacked:
            return True
        if error is not None:
            state.nacked = True
            self.record.nacked(state.type_url, error)
            log.warning(
                "stream %d (%s) rejected %s version %s: %s",
                self.stream_id,
                self.record.node_id,
                rt.SHORT_NAMES.get(state.type_url, state.type_url),
                state.have.version if state.have is not None else "",
                error,
            )
            return True
        state.acked = True
        self.record.acked(state.type_url)
        snapshot = self.cache.get(self.key)
        if snapshot is not None and snapshot.revision == state.sent_revision:
            state.in_sync = True  # what the current snapshot asks for, now ACKed
        else:
            self.wake()  # let the type catch up with the newer revision
        if self.session.retaining():
            # an ACK may end a make-before-break transition, here or on a sibling stream
            self.session.wake_others(self)
            self.wake()
        return True

    # -- cache watcher -----------------------------------------------------------------------
    def wake(self) -> None:
        self._event.set()

    def on_revision(self, revision: int) -> None:
        snapshot = self.cache.get(self.key)
        for state in self._ordered:
            if state.in_sync:
                # Only if what the proxy holds is still what the snapshot asks for: a change
                # not pushed yet (the writer runs later) must not count as in sync.
                if snapshot is not None:
                    desired, mode = self.session.desired(state, snapshot)
                    if mode != "base" or self.needs_send(state, desired):
                        state.in_sync = False
                        self.wake()
                        continue
                self.record.in_sync(state.type_url, revision)
            elif state.nacked and not state.retaining:
                self.record.still_rejected(state.type_url, revision)

    def close(self) -> None:
        self.closed = True
        self._event.set()

    def fail(self, code: grpc.StatusCode, message: str) -> None:
        """End the stream with ``code`` (nothing more is sent)."""
        if self.failure is None:
            self.failure = ProtocolError(code, message)
        self.close()

    # -- the two loops -------------------------------------------------------------------------
    async def read(self, requests: AsyncIterator[Any]) -> None:
        """Apply requests until the proxy ends the stream (or breaks the protocol)."""
        try:
            async for request in requests:
                self.handle(request)
        except ProtocolError as exc:
            self.failure = exc
        except (grpc.RpcError, grpc.aio.AioRpcError, grpc.aio.UsageError) as exc:
            log.debug("stream %d: read ended: %s", self.stream_id, exc)
        except Exception:
            log.exception("stream %d: cannot handle a request", self.stream_id)
            self.failure = ProtocolError(grpc.StatusCode.INTERNAL, "the server failed")
        finally:
            self.close()

    async def run(self, write: Write) -> None:
        """Push until the stream closes."""
        while True:
            await self._event.wait()
            self._event.clear()
            if self.closed:
                return
            snapshot = self.cache.get(self.key)
            if snapshot is not None:
                await self._push(snapshot, write)

    def _rewarm(self, have: Content, desired: Content) -> None:
        """Envoy replaces a changed EDS cluster by a new one that warms until it receives its
        endpoints, and over ADS it does not ask for them again (its subscription did not
        change): so resend the endpoints of every changed cluster, after CDS."""
        held = have.entries
        names = {
            name
            for cluster, entry in desired.entries.items()
            if (old := held.get(cluster)) is not None
            and old.version != entry.version
            and not entry.placeholder
            and (name := rt.eds_name(entry)) is not None
        }
        if names:
            self.session.resend(rt.ENDPOINT, names)

    async def _push(self, snapshot: Snapshot, write: Write) -> None:
        for state in tuple(self._ordered):
            if self.closed:
                return
            desired, mode = self.session.desired(state, snapshot)
            retaining = state.retaining = mode != "base"
            if state.initial_version is not None:
                # A reconnecting proxy that already holds what this revision asks for (its
                # SotW version_info, or its delta initial_resource_versions) is sent nothing:
                # record it as holding it, or its status would stay "not sent" for good and
                # every rollout would wait for it.
                if (
                    state.have is None or state.have.version == state.initial_version
                ) and state.initial_version == desired.version:
                    state.have = desired
                    state.acked = True
                    state.sent_revision = snapshot.revision
                    self.record.held(state.type_url, desired.version, snapshot.revision)
                state.initial_version = None
            if not self.needs_send(state, desired):
                have = state.have
                if have is not None and have is not desired and have.version == desired.version:
                    state.have = desired  # the shared (interned) object
                state.in_sync = not retaining and (state.nonce is None or state.acked)
                if state.in_sync:
                    self.record.in_sync(state.type_url, snapshot.revision)
                elif state.nacked and not retaining:
                    self.record.still_rejected(state.type_url, snapshot.revision)
                continue
            payload = self.body(state, desired)
            self._nonces += 1
            nonce = str(self._nonces)
            have = state.have
            if state.type_url == rt.CLUSTER and have is not None:
                self._rewarm(have, desired)
            # names new to the proxy stay "unconfirmed" until a response is ACKed
            added = have is None or desired.adds_to(have)
            state.adds = (state.adds and not state.acked) or added
            state.have = desired
            state.nonce = nonce
            state.acked = state.nacked = state.in_sync = False
            state.sent_revision = None if retaining else snapshot.revision
            self.record.sent(state.type_url, desired.version, state.sent_revision)
            await write(payload + wire.text_field(self.nonce_field_number, nonce))
