"""Health: instances' ttl, checks and status; proxy liveness leases per replica.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("ttl", sa.Double, nullable=True))
        batch.add_column(sa.Column("heartbeat_deadline", sa.Double, nullable=True))
        batch.add_column(
            sa.Column("proxy_down", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("app_failing", sa.String(512), nullable=True))
        batch.add_column(
            sa.Column("ttl_missed", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("health_reason", sa.String(512), nullable=False, server_default="registered")
        )
        batch.add_column(sa.Column("health_since", sa.Double, nullable=False, server_default="0"))
        batch.create_index("ix_instances_heartbeat_deadline", ["heartbeat_deadline"])
        batch.create_index("ix_instances_proxy_down", ["proxy_down"])
    # Instances registered before health existed have been healthy since now, as far as
    # anyone can tell; those registered unhealthy say so.
    instances = sa.table(
        "instances",
        sa.column("healthy", sa.Boolean),
        sa.column("health_reason", sa.String),
        sa.column("health_since", sa.Double),
    )
    op.execute(sa.update(instances).values(health_since=time.time()))
    op.execute(
        sa.update(instances)
        .where(instances.c.healthy == sa.false())
        .values(health_reason="registered with healthy: false")
    )
    op.create_table(
        "replicas",
        sa.Column("replica", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_table(
        "proxy_leases",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("replica", sa.String(64), primary_key=True),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_index("ix_proxy_leases_expires_at", "proxy_leases", ["expires_at"])
    op.create_index("ix_proxy_leases_replica", "proxy_leases", ["replica"])
    op.create_index("ix_tokens_instance", "tokens", ["service", "instance_id"])


def downgrade() -> None:
    op.drop_index("ix_tokens_instance", "tokens")
    op.drop_table("proxy_leases")
    op.drop_table("replicas")
    with op.batch_alter_table("instances") as batch:
        batch.drop_index("ix_instances_proxy_down")
        batch.drop_index("ix_instances_heartbeat_deadline")
        for column in (
            "health_since",
            "health_reason",
            "ttl_missed",
            "app_failing",
            "proxy_down",
            "heartbeat_deadline",
            "ttl",
        ):
            batch.drop_column(column)
