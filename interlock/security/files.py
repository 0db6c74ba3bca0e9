"""Secrets the server keeps on disk: the CA's key-encryption key (KEK) and the admin token.

KEK (32 bytes; it seals the CA's private keys and the proxies' SVID keys in the store):

- ``--ca-kek-file PATH`` (raw 32 bytes or their base64) or ``INTERLOCK_CA_KEK`` (base64);
- otherwise, with a SQLite file database, ``<database>.kek`` beside it: read if it exists,
  generated on first start (0600) if not;
- with an in-memory database, a fresh random KEK (nothing outlives the process anyway);
- with PostgreSQL one of the two must be given, so that every replica shares it.

Admin token: on first start (no active admin token stored) the server makes one, stores its
hash and writes the token to ``--admin-token-file`` (default ``<database>.admin-token`` beside a
SQLite database, ``./interlock-admin-token`` otherwise), mode 0600.

Files are created with mode 0600 from the start (never world-readable for an instant), and
their content never reaches a log: messages say where a secret is, not what it is.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from interlock.ca import KEK_BYTES, load_kek
from interlock.model.errors import InvalidInput

KEK_ENV = "INTERLOCK_CA_KEK"


class SecretFileError(Exception):
    """A secret cannot be read or written; the message names the file or variable."""


def sqlite_file(db_url: str) -> Path | None:
    """The database file of a ``sqlite:///FILE`` URL (None for memory or another database)."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def is_postgres(db_url: str) -> bool:
    try:
        return make_url(db_url).get_backend_name() in ("postgresql", "postgres")
    except ArgumentError:
        return False


def default_kek_path(db_url: str) -> Path | None:
    db = sqlite_file(db_url)
    return None if db is None else db.with_name(db.name + ".kek")


def default_admin_token_path(db_url: str) -> Path:
    db = sqlite_file(db_url)
    return Path("interlock-admin-token") if db is None else db.with_name(db.name + ".admin-token")


def default_ca_bundle_path(db_url: str) -> Path:
    """Where the CA bundle clients trust is written: ``<db>.ca.pem`` beside a SQLite
    database, ``./interlock-ca.pem`` otherwise (like the admin token)."""
    db = sqlite_file(db_url)
    return Path("interlock-ca.pem") if db is None else db.with_name(db.name + ".ca.pem")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (replacing it atomically if it exists)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SecretFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def resolve_kek(
    db_url: str, kek_file: Path | None, env_value: str | None
) -> tuple[bytes, str | None]:
    """The KEK (see the module docstring) and, when this call generated it, the file it was
    written to (so the caller can say where). Raises :class:`SecretFileError`."""
    try:
        if kek_file is not None or env_value is not None:
            return load_kek(str(kek_file) if kek_file else None, env_value, env_name=KEK_ENV), None
        if is_postgres(db_url):
            raise SecretFileError(
                f"with PostgreSQL give the CA key-encryption key with --ca-kek-file or {KEK_ENV} "
                "(every replica needs the same one)"
            )
        path = default_kek_path(db_url)
        if path is None:
            return secrets.token_bytes(KEK_BYTES), None
        if path.exists():
            return load_kek(str(path), None), None
    except InvalidInput as exc:
        raise SecretFileError(exc.message) from None
    write_private(path, base64.b64encode(secrets.token_bytes(KEK_BYTES)).decode() + "\n")
    try:
        return load_kek(str(path), None), str(path)
    except InvalidInput as exc:  # pragma: no cover - we just wrote it
        raise SecretFileError(exc.message) from None
