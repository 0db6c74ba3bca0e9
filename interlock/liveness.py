"""Glue: a proxy's xDS streams are its heartbeat, and the registry sweeps what the leases say.

Each replica counts the open xDS streams of every proxy token (the ``open_stream`` hook's grant
names the token as its principal; the stream's ``on_close`` says when it ended). Every
``interval`` seconds it writes, in one transaction, what moved: the tokens of which it now
holds a stream, those whose last stream ended (their proxy has the instance TTL to come back),
and its own lease when due — never a write per stream or per message. Then it sweeps the
store (:meth:`interlock.store.health.HealthStore.sweep`): an instance whose proxy has had no
stream on any replica for the TTL fails its proxy check, one whose proxy is back passes it, one
whose heartbeat is late fails its ttl check. A replica that just started judges no proxy (and
no heartbeat) before the TTL has passed since its start, so that a control-plane restart —
even one longer than the TTL — does not take every instance out before its proxy had the
time to reconnect.

Detection time: an instance is out of every proxy's endpoints within the TTL plus one
``interval`` (at most 1 s) plus the reconciler's debounce after its last stream ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from envoy.config.core.v3.base_pb2 import Node

from interlock.model import InterlockError
from interlock.model.health import DEFAULT_INSTANCE_TTL
from interlock.store import Store
from interlock.store.health import SweepResult
from interlock.xds.transport.server import Metadata, OpenStream, StreamGrant

log = logging.getLogger("interlock.liveness")

PRUNE_INTERVAL = 60.0
"""Seconds between deletions of leases nobody needs any more."""
FULL_SWEEP_INTERVAL = 60.0
"""Seconds between sweeps that judge every proxy; the sweeps between judge only those whose
leases ended since the last one (or that are down), which costs next to nothing."""


def sweep_interval(ttl: float) -> float:
    """How often a replica writes leases and sweeps: a quarter of the TTL, at most 1 s."""
    return min(1.0, ttl / 4)


class Liveness:
    """Proxy liveness of one replica and its sweep (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        ttl: float = DEFAULT_INSTANCE_TTL,
        *,
        interval: float | None = None,
        replica: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.interval = interval if interval is not None else sweep_interval(ttl)
        #: This replica's id in the store (a new one per process).
        self.replica = replica or secrets.token_hex(8)
        self._clock = clock
        self.started_at = clock()
        self._streams: dict[str, int] = {}
        self._connected: set[str] = set()
        self._disconnected: dict[str, float] = {}
        self._renewed_at: float | None = None
        self._pruned_at = self.started_at
        #: When the last sweep that judged proxies ran, and the last one that judged all.
        self._judged_at: float | None = None
        self._full_at = self.started_at
        self._task: asyncio.Task[None] | None = None
        #: The last sweep's result (for tests and logs).
        self.last: SweepResult | None = None

    # -- streams -------------------------------------------------------------------------
    def hook(self, open_stream: OpenStream) -> OpenStream:
        """``open_stream`` whose grants are watched (see :meth:`watch`)."""

        async def watched(node: Node, metadata: Metadata) -> str | StreamGrant:
            return self.watch(await open_stream(node, metadata))

        return watched

    def watch(self, opened: str | StreamGrant) -> str | StreamGrant:
        """Count the stream of a grant that names a principal (a proxy token) from now until
        it closes; anything else is returned as it is."""
        if not isinstance(opened, StreamGrant) or not opened.principal:
            return opened
        token_id = opened.principal
        self._opened(token_id)
        before = opened.on_close

        def closed() -> None:
            self._closed(token_id)
            if before is not None:
                before()

        return replace(opened, on_close=closed)

    def _opened(self, token_id: str) -> None:
        count = self._streams.get(token_id, 0)
        self._streams[token_id] = count + 1
        if count == 0:
            self._disconnected.pop(token_id, None)
            self._connected.add(token_id)

    def _closed(self, token_id: str) -> None:
        count = self._streams.get(token_id, 0) - 1
        if count > 0:
            self._streams[token_id] = count
            return
        self._streams.pop(token_id, None)
        self._connected.discard(token_id)
        self._disconnected[token_id] = self._clock() + self.ttl

    def holding(self) -> frozenset[str]:
        """The proxy tokens of which this replica holds a stream now."""
        return frozenset(self._streams)

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="interlock-liveness")

    @property
    def running(self) -> bool:
        """Whether its loop runs (it ends only by :meth:`stop`)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except InterlockError as exc:
                log.warning("cannot record proxy liveness or sweep health: %s", exc.message)
            except Exception:
                log.exception("recording proxy liveness or sweeping health failed")
            await asyncio.sleep(self.interval)

    async def tick(self) -> SweepResult:
        """One round: write what moved (and renew this replica's lease when due), sweep, and
        now and then prune."""
        now = self._clock()
        await self._flush(now)
        judge = now >= self.started_at + self.ttl
        since: float | None = now  # not judging: only proxies that are down are looked at
        if judge:
            full = self._judged_at is None or now - self._full_at >= FULL_SWEEP_INTERVAL
            # A margin for leases written late by other replicas, and for their clocks.
            since = None if full else min(self._judged_at or now, now) - 2 * self.interval - 1
        result = await asyncio.to_thread(
            self.store.health.sweep,
            now,
            judge_proxies=judge,
            started_at=self.started_at,
            since=since,
        )
        if judge:
            self._judged_at = now
            if since is None:
                self._full_at = now
        if result.changed:
            _log_sweep(result)
        self.last = result
        if now - self._pruned_at >= PRUNE_INTERVAL:
            self._pruned_at = now
            await asyncio.to_thread(self.store.health.prune, now)
        return result

    async def _flush(self, now: float) -> None:
        renew = self._renewed_at is None or now - self._renewed_at >= self.ttl / 3
        connected, self._connected = self._connected, set()
        # A grace that ended before it could be written (the store was away) ends now, so
        # that the next sweep's window still sees it end.
        disconnected = {t: max(until, now) for t, until in self._disconnected.items()}
        self._disconnected = {}
        if not (renew or connected or disconnected):
            return
        try:
            await asyncio.to_thread(
                self.store.health.record_leases,
                self.replica,
                started_at=self.started_at,
                until=now + self.ttl if renew else None,
                connected=sorted(connected),
                disconnected=disconnected,
            )
        except BaseException:
            # Write it all again next time, unless a newer event superseded it meanwhile.
            for token_id in connected:
                if token_id in self._streams and token_id not in self._disconnected:
                    self._connected.add(token_id)
            for token_id, until in disconnected.items():
                if token_id not in self._streams:
                    self._disconnected.setdefault(token_id, until)
            raise
        if renew:
            self._renewed_at = now


def _log_sweep(result: SweepResult) -> None:
    def shown(keys: Sequence[tuple[str, str]]) -> str:
        names = [f"{service}/{instance_id}" for service, instance_id in keys[:10]]
        return ", ".join(names) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")

    if result.proxy_down:
        log.warning(
            "unhealthy: no xDS stream from the proxy of %s (revision %d)",
            shown(result.proxy_down),
            result.revision,
        )
    if result.proxy_up:
        log.info("healthy again: the proxy of %s reconnected", shown(result.proxy_up))
    if result.ttl_missed:
        log.warning("unhealthy: no heartbeat within its ttl from %s", shown(result.ttl_missed))
