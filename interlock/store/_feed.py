"""The change feed: who hears that a revision committed.

:class:`Subscribers` holds the callbacks and calls each with a revision number, isolating
them from each other's exceptions. On SQLite the store calls it itself after each commit. On
PostgreSQL every write runs ``pg_notify(channel, revision)`` inside its transaction and a
:class:`PgListener` thread (one dedicated connection per store) turns the notifications into
calls, so every replica hears every replica's writes. After losing its connection the listener
reconnects and reports the current revision once, so a subscriber never misses that something
changed while it was away.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

Callback = Callable[[int], None]


class Subscribers:
    """A thread-safe set of revision callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callback] = {}
        self._next_key = 0

    def add(self, callback: Callback) -> Callable[[], None]:
        """Register ``callback``; returns a function that unregisters it (idempotent)."""
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._callbacks[key] = callback

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks.pop(key, None)

        return unsubscribe

    def notify(self, revision: int) -> None:
        """Call every callback with ``revision``; one that raises is logged and skipped."""
        with self._lock:
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            try:
                callback(revision)
            except Exception:
                log.exception("change-feed subscriber %r failed on revision %d", callback, revision)


class PgListener:
    """A thread that LISTENs on ``channel`` and passes each revision to ``on_revision``.

    ``connect`` opens a new psycopg connection (to the store's database and schema).
    :meth:`start` connects and LISTENs before returning, so every write committed after it
    returns is heard; it raises ``psycopg.Error`` when the database cannot be reached.
    """

    RETRY_MIN_S = 0.2
    RETRY_MAX_S = 5.0

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        channel: str,
        on_revision: Callback,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_revision = on_revision
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(
            target=self._run, name=f"interlock-store-listener[{channel}]", daemon=True
        )
        self._conn: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        self._conn = self._listen()
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the listening thread is alive (it reconnects by itself while it is)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread and close its connection; returns when the thread has ended."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join()
        self._close_conn()
        self._wake_r.close()
        self._wake_w.close()

    def _listen(self) -> psycopg.Connection[Any]:
        conn = self._connect()
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("closing the listener connection failed", exc_info=True)

    def _run(self) -> None:
        delay = self.RETRY_MIN_S
        while not self._stop.is_set():
            try:
                if self._conn is None:
                    self._conn = self._listen()
                    # Writes may have committed while we were not listening.
                    row = self._conn.execute("SELECT revision FROM mesh WHERE id = 1").fetchone()
                    if row is not None:
                        self._on_revision(int(row[0]))
                    log.info("change feed reconnected on channel %s", self._channel)
                delay = self.RETRY_MIN_S
                self._wait_and_dispatch(self._conn)
            except Exception as e:  # never end the feed: psycopg, socket, a bad row
                if self._stop.is_set():
                    break
                log.warning("change feed lost its connection (%s); retrying in %.1fs", e, delay)
                self._close_conn()
                self._stop.wait(delay)
                delay = min(delay * 2, self.RETRY_MAX_S)

    def _wait_and_dispatch(self, conn: psycopg.Connection[Any]) -> None:
        """Deliver what has arrived (including what psycopg buffered while running other
        statements), then sleep until the socket or the stop signal wakes us."""
        for notify in conn.notifies(timeout=0):
            try:
                revision = int(notify.payload)
            except ValueError:
                log.warning("ignoring a malformed change-feed payload %r", notify.payload)
                continue
            self._on_revision(revision)
        select.select([conn.fileno(), self._wake_r.fileno()], [], [])
