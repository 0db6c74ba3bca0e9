"""Policy resources: one row per (kind, namespace, name), the spec as JSON.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("api_version", sa.String(128), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("annotations", sa.JSON, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("created_revision", sa.BigInteger, nullable=False),
        sa.Column("updated_revision", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("resources")
