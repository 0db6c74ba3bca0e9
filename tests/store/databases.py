"""Database fixtures shared by the store and API tests: a fresh PostgreSQL schema per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url


@contextlib.contextmanager
def fresh_pg_schema(postgres_url: str) -> Iterator[str]:
    """Create an empty schema, yield a URL whose ``search_path`` is that schema, and drop the
    schema (with everything in it) afterwards, also when the test failed."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


def schema_of(url: str) -> str:
    """The schema a :func:`fresh_pg_schema` URL points at."""
    return str(make_url(url).query["options"]).split("=", 1)[1]


def sqlite_url(directory: str) -> str:
    return f"sqlite:///{directory}/mesh.db"
