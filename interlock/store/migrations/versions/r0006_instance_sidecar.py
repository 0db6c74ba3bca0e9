"""Instances say whether a sidecar fronts them (callers send mTLS only to those).

Rows stored before were registered by sidecars (a plain instance could not be called by a
meshed client), so they keep being sent mTLS: the column defaults to true for them.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "instances", sa.Column("sidecar", sa.Boolean, nullable=False, server_default=sa.true())
    )


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("sidecar")
