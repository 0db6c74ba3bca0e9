"""The change feed: subscribers hear committed writes, on every replica."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from interlock.model import Service
from interlock.store import Store
from tests.store.databases import fresh_pg_schema, schema_of

WAIT_S = 20.0


class Heard:
    """A subscriber that remembers revisions and lets a test wait for one."""

    def __init__(self) -> None:
        self.revisions: list[int] = []
        self._cond = threading.Condition()

    def __call__(self, revision: int) -> None:
        with self._cond:
            self.revisions.append(revision)
            self._cond.notify_all()

    def wait_for(self, revision: int) -> list[int]:
        """Wait until a revision >= ``revision`` was heard; returns everything heard."""
        with self._cond:
            self._cond.wait_for(lambda: max(self.revisions, default=0) >= revision, WAIT_S)
            assert max(self.revisions, default=0) >= revision, f"never heard {revision}"
            return list(self.revisions)


def test_subscribers_hear_each_change_but_not_no_ops(store: Store) -> None:
    heard = Heard()
    store.subscribe(heard)

    store.put_service(Service("a", port=8080))
    store.put_service(Service("a", port=8080))  # identical: no revision, nothing to hear
    store.put_service(Service("b", port=8080))

    assert heard.wait_for(2) == [1, 2]


def test_unsubscribed_callbacks_hear_nothing_more(store: Store) -> None:
    heard, marker = Heard(), Heard()
    unsubscribe = store.subscribe(heard)
    store.put_service(Service("a", port=8080))
    heard.wait_for(1)

    unsubscribe()
    unsubscribe()  # idempotent
    store.subscribe(marker)
    store.put_service(Service("b", port=8080))

    marker.wait_for(2)
    assert heard.revisions == [1]


def test_a_failing_subscriber_neither_breaks_the_write_nor_other_subscribers(
    store: Store,
) -> None:
    def broken(_revision: int) -> None:
        raise RuntimeError("subscriber bug")

    heard = Heard()
    store.subscribe(broken)
    store.subscribe(heard)

    result = store.put_service(Service("a", port=8080))

    assert result.revision == 1
    assert heard.wait_for(1) == [1]
    assert store.get_service("a") == Service("a", port=8080)


@pytest.mark.postgres
def test_a_write_through_one_replica_reaches_the_other(pg_url: str) -> None:
    with Store.open(pg_url) as writer, Store.open(pg_url) as reader:
        heard_by_reader, heard_by_writer = Heard(), Heard()
        reader.subscribe(heard_by_reader)
        writer.subscribe(heard_by_writer)

        writer.put_service(Service("a", port=8080))
        writer.put_service(Service("b", port=8080))

        assert heard_by_reader.wait_for(2) == [1, 2]
        assert heard_by_writer.wait_for(2) == [1, 2]
        assert reader.load_state().revision == 2


@pytest.mark.postgres
def test_replicas_in_other_schemas_hear_nothing(pg_url: str, postgres_url: str) -> None:
    with (
        fresh_pg_schema(postgres_url) as other_url,
        Store.open(pg_url) as mine,
        Store.open(other_url) as other,
    ):
        heard_other, heard_mine = Heard(), Heard()
        other.subscribe(heard_other)
        mine.subscribe(heard_mine)
        mine.put_service(Service("a", port=8080))
        other.put_service(Service("z", port=8080))
        other.put_service(Service("y", port=8080))

        heard_mine.wait_for(1)
        assert heard_other.wait_for(2) == [1, 2]
        assert heard_mine.revisions == [1]


@pytest.mark.postgres
def test_the_listener_reconnects_and_catches_up(pg_url: str, postgres_url: str) -> None:
    with Store.open(pg_url) as store:
        heard = Heard()
        store.subscribe(heard)
        store.put_service(Service("a", port=8080))
        heard.wait_for(1)

        admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                killed = conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE query LIKE :listen"
                    ),
                    {"listen": f'LISTEN "interlock:{schema_of(pg_url)}"%'},
                ).all()
        finally:
            admin.dispose()
        assert len(killed) == 1

        store.put_service(Service("b", port=8080))

        assert heard.wait_for(2)[-1] == 2


@pytest.mark.postgres
def test_close_stops_the_listener_thread(pg_url: str) -> None:
    store = Store.open(pg_url)
    names = {t.name for t in threading.enumerate() if t.name.startswith("interlock-store")}
    assert names

    store.close()
    store.close()  # idempotent

    alive = {t.name for t in threading.enumerate()}
    assert not names & alive
