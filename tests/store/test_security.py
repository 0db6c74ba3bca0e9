"""The security half of the store on SQLite and PostgreSQL: one CA created however many replicas
race, rotation steps that are mesh revisions written compare-and-set, tokens stored hashed and
revoked, SVIDs kept sealed."""

from __future__ import annotations

import threading
import time

import pytest

from interlock.model import Conflict, Instance, NotFound, Service
from interlock.model.identity import Token, TokenRole, new_token, token_hash
from interlock.store import Store
from interlock.store.security import StoredSvid


def test_the_first_ca_is_created_once_even_when_replicas_race(db_url: str) -> None:
    stores = [Store.open(db_url) for _ in range(3)]
    try:
        results: list[bool] = []
        start = threading.Barrier(3)

        def create(store: Store, n: int) -> None:
            start.wait()
            results.append(store.security.create_ca("td", f'{{"n": {n}}}', {f"k{n}": b"sealed"}))

        threads = [threading.Thread(target=create, args=(s, n)) for n, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [False, False, True]
        stored = stores[0].security.ca()
        assert stored is not None and stored.step == 0 and stored.revision == 0
        winner = stored.state.split(": ")[1].rstrip("}")
        assert stores[1].security.sealed_key(f"k{winner}") == b"sealed"
        assert stores[0].revision() == 0  # creating the CA is not a mesh revision
    finally:
        for store in stores:
            store.close()


def test_rotation_steps_are_revisions_written_compare_and_set(store: Store) -> None:
    store.security.create_ca("td", "s0", {"k0": b"one"})
    heard: list[int] = []
    store.subscribe(heard.append)
    revision = store.security.advance_ca(expected_step=0, state="s1", step=1, keys={"k1": b"two"})
    assert revision == 1
    deadline = time.monotonic() + 5  # PostgreSQL: heard through LISTEN/NOTIFY, a thread
    while 1 not in heard and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 1 in heard  # every replica's change feed hears a rotation step
    assert store.get_revision(1).changes[0].kind == "CertificateAuthority"
    stored = store.security.ca()
    assert stored is not None and (stored.state, stored.step, stored.revision) == ("s1", 1, 1)
    with pytest.raises(Conflict):
        store.security.advance_ca(expected_step=0, state="stale", step=1)
    assert store.security.sealed_key("k1") == b"two"
    with pytest.raises(NotFound):
        store.security.sealed_key("nope")


def test_tokens_are_found_by_hash_listed_without_secrets_and_revoked(store: Store) -> None:
    store.put_service(Service("b"))
    store.put_instance(Instance("b", "b-1", "127.0.0.1", 15006))
    token_id, token, digest = new_token(TokenRole.PROXY)
    store.security.add_token(Token(token_id, TokenRole.PROXY, "b", "default", "b-1", 1.0), digest)
    found = store.security.find_token(token_hash(token))
    assert found is not None and found.instance_id == "b-1" and found.active
    assert store.security.find_token(token_hash(token + "x")) is None
    assert store.security.revoked([token_id, "gone"]) == {"gone"}
    assert store.security.revoke_instance("b", ["b-1"]) == 1
    assert store.security.revoked([token_id]) == {token_id}
    assert store.security.revoke_token(token_id).revoked_at is not None  # idempotent


def test_one_admin_token_unless_replaced(store: Store) -> None:
    first_id, _, first = new_token(TokenRole.ADMIN)
    second_id, _, second = new_token(TokenRole.ADMIN)
    assert store.security.ensure_admin_token(Token(first_id, TokenRole.ADMIN), first)
    assert not store.security.ensure_admin_token(Token(second_id, TokenRole.ADMIN), second)
    assert store.security.ensure_admin_token(
        Token(second_id, TokenRole.ADMIN), second, replace=True
    )
    active = [t.token_id for t in store.security.list_tokens(TokenRole.ADMIN) if t.active]
    assert active == [second_id]


def test_svids_are_kept_per_instance_and_forgotten_with_it(store: Store) -> None:
    svid = StoredSvid("b", "default", "b-1", "k0", b"CERT", b"", b"sealed", 2.0, 1.0)
    store.security.put_svid(svid)
    store.security.put_svid(StoredSvid("b", "default", "b-1", "k1", b"C2", b"", b"s2", 3.0, 2.0))
    stored = store.security.svid("b", "b-1")
    assert stored is not None and (stored.ca_key_id, stored.cert_pem) == ("k1", b"C2")
    store.security.revoke_instance("b", ["b-1"])
    assert store.security.svid("b", "b-1") is None
