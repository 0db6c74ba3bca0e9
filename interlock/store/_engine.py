"""The database connection and the store's transaction discipline.

* SQLite: WAL, a busy timeout, foreign keys on; SQLAlchemy (not the sqlite3 driver) emits
  ``BEGIN`` — ``BEGIN IMMEDIATE`` for writes, so concurrent writers queue on the write lock
  instead of deadlocking on a lock upgrade. An in-memory database (``sqlite://``) is one shared
  connection, so every transaction on it is serialized by a lock.
* PostgreSQL: writes run at READ COMMITTED and serialize on the ``mesh`` row; reads run at
  REPEATABLE READ so every read of one transaction sees one snapshot.
* Every SQLAlchemy error leaving a transaction becomes an :class:`Unavailable` (or a
  :class:`Conflict` for an integrity violation); nothing raw escapes the store.
* Every wait on the database is bounded by ``timeout`` (:data:`DEFAULT_TIMEOUT_S`): SQLite's
  busy timeout; on PostgreSQL the connect timeout, the server's ``statement_timeout`` and
  ``lock_timeout``, and on the client a deadline on every round trip (a server that stops
  answering — paused, or behind a stalled network — would otherwise hold a thread forever:
  the kernel still acknowledges what is sent). A connection whose round trip passed the
  deadline is closed, so the pool never hands it out again. A database that does not answer
  is an :class:`Unavailable` within about twice ``timeout``, never a hung request.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from interlock.model.errors import Conflict, FieldError, InvalidInput, Unavailable

log = logging.getLogger(__name__)

_WRITE_OPTION = "interlock_write"
#: What SQLAlchemy and the drivers (for statements run on their connections directly: the
#: store's hot path) raise for an integrity violation, and for any database error.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    exc.IntegrityError,
    sqlite3.IntegrityError,
    psycopg.IntegrityError,
)
DATABASE_ERRORS: tuple[type[Exception], ...] = (exc.SQLAlchemyError, sqlite3.Error, psycopg.Error)
DEFAULT_TIMEOUT_S = 10.0
"""How long one wait on the database may take (``interlock server --db-timeout``)."""
MIGRATION_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite schema migration waits for another process's lock (replicas starting
together)."""
#: libpq's (and psycopg's) smallest connect timeout.
_MIN_CONNECT_TIMEOUT_S = 2
#: The client's deadline on a round trip is the server's statement timeout plus this, so
#: that a server that is there answers first, with its own error.
_CLIENT_MARGIN_S = 1.0


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every round trip has a deadline (``bound`` seconds): past
    it the connection is closed and the wait raises ``psycopg.OperationalError``."""

    bound: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        limit = timeout if timeout is not None else self.bound
        try:
            return super().wait(gen, interval, limit)
        except psycopg.OperationalError as e:
            if type(e).__name__ != "_WaitTimeout":  # psycopg's private "wait timeout expired"
                raise
            # The reply may still come: the connection is in an unknown state.
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"no answer from the database within {limit:g} s"
            ) from None


def normalize_url(url: str) -> URL:
    """Parse a database URL; ``postgres://`` and ``postgresql://`` mean psycopg 3.

    Raises :class:`InvalidInput` for anything but SQLite or PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise _bad_url(
            "cannot parse the database URL (expected sqlite:///… or postgresql://…)"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed
    raise _bad_url(
        f"unsupported database {parsed.drivername!r}: use sqlite:///path.db or "
        "postgresql+psycopg://user@host/db"
    )


def _bad_url(message: str) -> InvalidInput:
    return InvalidInput(message, errors=(FieldError("database_url", message),))


def _reason(error: BaseException) -> str:
    """The first line of the driver's message: no SQL text, no parameters."""
    cause = getattr(error, "orig", None) or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def unavailable(error: BaseException) -> Unavailable:
    """An :class:`Unavailable` that says why, without SQL text or parameters."""
    return Unavailable(f"the database is unavailable: {_reason(error)}")


def conflict(error: BaseException) -> Conflict:
    """A :class:`Conflict` for an integrity violation, without SQL text or parameters."""
    return Conflict(f"the write conflicts with stored data: {_reason(error)}")


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Turn SQLAlchemy errors raised inside into the model's exception tree."""
    try:
        yield
    except INTEGRITY_ERRORS as e:
        raise conflict(e) from e
    except DATABASE_ERRORS as e:
        log.warning("database error (%s): %s", type(e).__name__, _reason(e))
        raise unavailable(e) from e


def _enable_wal(cursor: Any, timeout: float) -> None:
    """Switch the database to WAL (persistent, so usually already done).

    The switch needs the database to itself, and SQLite reports "locked" at once, without
    waiting for the busy timeout, when another connection is busy — as when several processes
    create a database together — so retry until the busy timeout has passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Database:
    """One engine and its transactions. Thread-safe; close with :meth:`dispose`."""

    def __init__(self, url: URL, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout > 0:
            raise InvalidInput(
                "the database timeout must be positive",
                errors=(FieldError("db_timeout", "must be positive"),),
            )
        self.url = url
        self.timeout = timeout
        self.dialect = url.get_backend_name()
        self._closed = False
        self._serial: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.dialect == "sqlite":
            self.engine = self._sqlite_engine(url)
        else:
            self.engine = self._postgresql_engine(url)

    def connect_params(self) -> dict[str, Any]:
        """psycopg connection parameters that bound a PostgreSQL connection's waits."""
        ms = max(1, int(self.timeout * 1000))
        options = f"-c statement_timeout={ms} -c lock_timeout={ms}"
        given = self.url.query.get("options")
        if isinstance(given, str) and given:
            options = f"{given} {options}"
        return {
            "connect_timeout": max(_MIN_CONNECT_TIMEOUT_S, math.ceil(self.timeout)),
            "options": options,
        }

    def _postgresql_engine(self, url: URL) -> Engine:
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=self.connect_params())
        bound = self.timeout + _CLIENT_MARGIN_S

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            conn = BoundedConnection.connect(*cargs, **cparams)
            conn.bound = bound
            return conn

        return engine

    def _sqlite_engine(self, url: URL) -> Engine:
        in_memory = url.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {
            "connect_args": {"timeout": self.timeout, "check_same_thread": False}
        }
        if in_memory:
            kwargs["poolclass"] = StaticPool
            self._serial = threading.RLock()
        engine = sa.create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # The driver must not emit BEGIN itself; the "begin" hook below does.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {max(1, int(self.timeout * 1000))}")
                cursor.execute("PRAGMA foreign_keys = ON")
                if not in_memory:
                    _enable_wal(cursor, self.timeout)
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get(_WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; commits when the block ends, rolls back if it raises."""
        with self._serial, translated_errors():
            self._check_open()
            with self.engine.connect() as conn:
                conn.execution_options(**{_WRITE_OPTION: True})
                with conn.begin():
                    yield conn

    @contextlib.contextmanager
    def write_unbounded(self) -> Iterator[Connection]:
        """:meth:`write` with the waits of a schema migration: on PostgreSQL no statement,
        lock or round-trip timeout (a migration may rewrite a large table, and a replica
        starting beside another waits for its migration's lock); on SQLite a busy timeout of
        at least :data:`MIGRATION_BUSY_TIMEOUT_S`. Connecting is still bounded."""
        with self._serial, translated_errors():
            self._check_open()
            with self.engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                if self.dialect == "postgresql":
                    assert isinstance(raw, BoundedConnection)
                    raw.bound = None
                else:
                    busy = max(self.timeout, MIGRATION_BUSY_TIMEOUT_S)
                    raw.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")  # type: ignore[union-attr]
                try:
                    conn.execution_options(**{_WRITE_OPTION: True})
                    with conn.begin():
                        if self.dialect == "postgresql":
                            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
                            conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
                        yield conn
                finally:
                    if isinstance(raw, BoundedConnection):
                        raw.bound = self.timeout + _CLIENT_MARGIN_S
                    elif raw is not None:
                        ms = max(1, int(self.timeout * 1000))
                        raw.execute(f"PRAGMA busy_timeout = {ms}")

    def connect_writer(self) -> Connection:
        """A connection of its own for a long-lived writer (see :meth:`write_on`); close it
        when done, and after any database error."""
        with translated_errors():
            self._check_open()
            conn = self.engine.connect()
            conn.execution_options(**{_WRITE_OPTION: True})
            return conn

    @contextlib.contextmanager
    def write_on(self, conn: Connection) -> Iterator[Connection]:
        """:meth:`write` on a connection from :meth:`connect_writer`."""
        with self._serial, translated_errors():
            self._check_open()
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """One read transaction in which every statement sees the same snapshot."""
        with self._serial, translated_errors():
            self._check_open()
            with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                with conn.begin():
                    yield conn

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the store is closed")

    def dispose(self) -> None:
        self._closed = True
        self.engine.dispose()
