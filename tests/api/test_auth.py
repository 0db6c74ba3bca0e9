"""REST API authentication: writes need the admin token (401 without, 403 with a wrong one),
reads too unless opened, credentials in the URL are refused, and a few paths stay public."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from interlock.api import create_app
from interlock.api.auth import ApiAuth
from interlock.model.errors import Conflict
from interlock.model.identity import Token, TokenRole, new_token
from interlock.store import Store
from tests.api.problems import assert_problem


def admin_token(store: Store) -> str:
    token_id, token, digest = new_token(TokenRole.ADMIN)
    assert store.security.ensure_admin_token(Token(token_id, TokenRole.ADMIN), digest)
    return token


def app(store: Store, *, open_reads: bool = False) -> TestClient:
    auth = ApiAuth(store.security.find_token, open_reads=open_reads, cache_seconds=0)
    return TestClient(create_app(store, auth=auth))


SERVICE = {"namespace": "default", "protocol": "http", "port": 8080}


def test_writes_need_the_admin_token(store: Store) -> None:
    token = admin_token(store)
    client = app(store)
    r = client.put("/v1/services/b", json=SERVICE)
    assert_problem(r, 401, "header.authorization")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = client.put("/v1/services/b", json=SERVICE, headers={"Authorization": "Bearer nope"})
    assert_problem(r, 403, "header.authorization")
    r = client.put("/v1/services/b", json=SERVICE, headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 401
    r = client.put("/v1/services/b", json=SERVICE, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201
    assert store.revision() == 1  # only the authorised write happened


def test_reads_need_a_token_unless_opened(store: Store) -> None:
    token = admin_token(store)
    closed, opened = app(store), app(store, open_reads=True)
    assert closed.get("/v1/services").status_code == 401
    assert closed.get("/v1/services", headers={"Authorization": f"Bearer {token}"}).is_success
    assert opened.get("/v1/services").status_code == 200
    assert opened.delete("/v1/services/b").status_code == 401  # writes stay closed


def test_proxy_and_revoked_tokens_are_not_admin_tokens(store: Store) -> None:
    admin = admin_token(store)
    token_id, proxy, digest = new_token(TokenRole.PROXY)
    store.security.add_token(Token(token_id, TokenRole.PROXY, "b", "default", "b-1"), digest)
    client = app(store)
    assert (
        client.get("/v1/revision", headers={"Authorization": f"Bearer {proxy}"}).status_code == 403
    )
    (record,) = store.security.list_tokens(TokenRole.ADMIN)
    store.security.revoke_token(record.token_id)
    assert (
        client.get("/v1/revision", headers={"Authorization": f"Bearer {admin}"}).status_code == 403
    )


@pytest.mark.parametrize("name", ["token", "access_token", "TOKEN"])
def test_credentials_in_the_url_are_refused_everywhere(store: Store, name: str) -> None:
    token = admin_token(store)
    client = app(store, open_reads=True)
    for path in ("/v1/services", "/healthz", "/ui/"):
        r = client.get(f"{path}?{name}={token}")
        problem = assert_problem(r, 400, "query.token")
        assert token not in r.text
        assert problem["type"].endswith("credentials-in-url")
    r = client.get(f"/v1/services?{name}={token}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400


def test_health_and_the_openapi_document_are_public(store: Store) -> None:
    admin_token(store)
    client = app(store)
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_a_revoked_admin_token_stops_working_within_the_cache_time(store: Store) -> None:
    token = admin_token(store)
    auth = ApiAuth(store.security.find_token, cache_seconds=0.2)
    client = TestClient(create_app(store, auth=auth))
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/revision", headers=headers).status_code == 200
    (record,) = store.security.list_tokens(TokenRole.ADMIN)
    store.security.revoke_token(record.token_id)
    time.sleep(0.25)
    assert client.get("/v1/revision", headers=headers).status_code == 403


def test_a_registration_token_registers_its_own_service_only(store: Store) -> None:
    admin = {"Authorization": f"Bearer {admin_token(store)}"}
    client = app(store)
    r = client.post("/v1/services/b/registration-token", headers=admin)
    assert r.status_code == 201 and r.json()["token"].startswith("ilr_")
    reg = {"Authorization": f"Bearer {r.json()['token']}"}
    instance = {"address": "127.0.0.1", "port": 15006}
    # What `interlock sidecar` does for b: all allowed.
    assert client.get("/v1/services/b", headers=reg).status_code == 404
    assert client.put("/v1/services/b", json=SERVICE, headers=reg).status_code == 201
    assert client.put("/v1/services/b/instances/b-1", json=instance, headers=reg).is_success
    assert client.post("/v1/services/b/instances/b-1/token", headers=reg).status_code == 201
    assert client.delete("/v1/services/b/instances/b-1", headers=reg).status_code == 200
    # Anything else: refused.
    assert client.put("/v1/services/c", json=SERVICE, headers=reg).status_code == 403
    assert client.get("/v1/services", headers=reg).status_code == 403
    assert client.delete("/v1/services/b", headers=reg).status_code == 403
    assert client.post("/v1/services/b/registration-token", headers=reg).status_code == 403
    assert client.get("/v1/tokens", headers=reg).status_code == 403


def test_a_token_cannot_revoke_itself_nor_the_last_admin_token(store: Store) -> None:
    """Revoking the admin token a client is using (as a fuzzer's stateful phase did) locked
    every client out until a restart: refused with 409, nothing revoked, as Consul does."""
    token = admin_token(store)
    client = app(store)
    headers = {"Authorization": f"Bearer {token}"}
    (own,) = store.security.list_tokens(TokenRole.ADMIN)
    r = client.delete(f"/v1/tokens/{own.token_id}", headers=headers)
    assert "cannot revoke itself" in assert_problem(r, 409, "path.token_id")["detail"]
    assert client.get("/v1/revision", headers=headers).status_code == 200  # still works

    # With a second admin token, the first may go (from the second); the second is then the
    # last one, refused even without a caller (the store checks it in its transaction).
    other_id, other, digest = new_token(TokenRole.ADMIN)
    store.security.add_token(Token(other_id, TokenRole.ADMIN), digest)
    r = client.delete(f"/v1/tokens/{own.token_id}", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert client.get("/v1/revision", headers=headers).status_code == 403
    with pytest.raises(Conflict, match="last active admin token"):
        store.security.revoke_token(other_id, keep_an_admin=True)
    r = client.delete(f"/v1/tokens/{other_id}", headers={"Authorization": f"Bearer {other}"})
    assert_problem(r, 409, "path.token_id")
    assert not store.security.revoked([other_id])
