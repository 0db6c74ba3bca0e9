"""The security half of the store on SQLite and PostgreSQL: one CA created however many replicas
race, rotation steps that are mesh revisions written compare-and-set, tokens stored hashed and
revoked, SVIDs kept sealed."""

from __future__ import annotations

import threading
import time

import pytest

from interlock.model import Conflict, Forbidden, Instance, NotFound, Service
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


def _issue(store: Store, instance_id: str, in_namespace: str | None = None) -> Token:
    token_id, _, digest = new_token(TokenRole.PROXY)
    asked = Token(token_id, TokenRole.PROXY, "b", "", instance_id, 1.0)
    return store.security.issue_proxy_token(asked, digest, in_namespace=in_namespace)


def test_a_proxy_token_is_issued_only_for_a_registered_instance_in_one_transaction(
    store: Store,
) -> None:
    store.put_service(Service("b", namespace="payments"))
    store.put_instance(Instance("b", "b-1", "127.0.0.1", 15006))
    issued = _issue(store, "b-1")
    assert (issued.namespace, issued.service, issued.instance_id) == ("payments", "b", "b-1")
    with pytest.raises(NotFound) as missing:
        _issue(store, "b-2")
    assert missing.value.errors[0].field == "instance_id"
    with pytest.raises(Forbidden):
        _issue(store, "b-1", in_namespace="default")
    assert [t.instance_id for t in store.security.list_tokens(TokenRole.PROXY)] == ["b-1"]
    assert store.revision() == 2  # issuing a token is not a mesh revision


def test_no_token_outlives_its_instance(store: Store) -> None:
    """Deregistering revokes the instance's tokens and forgets its SVID in the deletion's own
    transaction, and so does deleting its service with cascade."""
    store.put_service(Service("b"))
    for instance_id in ("b-1", "b-2", "b-3"):
        store.put_instance(Instance("b", instance_id, "127.0.0.1", 15006))
    tokens = {i: _issue(store, i).token_id for i in ("b-1", "b-2", "b-3")}
    store.security.put_svid(StoredSvid("b", "default", "b-1", "k0", b"C", b"", b"s", 2.0, 1.0))
    store.delete_instance("b", "b-1")
    assert store.security.revoked(tokens.values()) == {tokens["b-1"]}
    assert store.security.svid("b", "b-1") is None
    with pytest.raises(Forbidden):
        store.delete_instance("b", "b-2", in_namespace="payments")
    assert store.security.revoked(tokens.values()) == {tokens["b-1"]}  # a refusal revokes nothing
    store.delete_service("b", cascade=True)
    assert store.security.revoked(tokens.values()) == set(tokens.values())
