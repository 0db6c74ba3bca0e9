"""Concurrent writers: revisions strictly increase with no gaps, and nobody deadlocks."""

from __future__ import annotations

import threading
from collections.abc import Callable

from interlock.model import Instance, Service
from interlock.store import Change, Store

THREADS = 4
WRITES = 15


def run_threads(count: int, work: Callable[[int], None]) -> None:
    failures: list[BaseException] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def carriers(store: Store) -> dict[str, int]:
    """Every change's name → the revision that carries it; asserts that revisions 1 to the
    current one all committed (no gaps)."""
    carried: dict[str, int] = {}
    for rev in range(1, store.revision() + 1):
        for change in store.get_revision(rev).changes:
            carried[change.name] = rev
    return carried


def test_concurrent_writers_get_gapless_revisions_that_carry_their_writes(store: Store) -> None:
    """Concurrent writes may share a revision (group commit); each result names the revision
    that carries its change, and no revision number is skipped."""
    store.put_service(Service("b", port=8080))
    results: dict[str, int] = {}
    lock = threading.Lock()

    def work(n: int) -> None:
        for k in range(WRITES):
            result = store.put_instance(Instance("b", f"t{n}-{k}", "127.0.0.1", 15000 + k))
            with lock:
                results[f"b/t{n}-{k}"] = result.revision

    run_threads(THREADS, work)

    total = THREADS * WRITES
    assert 2 <= store.revision() <= total + 1
    assert carriers(store) == {"b": 1, **results}
    assert len(store.list_instances("b")) == total
    assert all(
        c == Change("Instance", c.name, "upsert")
        for rev in range(2, store.revision() + 1)
        for c in store.get_revision(rev).changes
    )


def test_concurrent_identical_puts_make_one_revision(store: Store) -> None:
    results = []
    lock = threading.Lock()

    def work(_n: int) -> None:
        result = store.put_service(Service("b", port=8080))
        with lock:
            results.append(result)

    run_threads(THREADS, work)

    assert sorted(r.created for r in results) == [False] * (THREADS - 1) + [True]
    assert {r.revision for r in results} == {1}
    assert store.revision() == 1


def test_two_stores_on_one_database_share_one_revision_sequence(db_url: str) -> None:
    first, second = Store.open(db_url), Store.open(db_url)
    try:
        results: dict[str, int] = {}
        lock = threading.Lock()

        def work(n: int) -> None:
            replica = (first, second)[n % 2]
            for k in range(WRITES):
                rev = replica.put_service(Service(f"s{n}-{k}", port=8080)).revision
                with lock:
                    results[f"s{n}-{k}"] = rev

        run_threads(THREADS, work)

        assert first.revision() == second.revision() <= THREADS * WRITES
        assert carriers(first) == results
        assert first.load_state().services == second.load_state().services
    finally:
        first.close()
        second.close()
