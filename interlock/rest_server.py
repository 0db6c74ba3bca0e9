"""The REST API's HTTP server: uvicorn, with the limits a listener open to clients needs.

- **Header read timeout** (``ApiLimits.header_timeout``): a connection must complete its TLS
  handshake and each request's headers within it (counted from the connection, or from the
  previous response), else it is closed. A slowloris client that trickles headers holds its
  connection for that long, not forever.
- **Connections** (``ApiLimits.max_connections``): the server accepts at most this many at a
  time (handshaking or open; every sidecar holds one, its CA-bundle long poll). The others
  wait in the kernel's listen backlog, where they hold no file descriptor of the process; so
  the API can never take the descriptors the xDS server needs to accept streams, however many
  clients connect. The effective limit is also at most half the process's descriptor limit
  (``RLIMIT_NOFILE``): the other half is held in reserve for xDS, the store and the CA.
- **Concurrency**: one request at a time per connection, so at most ``max_connections``
  requests run at once; uvicorn answers 503 past that.

Accepting is done here rather than by uvicorn's ``create_server``: a full server must stop
*accepting* (a connection accepted only to be closed still costs a descriptor, and over TLS
its handshake), and the TLS handshake needs a timeout of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("interlock.api")


@dataclass(frozen=True)
class ApiLimits:
    """See the module docstring."""

    header_timeout: float = 10.0
    max_connections: int = 10_000

    def effective_connections(self) -> int:
        """``max_connections``, at most half the process's file-descriptor limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft // 2))


class _Slots:
    """Connections held: open (``live``) and accepted but still handshaking."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live = 0
        self.handshaking = 0
        self.room = asyncio.Event()

    @property
    def full(self) -> bool:
        return self.live + self.handshaking >= self.limit

    def freed(self) -> None:
        self.room.set()


class _GuardedHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a header read timeout, counted in ``slots``."""

    slots: _Slots
    header_timeout: float

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self.slots.live += 1
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.slots.live -= 1
        self.slots.freed()
        self._disarm()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's headers are due (unless a pipelined request already started).
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        # abort, not close: a graceful TLS close waits (up to 30 s) for the slow client's
        # close_notify, holding the connection's slot and descriptor meanwhile.
        self._header_timer = None
        self.transport.abort()


class ApiServer(uvicorn.Server):
    """uvicorn, embedded (no signal handling of its own: the composition root owns signals),
    serving the sockets it is given within ``limits``."""

    def __init__(self, config: uvicorn.Config, limits: ApiLimits) -> None:
        super().__init__(config)
        self.limits = limits
        self.slots = _Slots(limits.effective_connections())
        self._acceptors: list[asyncio.Task[None]] = []
        self._connecting: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        config = self.config
        limits = self.limits
        slots = self.slots

        class Protocol(_GuardedHttp):
            pass

        Protocol.slots = slots
        Protocol.header_timeout = limits.header_timeout

        def create_protocol() -> asyncio.Protocol:
            return Protocol(
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        self.servers = []
        for sock in sockets or ():
            sock.setblocking(False)
            task = asyncio.create_task(
                self._accept(sock, create_protocol), name="interlock-api-accept"
            )
            self._acceptors.append(task)
        self.started = True

    async def _accept(self, sock: socket.socket, create_protocol: Any) -> None:
        loop = asyncio.get_running_loop()
        slots = self.slots
        while True:
            while slots.full:
                slots.room.clear()
                await slots.room.wait()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and the like: wait for descriptors to come back
                log.warning("the REST API cannot accept a connection: %s", exc.strerror or exc)
                await asyncio.sleep(0.1)
                continue
            slots.handshaking += 1
            task = asyncio.create_task(self._connect(conn, create_protocol))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket, create_protocol: Any) -> None:
        loop = asyncio.get_running_loop()
        context = self.config.ssl
        try:
            await loop.connect_accepted_socket(
                create_protocol,
                conn,
                ssl=context,
                ssl_handshake_timeout=self.limits.header_timeout if context is not None else None,
            )
        except Exception as exc:  # a failed or too slow TLS handshake: the socket is closed
            log.debug("REST API connection ended before it opened: %s", exc)
            if conn.fileno() != -1:
                conn.close()
        finally:
            self.slots.handshaking -= 1
            self.slots.freed()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for task in (*self._acceptors, *self._connecting):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._acceptors, *self._connecting, return_exceptions=True)
        await super().shutdown(sockets=None)


def raise_descriptor_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit (as Go does at start:
    a server holding thousands of streams needs them); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = (1 << 20) if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


__all__ = ["ApiLimits", "ApiServer", "raise_descriptor_limit"]
