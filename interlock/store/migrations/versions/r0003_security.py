"""Security: the CA state and its sealed keys, API and proxy tokens (hashed), issued SVIDs.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ca_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("trust_domain", sa.String(255), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.CheckConstraint("id = 1", name="ca_state_single_row"),
    )
    op.create_table(
        "ca_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("instance_id", sa.String(253), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
    )
    op.create_table(
        "svids",
        sa.Column("service", sa.String(63), primary_key=True),
        sa.Column("instance_id", sa.String(253), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("ca_key_id", sa.String(64), nullable=False),
        sa.Column("cert_pem", sa.Text, nullable=False),
        sa.Column("chain_pem", sa.Text, nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("not_after", sa.Double, nullable=False),
        sa.Column("renew_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("svids")
    op.drop_table("tokens")
    op.drop_table("ca_keys")
    op.drop_table("ca_state")
