"""Alembic environment for the store's migrations.

Run only through :func:`interlock.store._migrate.upgrade`, which passes an open connection (in
a transaction that holds the migration lock) as ``config.attributes["connection"]``. There is
no ``alembic.ini``: users never run Alembic by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from interlock.store._schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("interlock migrations run only through interlock.store (no connection)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # Not Alembic's default name, so another Alembic-managed app may share the schema.
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
