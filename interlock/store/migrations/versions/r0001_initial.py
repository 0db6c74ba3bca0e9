"""The first schema: mesh revision, revision records, services, instances.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    mesh = op.create_table(
        "mesh",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="mesh_single_row"),
    )
    op.bulk_insert(mesh, [{"id": 1, "revision": 0}])
    op.create_table(
        "revisions",
        sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("committed_at", sa.Double, nullable=False),
    )
    op.create_table(
        "revision_changes",
        sa.Column(
            "revision",
            sa.BigInteger,
            sa.ForeignKey("revisions.revision", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(520), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
    )
    op.create_table(
        "services",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
    )
    op.create_table(
        "instances",
        sa.Column(
            "service",
            sa.String(63),
            sa.ForeignKey("services.name", ondelete="RESTRICT"),
            primary_key=True,
        ),
        sa.Column("instance_id", sa.String(253), primary_key=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("locality", sa.String(200), nullable=False),
        sa.Column("healthy", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instances")
    op.drop_table("services")
    op.drop_table("revision_changes")
    op.drop_table("revisions")
    op.drop_table("mesh")
