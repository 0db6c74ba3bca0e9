"""The first admin token: made on first start, stored hashed, written to a 0600 file."""

from __future__ import annotations

import time
from pathlib import Path

from interlock.model.identity import Token, TokenRole, new_token
from interlock.security.files import write_private
from interlock.store.security import SecurityStore


def ensure_admin_token(store: SecurityStore, path: Path, *, rotate: bool = False) -> str:
    """Make sure an admin token exists; returns a line for the operator saying where it is.

    With no active admin token (first start), or with ``rotate`` (which revokes the active
    ones), a new token is stored hashed and written to ``path`` (mode 0600). Otherwise nothing
    is written: the token is wherever the first start put it.
    """
    token_id, token, digest = new_token(TokenRole.ADMIN)
    record = Token(token_id, TokenRole.ADMIN, created_at=time.time())
    if store.ensure_admin_token(record, digest, replace=rotate):
        write_private(path, token + "\n")
        return (
            f"admin token {token_id} written to {path} (mode 0600); "
            f"the CLI reads it from INTERLOCK_TOKEN: export INTERLOCK_TOKEN=$(cat {path})"
        )
    where = f"in {path}" if path.exists() else "where the first start wrote it"
    return (
        f"admin token: the one already stored (hashed), {where}; "
        "restart with --new-admin-token to replace it"
    )
