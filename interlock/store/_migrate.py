"""Bring a database's schema to the newest migration, programmatically.

Safe when several processes start together: the whole upgrade runs in one write transaction
that first takes a lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
PostgreSQL), so the second process waits and then finds the schema current. The store's
``timeout`` does not apply to it (:meth:`Database.write_unbounded`).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError

from interlock.model.errors import Unavailable
from interlock.store._engine import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# An arbitrary constant naming Interlock's migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x1A7E_510C


def upgrade(db: Database) -> None:
    """Run ``alembic upgrade head`` on ``db``; idempotent. Raises :class:`Unavailable`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with db.write_unbounded() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as e:
            raise Unavailable(
                f"the database schema cannot be upgraded ({e}); "
                "was it written by a newer Interlock?"
            ) from e
