"""Group commit: concurrent writes share one transaction, one revision and one commit.

Every write of a :class:`~interlock.store.Store` is an *operation*: a function that runs inside
a write transaction (reading and writing through ``write.conn`` and listing what it changed in
``write.changes``) and returns a *finisher* that turns the revision that carries the write into
the caller's result. :class:`GroupCommit` runs operations on one writer thread per store. The
operations queued while a transaction is being written and committed form the next batch:

* one transaction (one ``BEGIN IMMEDIATE`` / one lock of the ``mesh`` row), one revision for
  the whole batch (its changes recorded in the order the writes ran), one commit (one fsync,
  one ``NOTIFY``) and one change-feed call;
* each write keeps its own outcome: a batch first runs without savepoints; if a write in it
  raises, that transaction is rolled back and the batch runs again with each write inside
  its own ``SAVEPOINT``, so the failing one is rolled back to it and gets its own error while
  the others commit; nothing of a failed write is ever applied;
* a batch holds at most :data:`MAX_BATCH` writes; if the database fails the batch itself
  (the connection drops, the commit fails) every write in it gets the error;
* results are handed back only after the commit, so a revision a caller sees has committed.
  Every write of a batch that committed changes gets that batch's revision (a write that
  changed nothing gets it too: it is the first revision at which its outcome is visible); in
  a batch that changed nothing every write gets the current revision.

The writer never waits for more work: at low load a write is a batch of one with no added
latency, under load the batches grow by themselves with the number of writes that arrive
during one commit. Waiters block on a :class:`concurrent.futures.Future` (or await it), so an
event loop can hand a write over without a thread of its own.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.engine import Connection

from interlock.model.errors import InterlockError, Unavailable
from interlock.store import _sql
from interlock.store._engine import (
    DATABASE_ERRORS,
    INTEGRITY_ERRORS,
    Database,
    conflict,
    unavailable,
)
from interlock.store.records import Change

log = logging.getLogger(__name__)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

#: At most this many writes share one transaction (bounds the time the write lock is held).
MAX_BATCH = 256
_SAVEPOINT = "interlock_write"


@dataclass
class Write:
    """What an operation writes through: ``conn`` (inside the batch's transaction, in the
    operation's savepoint) and ``revision``, the committed revision the batch started from (the
    batch's new revision, if it changes anything, is ``revision + 1``). The operation appends
    what it changed to ``changes``."""

    conn: Connection
    revision: int
    changes: list[Change] = field(default_factory=list)


Finish = Callable[[int], R]
Operation = Callable[[Write], Callable[[int], R]]


class WriteRunner(Protocol):
    """Runs one operation in a (possibly shared) write transaction and returns its result."""

    def __call__(self, op: Operation[R], /) -> R: ...


class _Job(Generic[R_co]):
    __slots__ = ("finish", "future", "op")

    def __init__(self, op: Operation[Any]) -> None:
        self.op = op
        self.future: Future[Any] = Future()
        self.finish: Callable[[int], Any] | None = None


_STOP: Any = object()


class GroupCommit:
    """The writer thread of one store (started on the first write). Thread-safe."""

    def __init__(self, db: Database, channel: str | None, committed: Callable[[int], None]) -> None:
        """``channel``: PostgreSQL's NOTIFY channel (None on SQLite); ``committed(revision)`` is
        called on the writer thread after each commit that created a revision."""
        self._db = db
        self._channel = channel
        self._committed = committed
        self._queue: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._conn: Connection | None = None  # the writer's own, kept between batches

    def submit(self, op: Operation[R]) -> Future[R]:
        """Queue ``op``; the future resolves (to the finisher's result, or to the operation's
        own :class:`InterlockError`) once its batch has committed or failed."""
        job: _Job[R] = _Job(op)
        if threading.current_thread() is self._thread:
            # A change-feed callback writing from the writer thread: run it at once, alone.
            self._run([job])
            return job.future
        with self._lock:
            if self._closed:
                raise Unavailable("the store is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="interlock-store-writer", daemon=True
                )
                self._thread.start()
            self._queue.put(job)
        return job.future

    def run(self, op: Operation[R]) -> R:
        """Run ``op`` and wait for its result (or raise its error)."""
        return self.submit(op).result()

    def close(self) -> None:
        """Finish the writes queued so far, then stop the writer thread. Idempotent."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(_STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # --- the writer thread ----------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [job for job in batch if job is not _STOP]
            if batch:
                try:
                    self._run(batch)
                except BaseException:  # never leave a waiter hanging; keep writing
                    log.exception("the store's writer failed a batch")
        self._disconnect()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the writer's connection failed", exc_info=True)

    def _run(self, batch: list[_Job[Any]]) -> None:
        jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        landed: list[_Job[Any]] = []
        try:
            reused = self._conn is not None
            try:
                revision, changed = self._transaction(jobs, landed)
            except Unavailable:
                if not reused or landed:
                    raise
                # The kept connection failed before anything could commit (the server
                # restarted, a proxy closed it while idle): once more on a fresh one.
                self._disconnect()
                jobs = [job for job in jobs if not job.future.done()]
                revision, changed = self._transaction(jobs, landed)
        except InterlockError as e:
            if isinstance(e, Unavailable):  # the connection may be broken: take a fresh one
                self._disconnect()
            # Nothing committed. Alone, the write gets its own error; in a batch, every write
            # that did not fail on its own gets a copy (callers may rewrite their errors).
            waiting = [job for job in jobs if not job.future.done()]
            for job in waiting:
                own = e if len(waiting) == 1 else type(e)(e.message, errors=e.errors)
                job.future.set_exception(own)
            return
        except BaseException as e:
            self._disconnect()
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(Unavailable(f"the write failed: {e!r}"))
            raise
        if changed:
            self._committed(revision)
        for job in landed:
            assert job.finish is not None
            try:
                job.future.set_result(job.finish(revision))
            except BaseException as e:
                job.future.set_exception(e)

    def _transaction(self, jobs: list[_Job[Any]], landed: list[_Job[Any]]) -> tuple[int, bool]:
        """Run ``jobs`` in one transaction; those that succeed are appended to ``landed``,
        those that fail get their error at once. Returns (revision, whether it is new).

        A batch runs first without savepoints (the common case: every write succeeds); if one
        fails, that transaction is rolled back and the batch runs again, each write in its own
        savepoint. (Operations only read and write through their connection, so running one
        again is the same as running it once.)"""
        if len(jobs) > 1:
            try:
                return self._attempt(jobs, landed, savepoints=False)
            except _Redo:
                landed.clear()
        return self._attempt(jobs, landed, savepoints=len(jobs) > 1)

    def _attempt(
        self, jobs: list[_Job[Any]], landed: list[_Job[Any]], *, savepoints: bool
    ) -> tuple[int, bool]:
        if self._conn is None:
            self._conn = self._db.connect_writer()
        with self._db.write_on(self._conn) as conn:
            base = _sql.lock_revision(conn)
            changes: list[Change] = []
            for job in jobs:
                write = Write(conn, base)
                if savepoints:
                    _sql.driver_execute(conn, f"SAVEPOINT {_SAVEPOINT}")
                try:
                    job.finish = job.op(write)
                except Exception as e:
                    if not savepoints:
                        if len(jobs) > 1:
                            raise _Redo from e  # rolls this transaction back
                        raise  # alone in its transaction: rolling it back is the same
                    # Fails the whole batch (as Unavailable) if the connection is broken.
                    _sql.driver_execute(conn, f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                    _sql.driver_execute(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}")
                    job.future.set_exception(_own_error(e))
                    continue
                if savepoints:
                    _sql.driver_execute(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}")
                changes.extend(write.changes)
                landed.append(job)
            if changes:
                return _sql.record_revision(conn, base, changes, self._channel), True
            return base, False


class _Redo(Exception):
    """A write of a batch run without savepoints failed: run the batch again with them."""


def _own_error(error: Exception) -> Exception:
    """The error one write's caller gets: the model's exception tree for database errors."""
    if isinstance(error, INTEGRITY_ERRORS):
        return conflict(error)
    if isinstance(error, DATABASE_ERRORS):
        return unavailable(error)
    return error
