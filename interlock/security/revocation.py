"""Revoked tokens lose their streams: every ``interval`` seconds the server asks the store which
of its streams' tokens were revoked (or deleted with their instance) and ends those streams
with UNAUTHENTICATED. Every replica checks its own streams, so a revocation through any replica
takes effect everywhere within one interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from interlock.model import InterlockError
from interlock.security.metrics import SecurityMetrics
from interlock.store.security import SecurityStore
from interlock.xds.transport.server import XdsServer

log = logging.getLogger("interlock.security")

DEFAULT_RECHECK_SECONDS = 5.0


class Revocations:
    def __init__(
        self,
        store: SecurityStore,
        xds: XdsServer,
        interval: float = DEFAULT_RECHECK_SECONDS,
        metrics: SecurityMetrics | None = None,
    ) -> None:
        self._store = store
        self._xds = xds
        self.interval = interval
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="interlock-token-recheck")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> int:
        """Close the streams of every revoked token now; returns how many were closed."""
        principals = tuple(self._xds.principals())
        if not principals:
            return 0
        revoked = await asyncio.to_thread(self._store.revoked, principals)
        closed = 0
        for token_id in sorted(revoked):
            n = self._xds.terminate(
                token_id, grpc.StatusCode.UNAUTHENTICATED, "the proxy token was revoked"
            )
            if n:
                log.info("closed %d stream(s) of revoked proxy token %s", n, token_id)
            closed += n
        if closed and self._metrics is not None:
            self._metrics.revoked.inc(closed)
        return closed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except InterlockError as exc:
                log.warning("cannot re-check proxy tokens: %s", exc.message)
