"""What one gRPC client may cost the control plane, above all before it is authenticated:
shared by the xDS server and the access-log receiver, which serve on the same port."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]


@dataclass(frozen=True)
class StreamLimits:
    """What one client may cost the server, above all before it is authenticated.

    ``first_request_timeout``: seconds a new stream may take to send its first request (a
    client that opens streams and never sends holds nothing for long). ``max_streams``: open
    RPCs per process (xDS and access logs; more are refused with RESOURCE_EXHAUSTED).
    ``max_streams_per_connection``: concurrent streams per HTTP/2 connection (Envoy opens a
    handful on its xDS connection). ``max_first_request``: bytes of a stream's first message,
    read before the stream is authenticated. ``max_request``: bytes of any later message.
    """

    first_request_timeout: float = 10.0
    max_streams: int = 20_000
    max_streams_per_connection: int = 100
    max_first_request: int = 1024 * 1024
    max_request: int = 16 * 1024 * 1024

    def grpc_options(self) -> list[tuple[str, int]]:
        """The gRPC server options these limits set."""
        return [
            ("grpc.max_concurrent_streams", self.max_streams_per_connection),
            ("grpc.max_receive_message_length", max(self.max_request, self.max_first_request)),
        ]


class _Waiting:
    __slots__ = ("due", "expired", "task")

    def __init__(self, task: asyncio.Task[Any] | None, due: float) -> None:
        self.task = task
        self.due = due
        self.expired = False


class FirstRequests:
    """The streams still waiting for their first request, and their deadline.

    One timer for all of them, not one each: every stream waits the same time, so they expire
    in the order they opened, and one sweeper task sleeps until the oldest is due. A stream
    costs an entry in a queue (dropped once it is its turn), which is what lets a flood of
    streams cost little.
    """

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._sweeper: asyncio.Task[None] | None = None

    async def first(
        self,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[Any, Any],
        what: str,
    ) -> bytes | None:
        """The first message of a stream (serialized); None when the client ended the stream
        without one. A client that sends nothing within ``first_request_timeout``, or more
        than ``max_first_request`` bytes, ends with DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED
        (``context.abort`` raises)."""
        limits = self.limits
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        waiting = _Waiting(task, time.monotonic() + limits.first_request_timeout)
        self._queue.append(waiting)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep(), name="interlock-first-requests")
        try:
            raw = await anext(requests)
        except StopAsyncIteration:
            return None
        except asyncio.CancelledError:
            if not waiting.expired or task is None:
                raise
            task.uncancel()
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no {what} request within {limits.first_request_timeout:g} s of opening "
                "the stream",
            )
        finally:
            waiting.task = None
        if len(raw) > limits.max_first_request:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the first {what} request is {len(raw)} bytes; at most "
                f"{limits.max_first_request} before the stream is authenticated",
            )
        return raw

    async def _sweep(self) -> None:
        queue = self._queue
        while queue:
            head = queue[0]
            if head.task is None:
                queue.popleft()
                continue
            wait = head.due - time.monotonic()  # not loop.time(): uvloop's lags a busy loop
            if wait > 0:
                await asyncio.sleep(wait + 0.005)
                continue
            queue.popleft()
            head.expired = True
            head.task.cancel()
            head.task = None


__all__ = ["FirstRequests", "StreamLimits"]
