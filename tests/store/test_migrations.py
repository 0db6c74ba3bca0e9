"""Opening runs the migrations: idempotent, and safe when replicas start together."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from interlock.model import Instance, Service
from interlock.store import Store
from interlock.store._migrate import MIGRATIONS


def newest_migration() -> str:
    """The head of the migration chain (the version a current database records)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


LATEST = newest_migration()


def schema_version(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = "SELECT version_num FROM interlock_schema_version"
            return list(conn.exec_driver_sql(query).scalars())
    finally:
        engine.dispose()


def test_opening_twice_keeps_schema_and_data(db_url: str) -> None:
    with Store.open(db_url) as first:
        first.put_service(Service("b", port=8080))
        first.put_instance(Instance("b", "b-1", "127.0.0.1", 15006))

    with Store.open(db_url) as second:
        assert second.revision() == 2
        assert [i.instance_id for i in second.list_instances("b")] == ["b-1"]

    assert schema_version(db_url) == [LATEST]


def test_replicas_opening_at_once_both_succeed(db_url: str) -> None:
    opened: list[Store] = []
    failures: list[BaseException] = []
    start = threading.Barrier(3)

    def open_one() -> None:
        try:
            start.wait()
            opened.append(Store.open(db_url))
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert failures == []
        assert len(opened) == 3
        opened[0].put_service(Service("b", port=8080))
        assert [s.revision() for s in opened] == [1, 1, 1]
    finally:
        for s in opened:
            s.close()
    assert schema_version(db_url) == [LATEST]


def test_instances_registered_before_health_keep_their_registration(db_url: str) -> None:
    """Migration 0004 adds health: an existing instance is healthy (or unhealthy as
    registered) since the upgrade, with no ttl and no failing check."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
            conn.exec_driver_sql(
                "INSERT INTO services (name, namespace, protocol, port) "
                "VALUES ('b', 'default', 'http', 8080)"
            )
            for instance_id, healthy in (("b-1", True), ("b-2", False)):
                conn.execute(
                    sa.text(
                        "INSERT INTO instances (service, instance_id, address, port, labels, "
                        "locality, healthy) VALUES ('b', :id, '10.0.0.1', 1, '{}', '', :h)"
                    ),
                    {"id": instance_id, "h": healthy},
                )
    finally:
        engine.dispose()
    before = time.time()
    with Store.open(db_url) as store:
        one, two = store.list_instances("b")
    assert (one.routable, one.health.reason, one.ttl, one.health.failing) == (
        True,
        "registered",
        None,
        {},
    )
    assert (two.routable, two.health.reason) == (False, "registered with healthy: false")
    assert before - 5 < one.health.since <= time.time()
    assert schema_version(db_url) == [LATEST]


def _upgrade_to(url: str, version: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, version)
    finally:
        engine.dispose()


def test_instances_stored_before_the_sidecar_field_keep_mtls(db_url: str) -> None:
    """Rows from before migration 0006 were sidecars' registrations: they stay sidecar-fronted
    (callers keep sending them mTLS); a new row says what it is."""
    _upgrade_to(db_url, "0005")
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO services (name, namespace, protocol, port) "
                "VALUES ('b', 'default', 'http', 8080)"
            )
            conn.exec_driver_sql(
                "INSERT INTO instances (service, instance_id, address, port, labels, locality, "
                "healthy) VALUES ('b', 'b-1', '127.0.0.1', 15006, '{}', '', true)"
            )
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        assert store.get_instance("b", "b-1").sidecar is True
        store.put_instance(Instance("b", "b-2", "127.0.0.1", 9000, sidecar=False))
        assert store.get_instance("b", "b-2").sidecar is False
        store.put_instance(Instance("b", "b-1", "127.0.0.1", 15006, sidecar=False))
        assert store.get_instance("b", "b-1").sidecar is False
    assert schema_version(db_url) == [LATEST]


def test_services_stored_before_export_to_are_exported_everywhere(db_url: str) -> None:
    """Rows from before migration 0007 have no exportTo: every namespace sees them, as
    before; a new registration stores the namespaces it names."""
    _upgrade_to(db_url, "0006")
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO services (name, namespace, protocol, port) "
                "VALUES ('b', 'default', 'http', 8080)"
            )
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        assert store.get_service("b").export_to == ()
        store.put_service(Service("c", export_to=(".", "team")))
        assert store.get_service("c").export_to == (".", "team")
        assert store.load_state().services["c"].export_to == (".", "team")
    assert schema_version(db_url) == [LATEST]
