"""The security tables (private to the store): the CA, its sealed keys, tokens and SVIDs.

- ``ca_state``: one row (``id = 1``): the trust domain's CA rotation state as JSON (public
  certificates only), its step, and the mesh revision that wrote it.
- ``ca_keys``: each CA's private key, sealed under the KEK (AES-256-GCM, bound to its key id).
- ``tokens``: API and proxy tokens by public id; only the SHA-256 of a token is stored.
- ``svids``: the last X.509-SVID issued to each instance, its key sealed under the KEK, so a
  restarted (or another) replica serves a reconnecting proxy the certificate it already holds.

Migration ``r0003_security`` creates exactly these; change both together.
"""

from __future__ import annotations

import sqlalchemy as sa

from interlock.store._schema import metadata

ca_state = sa.Table(
    "ca_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("trust_domain", sa.String(255), nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.CheckConstraint("id = 1", name="ca_state_single_row"),
)

ca_keys = sa.Table(
    "ca_keys",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("service", sa.String(63), nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("instance_id", sa.String(253), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
    # The tokens of an instance (migration r0004: the health sweep looks them up).
    sa.Index("ix_tokens_instance", "service", "instance_id"),
)

svids = sa.Table(
    "svids",
    metadata,
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
