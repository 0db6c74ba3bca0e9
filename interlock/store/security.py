"""The security half of the store: the CA (rotation state and sealed keys), tokens, SVIDs.

Reached as ``Store.security``. Everything here is opaque to the store: rotation states are JSON
text, keys are blobs sealed by the caller (the store never sees a KEK or a plaintext key), and
tokens are SHA-256 hashes. Writes to the CA are mesh revisions (change kind
``CertificateAuthority``), so every replica's change feed hears them and the proxies' ACKs of
that revision say they hold what it published. Token and SVID writes are not revisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from interlock.model.errors import Conflict, FieldError, NotFound
from interlock.model.identity import Token, TokenRole
from interlock.store import _sql
from interlock.store._batch import Write, WriteRunner
from interlock.store._engine import Database
from interlock.store._security_schema import ca_keys, ca_state, svids, tokens
from interlock.store.health import start_lease
from interlock.store.records import Change

CA_CHANGE: Final = "CertificateAuthority"


@dataclass(frozen=True)
class StoredCa:
    """The CA as stored: ``state`` is a rotation state's JSON (certificates only), ``step`` its
    step, ``revision`` the mesh revision that wrote it."""

    trust_domain: str
    state: str
    step: int
    revision: int


@dataclass(frozen=True)
class StoredSvid:
    """The last SVID issued to one instance; ``sealed_key`` is its private key, sealed."""

    service: str
    namespace: str
    instance_id: str
    ca_key_id: str
    cert_pem: bytes
    chain_pem: bytes
    sealed_key: bytes
    not_after: float
    renew_at: float


def _same(revision: int) -> int:
    return revision


def _token(row: RowMapping) -> Token:
    return Token(
        token_id=row["token_id"],
        role=TokenRole(row["role"]),
        service=row["service"],
        namespace=row["namespace"],
        instance_id=row["instance_id"],
        created_at=float(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]),
    )


def forget_instances(conn: Connection, service: str, instance_ids: Collection[str]) -> int:
    """In ``conn``'s transaction: revoke every proxy token of these instances of ``service``
    and forget their SVIDs; returns how many tokens were revoked."""
    if not instance_ids:
        return 0
    ids = list(instance_ids)
    result = conn.execute(
        sa.update(tokens)
        .where(
            tokens.c.service == service,
            tokens.c.instance_id.in_(ids),
            tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=time.time())
    )
    conn.execute(sa.delete(svids).where(svids.c.service == service, svids.c.instance_id.in_(ids)))
    return int(result.rowcount or 0)


class SecurityStore:
    """See the module docstring. Safe to share between threads; raises only
    :class:`~interlock.model.errors.InterlockError` subclasses."""

    def __init__(self, db: Database, run: WriteRunner) -> None:
        """Built by :class:`~interlock.store.Store`; ``run`` runs its revisioned writes."""
        self._db = db
        self._run = run

    # --- the CA --------------------------------------------------------------------------

    def ca(self) -> StoredCa | None:
        """The stored CA, or None before the first start created one."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(ca_state)).mappings().first()
        if row is None:
            return None
        return StoredCa(row["trust_domain"], row["state"], int(row["step"]), int(row["revision"]))

    def sealed_key(self, key_id: str) -> bytes:
        """The sealed private key of CA ``key_id``; :class:`NotFound` if none is stored."""
        with self._db.read() as conn:
            sealed = conn.execute(
                sa.select(ca_keys.c.sealed).where(ca_keys.c.key_id == key_id)
            ).scalar_one_or_none()
        if sealed is None:
            raise NotFound(f"no sealed key is stored for CA key {key_id}")
        return bytes(sealed)

    def create_ca(self, trust_domain: str, state: str, keys: Mapping[str, bytes]) -> bool:
        """Store the first CA (step 0) and its sealed keys, unless one exists; True when this
        call created it (several replicas may race: exactly one wins). Not a mesh revision:
        no proxy holds anything of a CA that did not exist."""
        with self._db.write() as conn:
            revision = _sql.current_revision(conn, lock=True)  # one replica at a time
            if conn.execute(sa.select(ca_state.c.id)).first() is not None:
                return False
            self._put_keys(conn, keys)
            conn.execute(
                sa.insert(ca_state).values(
                    id=1,
                    trust_domain=trust_domain,
                    state=state,
                    step=0,
                    revision=revision,
                    updated_at=time.time(),
                )
            )
        return True

    def advance_ca(
        self,
        *,
        expected_step: int,
        state: str,
        step: int,
        keys: Mapping[str, bytes] | None = None,
    ) -> int:
        """Replace the stored rotation state by ``state`` (at ``step``) if the stored one is
        still at ``expected_step``; store ``keys`` (sealed) with it. Returns the new mesh
        revision. :class:`Conflict` when another writer moved the rotation first."""

        def op(w: Write) -> Callable[[int], int]:
            row = w.conn.execute(sa.select(ca_state)).mappings().first()
            if row is None:
                raise NotFound("no CA is stored yet")
            if int(row["step"]) != expected_step:
                raise Conflict(
                    f"the CA rotation moved meanwhile (step {row['step']}, expected "
                    f"{expected_step}); look at GET /v1/ca and try again",
                    errors=(FieldError("step", "stale"),),
                )
            self._put_keys(w.conn, keys or {})
            w.changes.append(Change(CA_CHANGE, row["trust_domain"], "upsert"))
            # The revision that will carry this write (the batch's one new revision).
            w.conn.execute(
                sa.update(ca_state)
                .where(ca_state.c.id == 1)
                .values(state=state, step=step, revision=w.revision + 1, updated_at=time.time())
            )
            return _same

        return self._run(op)

    @staticmethod
    def _put_keys(conn: Connection, keys: Mapping[str, bytes]) -> None:
        for key_id, sealed in keys.items():
            exists = conn.execute(sa.select(ca_keys.c.key_id).where(ca_keys.c.key_id == key_id))
            if exists.first() is None:
                conn.execute(
                    sa.insert(ca_keys).values(key_id=key_id, sealed=sealed, created_at=time.time())
                )

    # --- tokens ---------------------------------------------------------------------------

    def add_token(self, token: Token, token_hash: str) -> Token:
        """Store a new token (its hash only)."""
        with self._db.write() as conn:
            conn.execute(sa.insert(tokens).values(**self._token_values(token, token_hash)))
        return token

    @staticmethod
    def _token_values(token: Token, token_hash: str) -> dict[str, Any]:
        return {
            "token_id": token.token_id,
            "token_hash": token_hash,
            "role": token.role.value,
            "service": token.service,
            "namespace": token.namespace,
            "instance_id": token.instance_id,
            "created_at": token.created_at or time.time(),
            "revoked_at": token.revoked_at,
        }

    def ensure_admin_token(self, token: Token, token_hash: str, *, replace: bool = False) -> bool:
        """Store ``token`` as the admin token if there is no active one (or, with ``replace``,
        revoke the active ones first). True when stored. Replicas starting together on one
        database serialize here: exactly one stores its token."""
        with self._db.write() as conn:
            _sql.current_revision(conn, lock=True)  # the write lock: one replica at a time
            active = tokens.c.revoked_at.is_(None) & (tokens.c.role == TokenRole.ADMIN.value)
            if replace:
                conn.execute(sa.update(tokens).where(active).values(revoked_at=time.time()))
            elif conn.execute(sa.select(tokens.c.token_id).where(active)).first() is not None:
                return False
            conn.execute(sa.insert(tokens).values(**self._token_values(token, token_hash)))
        return True

    def find_token(self, token_hash: str) -> Token | None:
        """The token whose hash is ``token_hash`` (revoked or not), or None."""
        with self._db.read() as conn:
            row = (
                conn.execute(sa.select(tokens).where(tokens.c.token_hash == token_hash))
                .mappings()
                .first()
            )
        return None if row is None else _token(row)

    def find_tokens(self, token_hashes: Collection[str]) -> dict[str, Token]:
        """The tokens among ``token_hashes`` (revoked or not), by hash: one query for many
        lookups (the xDS server groups the streams that authenticate at once)."""
        if not token_hashes:
            return {}
        with self._db.read() as conn:
            rows = (
                conn.execute(sa.select(tokens).where(tokens.c.token_hash.in_(list(token_hashes))))
                .mappings()
                .all()
            )
        return {row["token_hash"]: _token(row) for row in rows}

    def list_tokens(self, role: TokenRole | None = None) -> list[Token]:
        """Every token's record (never a token), by creation time."""
        query = sa.select(tokens)
        if role is not None:
            query = query.where(tokens.c.role == role.value)
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return sorted((_token(r) for r in rows), key=lambda t: (t.created_at, t.token_id))

    def revoke_token(
        self, token_id: str, *, caller: str | None = None, keep_an_admin: bool = False
    ) -> Token:
        """Revoke one token (idempotent); :class:`NotFound` if there is none.

        :class:`Conflict` (nothing revoked) for the ``caller``'s own token (the one that
        authorizes the request, as Consul refuses) and, with ``keep_an_admin``, for the last
        active admin token: either would lock every client out until a restart with
        ``--new-admin-token``. The check and the revocation are one transaction under the
        write lock, so two replicas revoking the last two admin tokens at once cannot both
        succeed."""
        with self._db.write() as conn:
            _sql.current_revision(conn, lock=True)  # the write lock: one revocation at a time
            row = (
                conn.execute(sa.select(tokens).where(tokens.c.token_id == token_id))
                .mappings()
                .first()
            )
            if row is None:
                message = f"token {token_id!r} does not exist"
                raise NotFound(message, errors=(FieldError("token_id", message),))
            if row["revoked_at"] is None and token_id == caller:
                message = (
                    f"token {token_id!r} authorizes this request: a token cannot revoke itself; "
                    "revoke it with another admin token"
                )
                raise Conflict(message, errors=(FieldError("token_id", message),))
            admin = row["role"] == TokenRole.ADMIN.value
            if keep_an_admin and admin and row["revoked_at"] is None:
                active = tokens.c.revoked_at.is_(None) & (tokens.c.role == TokenRole.ADMIN.value)
                others = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(tokens)
                    .where(active & (tokens.c.token_id != token_id))
                ).scalar_one()
                if not others:
                    message = (
                        f"token {token_id!r} is the last active admin token: revoking it would "
                        "lock every client out; to replace it, restart a server with "
                        "--new-admin-token"
                    )
                    raise Conflict(message, errors=(FieldError("token_id", message),))
            if row["revoked_at"] is None:
                conn.execute(
                    sa.update(tokens)
                    .where(tokens.c.token_id == token_id)
                    .values(revoked_at=time.time())
                )
        return self._one(token_id)

    def _one(self, token_id: str) -> Token:
        with self._db.read() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.token_id == token_id)).mappings()
            return _token(row.one())

    def revoke_instance(self, service: str, instance_ids: Collection[str]) -> int:
        """Revoke every proxy token of these instances of ``service`` and forget their SVIDs;
        returns how many tokens were revoked. (Deleting an instance does this itself, in the
        deletion's transaction.)"""
        if not instance_ids:
            return 0
        with self._db.write() as conn:
            return forget_instances(conn, service, instance_ids)

    def issue_proxy_token(
        self,
        token: Token,
        token_hash: str,
        *,
        in_namespace: str | None = None,
        connect_by: float | None = None,
    ) -> Token:
        """Store a new proxy ``token`` for the instance it names, checked in the same
        transaction: :class:`NotFound` unless that instance is registered; :class:`Forbidden`
        (``in_namespace``) unless its service is in that namespace. The stored token is bound
        to the namespace the service is registered in (whatever ``token`` says); returned.
        With ``connect_by``, its proxy is expected to connect by then (a liveness lease, see
        :mod:`interlock.store.health`): else the instance's proxy check fails."""

        def op(w: Write) -> Callable[[int], Token]:
            service = _sql.require_service(w.conn, token.service)
            _sql.confined(service.name, service.namespace, in_namespace)
            _sql.require_instance(w.conn, token.service, token.instance_id)
            bound = replace(token, namespace=service.namespace)
            w.conn.execute(sa.insert(tokens).values(**self._token_values(bound, token_hash)))
            if connect_by is not None:
                start_lease(w.conn, bound.token_id, connect_by)
            return lambda _revision: bound

        return self._run(op)

    def revoked(self, token_ids: Collection[str]) -> set[str]:
        """Which of ``token_ids`` are revoked or no longer exist."""
        if not token_ids:
            return set()
        ids = list(token_ids)
        with self._db.read() as conn:
            active = set(
                conn.execute(
                    sa.select(tokens.c.token_id).where(
                        tokens.c.token_id.in_(ids), tokens.c.revoked_at.is_(None)
                    )
                ).scalars()
            )
        return set(ids) - active

    # --- SVIDs ----------------------------------------------------------------------------

    def svid(self, service: str, instance_id: str) -> StoredSvid | None:
        with self._db.read() as conn:
            row = (
                conn.execute(
                    sa.select(svids).where(
                        svids.c.service == service, svids.c.instance_id == instance_id
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return StoredSvid(
            service=row["service"],
            namespace=row["namespace"],
            instance_id=row["instance_id"],
            ca_key_id=row["ca_key_id"],
            cert_pem=row["cert_pem"].encode("ascii"),
            chain_pem=row["chain_pem"].encode("ascii"),
            sealed_key=bytes(row["sealed_key"]),
            not_after=float(row["not_after"]),
            renew_at=float(row["renew_at"]),
        )

    def put_svid(self, svid: StoredSvid) -> None:
        """Store (or replace) the SVID of one instance."""
        values = {
            "namespace": svid.namespace,
            "ca_key_id": svid.ca_key_id,
            "cert_pem": svid.cert_pem.decode("ascii"),
            "chain_pem": svid.chain_pem.decode("ascii"),
            "sealed_key": svid.sealed_key,
            "not_after": svid.not_after,
            "renew_at": svid.renew_at,
        }
        where = (svids.c.service == svid.service) & (svids.c.instance_id == svid.instance_id)
        with self._db.write() as conn:
            if conn.execute(sa.select(svids.c.service).where(where)).first() is None:
                conn.execute(
                    sa.insert(svids).values(
                        service=svid.service, instance_id=svid.instance_id, **values
                    )
                )
            else:
                conn.execute(sa.update(svids).where(where).values(**values))
