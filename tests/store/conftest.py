"""Store fixtures: every test that takes ``db_url`` or ``store`` runs on SQLite and on
PostgreSQL (a fresh schema per test; skipped without INTERLOCK_TEST_DATABASE_URL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from interlock.store import Store
from tests.store.databases import fresh_pg_schema, sqlite_url


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL on an empty schema of its own."""
    with fresh_pg_schema(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return sqlite_url(str(tmp_path_factory.mktemp("db")))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    yield opened
    opened.close()
