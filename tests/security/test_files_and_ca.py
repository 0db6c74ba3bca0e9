"""The secrets on disk (KEK, admin token) and the CA at start-up: created once, read back by a
restart, refused with a clear message when it cannot be used."""

from __future__ import annotations

import base64
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from interlock.ca import CertificateAuthority
from interlock.model.identity import TokenRole, token_hash
from interlock.security.admin import ensure_admin_token
from interlock.security.authority import CaRuntime, CaStartError, OperatorCa
from interlock.security.files import SecretFileError, resolve_kek
from interlock.security.proxies import ProxySecurity, bearer_token
from interlock.store import Store
from interlock.xds.transport.cache import SnapshotCache


def test_a_sqlite_server_generates_its_kek_once_beside_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    kek, generated = resolve_kek(url, None, None)
    path = tmp_path / "mesh.db.kek"
    assert generated == str(path) and len(kek) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert resolve_kek(url, None, None) == (kek, None)  # read back, not regenerated


def test_postgres_needs_a_kek_and_a_given_one_wins(tmp_path: Path) -> None:
    url = "postgresql+psycopg://u@h/db"
    with pytest.raises(SecretFileError, match="INTERLOCK_CA_KEK"):
        resolve_kek(url, None, None)
    given = base64.b64encode(bytes(32)).decode()
    assert resolve_kek(url, None, given) == (bytes(32), None)
    bad = tmp_path / "bad.kek"
    bad.write_text("short")
    with pytest.raises(SecretFileError) as err:
        resolve_kek(url, bad, None)
    assert "short" not in str(err.value)


def test_the_admin_token_is_written_once_0600_and_stored_hashed(tmp_path: Path) -> None:
    with Store.open("sqlite://") as store:
        path = tmp_path / "admin-token"
        message = ensure_admin_token(store.security, path)
        token = path.read_text().strip()
        assert str(path) in message and token not in message
        assert path.stat().st_mode & 0o777 == 0o600
        found = store.security.find_token(token_hash(token))
        assert found is not None and found.role is TokenRole.ADMIN
        again = ensure_admin_token(store.security, path)
        assert path.read_text().strip() == token and "already stored" in again
        ensure_admin_token(store.security, path, rotate=True)
        assert path.read_text().strip() != token
        revoked = store.security.find_token(token_hash(token))
        assert revoked is not None and not revoked.active


def now() -> datetime:
    return datetime.now(UTC)


def test_the_ca_is_created_on_first_start_and_read_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    lines: list[str] = []
    with Store.open(url) as store:
        first = CaRuntime(store.security, bytes(32), "example.org")
        first.start(None, lines.append)
        assert "self-signed root CA" in lines[0] and "PRIVATE" not in lines[0]
    with Store.open(url) as store:
        again = CaRuntime(store.security, bytes(32), "example.org")
        again.start(None, lines.append)
        assert len(lines) == 1
        assert again.authority.key_id == first.authority.key_id
        with pytest.raises(CaStartError, match="trust domain"):
            CaRuntime(store.security, bytes(32), "other.org").start(None, print)
        with pytest.raises(CaStartError, match="another KEK"):
            CaRuntime(store.security, bytes([1] * 32), "example.org").start(None, print)
        operator = CertificateAuthority.create_root("example.org", now)
        given = OperatorCa(operator.certificate_pem(), operator.private_key_pem())
        with pytest.raises(CaStartError, match="interlock ca rotate"):
            CaRuntime(store.security, bytes(32), "example.org").start(given, print)


def test_an_operator_ca_is_used_on_first_start() -> None:
    operator = CertificateAuthority.create_root("example.org", now)
    given = OperatorCa(operator.certificate_pem(), operator.private_key_pem())
    with Store.open("sqlite://") as store:
        runtime = CaRuntime(store.security, bytes(32), "example.org")
        runtime.start(given, print)
        assert runtime.authority.key_id == operator.key_id
        svid, key_id = runtime.issue("default", "b")
        assert key_id == operator.key_id
        assert str(svid.spiffe_id) == "spiffe://example.org/ns/default/sa/b"


def test_renewal_is_half_way_from_issue_give_or_take_the_jitter() -> None:
    with Store.open("sqlite://") as store:
        runtime = CaRuntime(
            store.security, bytes(32), "example.org", leaf_lifetime=timedelta(seconds=60)
        )
        runtime.start(None, print)
        security = ProxySecurity(
            store.security, runtime, SnapshotCache(), bytes(32), rng=random.Random(7)
        )
        issued_at = now()
        svid, _ = runtime.issue("default", "b")
        assert svid.not_before < issued_at - timedelta(seconds=30)  # backdated for clock skew
        for _ in range(50):
            delay = (security._renew_time(svid, issued_at) - issued_at).total_seconds()
            assert 27.0 <= delay <= 33.0  # certificate times are whole seconds
        day = replace(svid, not_after=issued_at + timedelta(hours=24))
        delay = (security._renew_time(day, issued_at) - issued_at).total_seconds()
        assert abs(delay - 12 * 3600) <= 0.04 * 24 * 3600


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "Bearer abc"),), "abc"),
        ((("authorization", b"bearer  abc "),), "abc"),
        ((("authorization", "Basic abc"),), None),
        ((("x-other", "Bearer abc"),), None),
        ((), None),
    ],
)
def test_bearer_tokens_are_read_from_the_metadata(
    metadata: tuple[tuple[str, str | bytes], ...], token: str | None
) -> None:
    assert bearer_token(metadata) == token
