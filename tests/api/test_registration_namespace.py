"""A registration token is confined to its namespace: it can neither move its service to
another namespace (and then mint proxy tokens, so SVIDs, of that namespace) nor act on a service
of its name that an admin registered in another namespace. Every refusal is a 403 that says
why and changes nothing; admin tokens are not confined. Instance writes are checked on the
route and on the registration fast path alike."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from interlock.api import create_app
from interlock.api.auth import ApiAuth
from interlock.api.fast_path import RegistrationFastPath
from interlock.model.identity import Token, TokenRole, new_token
from interlock.store import Store
from tests.api.problems import assert_problem, mesh

INSTANCE = {"address": "127.0.0.1", "port": 15006}


def client_of(store: Store, *, fast_path: bool = True) -> TestClient:
    app = create_app(store, auth=ApiAuth(store.security.find_token, cache_seconds=0))
    if not fast_path:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not RegistrationFastPath]
    return TestClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin_headers(store: Store) -> dict[str, str]:
    token_id, token, digest = new_token(TokenRole.ADMIN)
    assert store.security.ensure_admin_token(Token(token_id, TokenRole.ADMIN), digest)
    return bearer(token)


def registration_headers(client: TestClient, admin: dict[str, str], path: str) -> dict[str, str]:
    r = client.post(path, headers=admin)
    assert r.status_code == 201, r.text
    return bearer(r.json()["token"])


def proxy_tokens(store: Store) -> list[tuple[str, str, str]]:
    return [
        (t.namespace, t.service, t.instance_id) for t in store.security.list_tokens(TokenRole.PROXY)
    ]


def everything(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    client.headers.update(admin)
    try:
        return mesh(client)
    finally:
        del client.headers["Authorization"]


def test_a_registration_token_cannot_move_its_service_to_another_namespace(store: Store) -> None:
    """The reported scenario: a token for default/c PUTs c into payments, then asks for a proxy
    token (whose SVID would be spiffe://…/ns/payments/sa/c)."""
    client = client_of(store)
    admin = admin_headers(store)
    reg = registration_headers(client, admin, "/v1/services/c/registration-token")
    service = {"namespace": "default", "protocol": "http", "port": 8080}
    assert client.put("/v1/services/c", json=service, headers=reg).status_code == 201
    assert client.put("/v1/services/c/instances/c-1", json=INSTANCE, headers=reg).is_success
    before = everything(client, admin)

    r = client.put("/v1/services/c", json={**service, "namespace": "payments"}, headers=reg)
    problem = assert_problem(r, 403, "namespace")
    assert problem["detail"] == (
        "a registration token for default/c cannot register service c in namespace payments: "
        "it is bound to namespace default"
    )
    assert everything(client, admin) == before  # still default/c, same revision

    r = client.post("/v1/services/c/instances/c-1/token", headers=reg)
    assert r.status_code == 201
    assert r.json()["spiffe_id"].endswith("/ns/default/sa/c")
    assert proxy_tokens(store) == [("default", "c", "c-1")]


def test_nor_register_it_in_another_namespace_to_begin_with(store: Store) -> None:
    client = client_of(store)
    admin = admin_headers(store)
    reg = registration_headers(client, admin, "/v1/services/c/registration-token")
    r = client.put("/v1/services/c", json={"namespace": "payments", "port": 8080}, headers=reg)
    assert_problem(r, 403, "namespace")
    assert client.get("/v1/services/c", headers=reg).status_code == 404
    assert store.revision() == 0


def test_an_omitted_namespace_is_default_and_must_be_the_tokens_too(store: Store) -> None:
    client = client_of(store)
    admin = admin_headers(store)
    path = "/v1/services/c/registration-token?namespace=payments"
    reg = registration_headers(client, admin, path)
    r = client.put("/v1/services/c", json={"port": 8080}, headers=reg)
    problem = assert_problem(r, 403, "namespace")
    assert "cannot register service c in namespace default" in problem["detail"]
    assert store.revision() == 0
    r = client.put("/v1/services/c", json={"namespace": "payments", "port": 8080}, headers=reg)
    assert r.status_code == 201
    assert client.put("/v1/services/c/instances/c-1", json=INSTANCE, headers=reg).status_code == 201
    r = client.post("/v1/services/c/instances/c-1/token", headers=reg)
    assert r.status_code == 201
    assert r.json()["spiffe_id"].endswith("/ns/payments/sa/c")


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "route"])
def test_a_service_recreated_in_another_namespace_is_out_of_the_tokens_reach(
    store: Store, fast_path: bool
) -> None:
    client = client_of(store, fast_path=fast_path)
    admin = admin_headers(store)
    reg = registration_headers(client, admin, "/v1/services/c/registration-token")
    assert client.put("/v1/services/c", json={"port": 8080}, headers=reg).status_code == 201
    assert client.put("/v1/services/c/instances/c-1", json=INSTANCE, headers=reg).is_success
    # An admin deletes c and registers another c in payments, with an instance of its own.
    assert client.delete("/v1/services/c?cascade=true", headers=admin).is_success
    payments = {"namespace": "payments", "port": 8080}
    assert client.put("/v1/services/c", json=payments, headers=admin).status_code == 201
    assert client.put("/v1/services/c/instances/c-2", json=INSTANCE, headers=admin).is_success
    before = everything(client, admin)

    refusals = [
        ("PUT", "/v1/services/c/instances/c-1", INSTANCE, "register instances of service c"),
        ("PUT", "/v1/services/c/instances/c-2", INSTANCE, "register instances of service c"),
        ("DELETE", "/v1/services/c/instances/c-2", None, "deregister instances of service c"),
        ("POST", "/v1/services/c/instances/c-2/token", None, "issue proxy tokens for service c"),
        ("PUT", "/v1/services/c", {"port": 8080}, "change service c"),
    ]
    for method, path, body, action in refusals:
        r = client.request(method, path, json=body, headers=reg)
        problem = assert_problem(r, 403, "header.authorization")
        assert problem["detail"].startswith(f"a registration token for default/c cannot {action}")
        assert "'payments'" in problem["detail"], problem["detail"]
    assert everything(client, admin) == before
    assert proxy_tokens(store) == []


def test_admin_tokens_are_not_confined(store: Store) -> None:
    client = client_of(store)
    admin = admin_headers(store)
    for namespace in ("default", "payments"):
        body = {"namespace": namespace, "port": 8080}
        assert client.put("/v1/services/c", json=body, headers=admin).is_success
        assert client.put("/v1/services/c/instances/c-1", json=INSTANCE, headers=admin).is_success
        r = client.post("/v1/services/c/instances/c-1/token", headers=admin)
        assert r.status_code == 201
        assert r.json()["spiffe_id"].endswith(f"/ns/{namespace}/sa/c")
    assert client.delete("/v1/services/c/instances/c-1", headers=admin).status_code == 200
