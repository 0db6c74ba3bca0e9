"""Finding the stored record of a stream's token, at a cost a flood of bad tokens cannot raise.

Every new xDS or access-log stream names its token before anything else is known about it,
so the lookup is the one database read an unauthenticated client can cause. Two rules keep it
from becoming one read per stream:

- Lookups are grouped: while one query runs, the hashes asked for meanwhile wait and go into
  the next one (up to :data:`BATCH` per query), and queries start at most every
  :data:`QUERY_INTERVAL` seconds. A thousand streams presenting bad tokens at once cost a few
  queries, a steady flood at most 100 a second, and the database sees at most one token query
  at a time. A lookup waits at most that interval more than its query.
- A hash found unknown is remembered as unknown for a short while (``negative_ttl``; at most
  ``negative_max`` of them, the oldest forgotten first), so the same bad token presented again
  and again costs no query at all. Tokens are 256 random bits and stored as their hash: a hash
  unknown now is never issued later, so this never refuses a good token.

Known tokens are never cached: every lookup of one reads the database, so a revoked token is
refused by the next stream that presents it, as before (open streams end at the next
revocation check, :mod:`interlock.security.revocation`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping

from interlock.model.identity import Token

BATCH = 500
"""Hashes per query (a bound on the query's size, not on how many wait)."""

QUERY_INTERVAL = 0.01
"""Seconds between the starts of two token queries, at least (the window that groups them)."""

FindMany = Callable[[Collection[str]], Mapping[str, Token]]


class TokenLookup:
    """``await find(hash)``: the stored token with that hash (revoked or not), or None."""

    def __init__(
        self,
        find_many: FindMany,
        *,
        negative_ttl: float = 5.0,
        negative_max: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find_many = find_many
        self.negative_ttl = negative_ttl
        self.negative_max = negative_max
        self._clock = clock
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._waiting: dict[str, asyncio.Future[Token | None]] = {}
        self._querying: dict[str, asyncio.Future[Token | None]] = {}
        self._runner: asyncio.Task[None] | None = None
        #: Queries made, and lookups answered from the unknown-hash memory (for tests, metrics).
        self.queries = 0
        self.remembered = 0

    async def find(self, token_hash: str) -> Token | None:
        """Raises what the store raises (e.g. :class:`~interlock.model.errors.Unavailable`)."""
        expires = self._unknown.get(token_hash)
        if expires is not None:
            if expires > self._clock():
                self.remembered += 1
                return None
            del self._unknown[token_hash]
        future = self._querying.get(token_hash) or self._waiting.get(token_hash)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._waiting[token_hash] = future
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run(), name="interlock-token-lookup")
        # shield: a stream that goes away must not cancel the answer others wait for
        return await asyncio.shield(future)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = -QUERY_INTERVAL
        while self._waiting:
            wait = last + QUERY_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            last = loop.time()
            hashes = list(self._waiting)[:BATCH]
            batch = {h: self._waiting.pop(h) for h in hashes}
            self._querying = batch
            try:
                found = await asyncio.to_thread(self._find_many, hashes)
            except Exception as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._querying = {}
                self.queries += 1
            now = self._clock()
            for token_hash, future in batch.items():
                token = found.get(token_hash)
                if token is None:
                    self._remember_unknown(token_hash, now)
                if not future.done():
                    future.set_result(token)

    def _remember_unknown(self, token_hash: str, now: float) -> None:
        self._unknown[token_hash] = now + self.negative_ttl
        self._unknown.move_to_end(token_hash)
        while len(self._unknown) > self.negative_max:
            self._unknown.popitem(last=False)


def _retrieve(future: asyncio.Future[Token | None]) -> None:
    """Mark an exception as seen: every waiter may have gone (the stream was cut)."""
    if not future.cancelled():
        future.exception()


__all__ = ["BATCH", "TokenLookup"]
