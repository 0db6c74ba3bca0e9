"""Group commit: writes that arrive while another commits share one transaction and one
revision; each keeps its own result and its own error; nothing is lost or half-applied.

To make a batch deterministic, :func:`held_writer` keeps the store's writer busy (as a long
commit would) until the writes under test are all queued behind it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from interlock.model import Instance, Service
from interlock.model.errors import Conflict, InvalidInput, NotFound, Unavailable
from interlock.store import Change, Store, WriteResult
from interlock.store._batch import Write
from tests.store.test_feed import Heard

WAIT_S = 20.0


@contextlib.contextmanager
def held_writer(store: Store, queued: int) -> Iterator[None]:
    """Hold the writer until ``queued`` more writes wait behind it, then let them go (the
    writes themselves are started inside the block, on other threads)."""
    holding, release = threading.Event(), threading.Event()

    def hold(_w: Write) -> Callable[[int], None]:
        holding.set()
        release.wait(WAIT_S)
        return lambda _revision: None

    held = store._group.submit(hold)
    try:
        assert holding.wait(WAIT_S)  # the writer is in the hold, not draining the queue
        yield
        deadline = time.monotonic() + WAIT_S
        while store._group._queue.qsize() < queued:
            assert time.monotonic() < deadline, "the writes never queued"
            time.sleep(0.005)
    finally:
        release.set()
    held.result(WAIT_S)


def in_threads(pool: ThreadPoolExecutor, calls: list[Callable[[], Any]]) -> list[Future[Any]]:
    return [pool.submit(call) for call in calls]


def outcome(future: Future[Any]) -> Any:
    """The result, or the exception, of one write."""
    try:
        return future.result(WAIT_S)
    except Exception as e:
        return e


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=40) as executor:
        yield executor


def test_concurrent_registrations_share_one_revision_with_their_own_results(
    store: Store, pool: ThreadPoolExecutor
) -> None:
    store.clock = lambda: 0.0  # registrations are healthy since then: results compare whole
    store.put_service(Service("b", port=8080))
    store.put_instance(Instance("b", "old", "10.0.0.1", 1))  # revision 2
    new = [Instance("b", f"b-{n}", f"10.0.1.{n + 1}", 8000 + n) for n in range(30)]

    with held_writer(store, queued=len(new) + 1):
        futures = in_threads(pool, [lambda i=i: store.put_instance(i) for i in new])
        same = pool.submit(store.put_instance, Instance("b", "old", "10.0.0.1", 1))

    results = [f.result(WAIT_S) for f in futures]
    assert results == [WriteResult(i, 3, created=True, changed=True) for i in new]
    # A write that changes nothing, in the same batch, is visible at the batch's revision.
    assert same.result(WAIT_S) == WriteResult(
        Instance("b", "old", "10.0.0.1", 1), 3, created=False, changed=False
    )
    assert store.revision() == 3
    changes = store.get_revision(3).changes
    assert sorted(changes) == sorted(
        Change("Instance", f"b/{i.instance_id}", "upsert") for i in new
    )
    stored = store.list_instances("b")
    assert stored == sorted(
        [*new, Instance("b", "old", "10.0.0.1", 1)], key=lambda i: i.instance_id
    )


def test_a_failing_write_gets_its_own_error_and_the_rest_of_its_batch_lands(
    store: Store, pool: ThreadPoolExecutor
) -> None:
    store.clock = lambda: 0.0  # registrations are healthy since then: instances compare whole
    store.put_service(Service("b", port=8080))
    store.put_service(Service("busy", port=8080))
    store.put_instance(Instance("busy", "busy-1", "10.0.0.9", 1))  # revision 3
    good = [Instance("b", f"b-{n}", "10.0.0.1", 8000 + n) for n in range(6)]
    bad: list[Callable[[], Any]] = [
        lambda: store.put_instance(Instance("missing", "m-1", "10.0.0.2", 1)),
        lambda: store.delete_service("busy"),  # has an instance: 409, deletes nothing
        lambda: store.delete_instance("b", "never-registered"),
    ]

    with held_writer(store, queued=len(good) + len(bad)):
        oks = in_threads(pool, [lambda i=i: store.put_instance(i) for i in good[:3]])
        errors = in_threads(pool, bad)
        oks += in_threads(pool, [lambda i=i: store.put_instance(i) for i in good[3:]])

    missing, busy, unknown = (outcome(f) for f in errors)
    assert isinstance(missing, NotFound) and [e.field for e in missing.errors] == ["service"]
    assert "'missing'" in missing.message
    assert isinstance(busy, Conflict) and "still has 1 instance" in busy.message
    assert isinstance(unknown, NotFound) and [e.field for e in unknown.errors] == ["instance_id"]
    assert [f.result(WAIT_S).revision for f in oks] == [4] * len(good)
    assert store.revision() == 4
    assert store.list_instances("b") == good
    assert store.list_instances("busy") == [Instance("busy", "busy-1", "10.0.0.9", 1)]
    assert len(store.get_revision(4).changes) == len(good)


def test_a_write_that_fails_midway_leaves_nothing_behind(
    store: Store, pool: ThreadPoolExecutor
) -> None:
    """A write that already changed rows when it failed is rolled back to its savepoint: the
    writes before and after it in the batch land, none of its rows do."""
    store.put_service(Service("b", port=8080))

    half = "INSERT INTO services (name, namespace, protocol, port) VALUES ('half', 'default', "
    half += "'http', 1)"

    def half_then_fail(w: Write) -> Callable[[int], None]:
        w.conn.execute(sa.text(half))
        w.changes.append(Change("Service", "half", "upsert"))
        # The same primary key again: an integrity error from the database.
        w.conn.execute(sa.text(half))
        raise AssertionError("unreachable")

    with held_writer(store, queued=3):
        before = pool.submit(store.put_instance, Instance("b", "b-1", "10.0.0.1", 1))
        time.sleep(0.05)  # keep the order: before, failing, after
        failing = store._group.submit(half_then_fail)
        time.sleep(0.05)
        after = pool.submit(store.put_instance, Instance("b", "b-2", "10.0.0.1", 1))

    assert isinstance(outcome(failing), Conflict)
    assert before.result(WAIT_S).revision == after.result(WAIT_S).revision == 2
    assert [s.name for s in store.list_services()] == ["b"]
    assert store.get_revision(2).changes == (
        Change("Instance", "b/b-1", "upsert"),
        Change("Instance", "b/b-2", "upsert"),
    )


def test_writes_in_one_batch_see_each_other_in_order(
    store: Store, pool: ThreadPoolExecutor
) -> None:
    """Within a batch the writes run one after the other, as if committed separately."""
    with held_writer(store, queued=3):
        service = pool.submit(store.put_service, Service("b", port=8080))
        time.sleep(0.05)
        instance = pool.submit(store.put_instance, Instance("b", "b-1", "10.0.0.1", 1))
        time.sleep(0.05)
        refused = pool.submit(store.delete_service, "b")

    assert service.result(WAIT_S).revision == instance.result(WAIT_S).revision == 1
    assert isinstance(outcome(refused), Conflict)
    assert store.get_revision(1).changes == (
        Change("Service", "b", "upsert"),
        Change("Instance", "b/b-1", "upsert"),
    )


def test_a_batch_that_changes_nothing_makes_no_revision(
    store: Store, pool: ThreadPoolExecutor
) -> None:
    store.put_service(Service("b", port=8080))
    with held_writer(store, queued=5):
        same = in_threads(pool, [lambda: store.put_service(Service("b", port=8080))] * 5)
    assert {f.result(WAIT_S).revision for f in same} == {1}
    assert not any(f.result(WAIT_S).changed for f in same)
    assert store.revision() == 1


def test_the_change_feed_hears_a_batch_once_after_it_committed(
    store: Store, pool: ThreadPoolExecutor
) -> None:
    store.put_service(Service("b", port=8080))
    heard = Heard()
    seen: list[tuple[int, int]] = []

    def on_revision(revision: int) -> None:
        seen.append((revision, len(store.list_instances("b"))))
        heard(revision)

    store.subscribe(on_revision)

    with held_writer(store, queued=10):
        futures = in_threads(
            pool,
            [
                lambda n=n: store.put_instance(Instance("b", f"b-{n}", "10.0.0.1", 1))
                for n in range(10)
            ],
        )
    assert {f.result(WAIT_S).revision for f in futures} == {2}

    heard.wait_for(2)
    # (PostgreSQL's feed may still deliver revision 1, committed before we subscribed.)
    # Heard once, and when the feed speaks the whole batch is readable.
    assert [entry for entry in seen if entry[0] == 2] == [(2, 10)]


def test_many_threads_lose_nothing_and_revisions_stay_gapless(
    store: Store, pool: ThreadPoolExecutor
) -> None:
    store.put_service(Service("b", port=8080))
    count = 400
    futures = in_threads(
        pool,
        [
            lambda n=n: store.put_instance(Instance("b", f"b-{n}", "10.0.0.1", 1 + n))
            for n in range(count)
        ],
    )
    results = [f.result(WAIT_S) for f in futures]

    assert all(r.created and r.changed for r in results)
    last = store.revision()
    assert 2 <= last <= count + 1
    carried: dict[str, int] = {}
    for rev in range(2, last + 1):  # every revision committed, each with its writes
        for change in store.get_revision(rev).changes:
            carried[change.name] = rev
    assert carried == {f"b/b-{n}": r.revision for n, r in enumerate(results)}
    assert len(store.list_instances("b")) == count


def test_an_invalid_value_is_refused_before_it_joins_a_batch(store: Store) -> None:
    with pytest.raises(InvalidInput):
        store.put_instance(Instance("b", "b-1", "not an address", 1))
    assert store.revision() == 0


def test_writes_after_close_are_refused_and_queued_ones_finish(
    db_url: str, pool: ThreadPoolExecutor
) -> None:
    store = Store.open(db_url)
    store.put_service(Service("b", port=8080))
    with held_writer(store, queued=5):
        futures = in_threads(
            pool,
            [
                lambda n=n: store.put_instance(Instance("b", f"b-{n}", "10.0.0.1", 1))
                for n in range(5)
            ],
        )
    store.close()
    assert [f.result(WAIT_S).revision for f in futures] == [2] * 5
    with pytest.raises(Unavailable):
        store.put_service(Service("c", port=8080))


def test_a_feed_callback_may_write(tmp_path: Any) -> None:
    """On SQLite the change feed runs on the writer: a callback that writes is not stuck
    behind itself."""
    with Store.open(f"sqlite:///{tmp_path}/mesh.db") as store:
        done: list[int] = []

        def on_revision(revision: int) -> None:
            if revision == 1:
                done.append(store.put_service(Service("echo", port=1)).revision)

        store.subscribe(on_revision)
        store.put_service(Service("b", port=8080))
        assert done == [2]


@pytest.mark.postgres
def test_a_write_after_the_writers_connection_dropped_succeeds(pg_url: str) -> None:
    """The writer keeps its connection between batches; if the database closed it meanwhile
    (a restart, an idle timeout), the next write runs on a fresh one instead of failing."""
    with Store.open(pg_url) as store:
        store.put_service(Service("b", port=8080))
        conn = store._group._conn
        assert conn is not None
        pid = conn.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as c:
                c.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        finally:
            admin.dispose()

        store.clock = lambda: 0.0  # health.since: the instance compares whole
        result = store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))

        assert result.revision == 2
        assert store.list_instances("b") == [Instance("b", "b-1", "10.0.0.1", 1)]
