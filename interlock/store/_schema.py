"""The SQL tables (private to the store; other code sees only model values).

``mesh`` has exactly one row (``id = 1``) holding the current mesh revision; every write
updates it in the same transaction as the data, which serializes writers and numbers their
commits without gaps. ``revisions`` and ``revision_changes`` record what each revision changed;
``resources`` holds the policy objects.
The Alembic migrations under ``migrations/versions`` create exactly these tables; change both
together.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Alembic's record of the schema's migration (one row: the newest revision applied).
VERSION_TABLE = "interlock_schema_version"

mesh = sa.Table(
    "mesh",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="mesh_single_row"),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("revision", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("committed_at", sa.Double, nullable=False),
)

revision_changes = sa.Table(
    "revision_changes",
    metadata,
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

services = sa.Table(
    "services",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("protocol", sa.String(16), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    # Envoy's active health check of its endpoints, as JSON (migration r0005), or NULL.
    sa.Column("health_check", sa.JSON(none_as_null=True), nullable=True),
    # Istio's exportTo, a JSON list of namespaces (migration r0007), or NULL for everywhere.
    sa.Column("export_to", sa.JSON(none_as_null=True), nullable=True),
)

instances = sa.Table(
    "instances",
    metadata,
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
    # Health (migration r0004): the registered ttl and the next heartbeat's deadline; the
    # checks that fail (proxy_down, app_failing: the probe's reason, ttl_missed); the reason
    # of the current status and when it began (see interlock.model.health).
    sa.Column("ttl", sa.Double, nullable=True),
    sa.Column("heartbeat_deadline", sa.Double, nullable=True),
    sa.Column("proxy_down", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("app_failing", sa.String(512), nullable=True),
    sa.Column("ttl_missed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("health_reason", sa.String(512), nullable=False, server_default="registered"),
    sa.Column("health_since", sa.Double, nullable=False, server_default="0"),
    sa.Index("ix_instances_heartbeat_deadline", "heartbeat_deadline"),
    sa.Index("ix_instances_proxy_down", "proxy_down"),
    # True when an Interlock sidecar fronts the instance (it takes mTLS); migration 0004.
    sa.Column("sidecar", sa.Boolean, nullable=False, server_default=sa.true()),
)

# Policy resources (VirtualService, DestinationRule, ...): the spec as the user wrote it (after
# validation), ``generation`` counting content changes, and the revisions that created and last
# changed the row.
resources = sa.Table(
    "resources",
    metadata,
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
