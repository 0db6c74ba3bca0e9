"""Revision records and consistent reads."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from interlock.model import Instance, NotFound, Service, Unavailable
from interlock.store import Change, Store


def test_each_write_records_its_changes(store: Store) -> None:
    before = time.time()
    store.put_service(Service("b", port=8080))
    store.put_instance(Instance("b", "b-1", "127.0.0.1", 15006))
    store.put_instance(Instance("b", "b-2", "127.0.0.1", 15007))
    store.delete_instance("b", "b-2")
    store.delete_service("b", cascade=True)

    infos = [store.get_revision(r) for r in range(1, 6)]

    assert [i.rev for i in infos] == [1, 2, 3, 4, 5]
    assert [i.changes for i in infos] == [
        (Change("Service", "b", "upsert"),),
        (Change("Instance", "b/b-1", "upsert"),),
        (Change("Instance", "b/b-2", "upsert"),),
        (Change("Instance", "b/b-2", "delete"),),
        (Change("Instance", "b/b-1", "delete"), Change("Service", "b", "delete")),
    ]
    assert all(i.committed_at >= before - 1 for i in infos)


def test_unknown_revisions_are_not_found(store: Store) -> None:
    store.put_service(Service("b", port=8080))

    for rev in (0, 2, -1):
        with pytest.raises(NotFound, match=f"revision {rev}"):
            store.get_revision(rev)


def test_load_state_reads_everything_at_its_revision(store: Store) -> None:
    store.put_service(Service("b", port=8080))
    store.put_service(Service("a", port=9090))
    store.put_instance(Instance("b", "b-2", "10.0.0.2", 15006))
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 15006, healthy=False))

    state = store.load_state()

    assert state.revision == 4
    assert list(state.services) == ["a", "b"]
    assert [i.instance_id for i in state.instances_of("b")] == ["b-1", "b-2"]
    assert [i.instance_id for i in state.healthy_instances_of("b")] == ["b-2"]


def test_snapshot_sees_one_revision_while_others_write(store: Store) -> None:
    store.put_service(Service("b", port=8080))

    with store.read_view() as snap:
        first = snap.list_services()
        store.put_service(Service("c", port=8080))  # commits on another connection
        again = snap.list_services()
        assert snap.revision == 1

    assert first == again == [Service("b", port=8080)]
    assert store.revision() == 2


def test_load_state_is_consistent_under_concurrent_writes(store: Store) -> None:
    """Each write adds exactly one instance, so a consistent state has revision - 1 of them."""
    store.put_service(Service("b", port=8080))
    writes = 40
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(writes):
                store.put_instance(Instance("b", f"b-{n}", "127.0.0.1", 15000 + n))
        except BaseException as e:  # reported below
            failures.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []
    while thread.is_alive() or not seen:
        state = store.load_state()
        seen.append(state.revision)
        assert len(state.instances_of("b")) == state.revision - 1
    thread.join()

    assert failures == []
    final = store.load_state()
    assert (final.revision, len(final.instances_of("b"))) == (writes + 1, writes)


def test_a_write_that_fails_midway_changes_nothing(db_url: str) -> None:
    """With the change log unwritable, the service row and the revision bump roll back too."""
    store = Store.open(db_url)
    try:
        store.put_service(Service("a", port=8080))
        engine = sa.create_engine(db_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE revision_changes")

            with pytest.raises(Unavailable):
                store.put_service(Service("b", port=8080))

            with engine.connect() as conn:
                names = conn.exec_driver_sql("SELECT name FROM services").scalars().all()
                revision = conn.exec_driver_sql("SELECT revision FROM mesh").scalar_one()
                revisions = conn.exec_driver_sql("SELECT revision FROM revisions").scalars()
            assert (names, revision, list(revisions)) == (["a"], 1, [1])
        finally:
            engine.dispose()
    finally:
        store.close()


def test_incremental_loads_read_only_what_instances_changed(store: Store) -> None:
    store.put_service(Service("a", port=8080))
    store.put_service(Service("b", port=8080))
    store.put_instance(Instance("a", "a-1", "127.0.0.1", 15006))
    store.put_instance(Instance("b", "b-1", "127.0.0.1", 15007))
    first = store.load_state()

    store.put_instance(Instance("b", "b-2", "127.0.0.1", 15008))
    store.delete_instance("b", "b-1")
    state, change = store.load_state_since(first)

    assert change.instances_only
    assert change.instance_services == {"b"}
    assert state.revision == store.revision()
    assert [i.instance_id for i in state.instances_of("b")] == ["b-2"]
    full = store.load_state()
    assert state.instances == full.instances
    assert state.services == full.services
    # What did not change is shared, object for object.
    assert state.instances["a"] is first.instances["a"]
    assert state.services is first.services

    # Nothing new: the same state back.
    again, nothing = store.load_state_since(state)
    assert again is state
    assert nothing.instances_only
    assert not nothing.instance_services


def test_anything_but_instances_makes_a_full_load(store: Store) -> None:
    store.put_service(Service("a", port=8080))
    first = store.load_state()

    store.put_service(Service("a", port=9090))
    state, change = store.load_state_since(first)
    assert not change.instances_only
    assert state.services["a"].port == 9090

    store.put_service(Service("c", port=8080))
    store.put_instance(Instance("c", "c-1", "127.0.0.1", 15006))
    state2, change2 = store.load_state_since(state)
    assert not change2.instances_only
    assert [i.instance_id for i in state2.instances_of("c")] == ["c-1"]
    # No previous state at all: a full load.
    _, from_nothing = store.load_state_since(None)
    assert not from_nothing.instances_only
