"""Failures come out of the store as the model's errors, never as SQLAlchemy exceptions."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from interlock.model import InvalidInput, Service, Unavailable
from interlock.store import Store
from tests.support.net import free_port


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/mesh", "not a url", "postgresql+asyncpg://u@h/db"]
)
def test_unsupported_urls_are_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Store.open(url)
    assert caught.value.errors[0].field == "database_url"


def test_unreachable_postgresql_is_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(Unavailable, match="database is unavailable"):
        Store.open(url)


def test_sqlite_file_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        Store.open(f"sqlite:///{tmp_path}/no/such/dir/mesh.db")


def test_a_closed_store_is_unavailable(db_url: str) -> None:
    store = Store.open(db_url)
    store.close()

    with pytest.raises(Unavailable, match="closed"):
        store.put_service(Service("b", port=8080))
    with pytest.raises(Unavailable, match="closed"):
        store.load_state()


def test_losing_the_tables_makes_reads_and_writes_unavailable(db_url: str) -> None:
    with Store.open(db_url) as store:
        store.put_service(Service("b", port=8080))
        engine = sa.create_engine(db_url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP TABLE instances")
                conn.exec_driver_sql("DROP TABLE services")
        finally:
            engine.dispose()

        with pytest.raises(Unavailable):
            store.list_services()
        with pytest.raises(Unavailable):
            store.put_service(Service("c", port=8080))
        with pytest.raises(Unavailable):
            store.load_state()


def test_a_schema_from_a_newer_interlock_is_refused(db_url: str) -> None:
    Store.open(db_url).close()
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE interlock_schema_version SET version_num = '9999'")
    finally:
        engine.dispose()

    with pytest.raises(Unavailable, match="newer Interlock"):
        Store.open(db_url)


def test_an_in_memory_database_works_for_one_process() -> None:
    with Store.open("sqlite://") as store:
        store.put_service(Service("b", port=8080))
        assert store.load_state().revision == 1
