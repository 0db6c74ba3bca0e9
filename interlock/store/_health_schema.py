"""The liveness tables (private to the store): which proxies hold xDS streams, per replica.

- ``replicas``: one row per control-plane replica (a random id per process), renewed while it
  runs; its streams count as alive until ``expires_at``.
- ``proxy_leases``: per proxy token and replica, whether that replica holds a stream of the
  token (``connected``), else until when the proxy is given the benefit of the doubt
  (``expires_at``: the last stream's end plus the instance TTL; for a token just issued, its
  issue plus the TTL, under the replica ``""``). A token's instance is in its ``tokens`` row;
  leases of revoked tokens count for nothing.

Migration ``r0004_health`` creates exactly these; change both together.
"""

from __future__ import annotations

import sqlalchemy as sa

from interlock.store._schema import metadata

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("replica", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

proxy_leases = sa.Table(
    "proxy_leases",
    metadata,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("replica", sa.String(64), primary_key=True),
    sa.Column("connected", sa.Boolean, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    # What a windowed sweep looks up: leases that ended, leases of a replica that ended.
    sa.Index("ix_proxy_leases_expires_at", "expires_at"),
    sa.Index("ix_proxy_leases_replica", "replica"),
)
