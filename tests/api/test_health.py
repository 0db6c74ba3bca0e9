"""Health over the API, on SQLite and PostgreSQL: an instance's ``ttl`` and read-only
``health``, heartbeats, app probe reports, and who may send them. (What the sweep does with
ttls and leases is tested in tests/store/test_health.py.)"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from interlock.api import create_app
from interlock.api.auth import ApiAuth
from interlock.model.identity import Token, TokenRole, new_token
from interlock.store import Store
from tests.api.problems import assert_problem

B1 = {"address": "10.0.0.1", "port": 15006}


@pytest.fixture
def with_b(client: TestClient, store: Store) -> TestClient:
    store.clock = lambda: 1e9
    assert client.put("/v1/services/b", json={"port": 8080}).status_code == 201
    return client


def test_a_ttl_is_registered_and_shown_as_written(with_b: TestClient) -> None:
    r = with_b.put("/v1/services/b/instances/b-1", json={**B1, "ttl": "1m30s"})
    assert r.status_code == 201, r.text
    assert r.json()["ttl"] == "90s"
    assert r.json()["health"] == {
        "status": "healthy",
        "reason": "registered",
        "since": "2001-09-09T01:46:40.000+00:00",
    }
    listed = with_b.get("/v1/services/b/instances").json()["items"]
    assert [(i["ttl"], i["healthy"]) for i in listed] == [("90s", True)]


@pytest.mark.parametrize("ttl", ["", "5 minutes", "0s", "500ms", "25h", "1.0005s", 30, None])
def test_a_bad_ttl_is_refused_naming_it(with_b: TestClient, ttl: object) -> None:
    body = {**B1, "ttl": ttl}
    if ttl is None:
        assert with_b.put("/v1/services/b/instances/b-1", json=body).status_code == 201
        return
    assert_problem(with_b.put("/v1/services/b/instances/b-1", json=body), 422, "ttl")
    assert_problem(with_b.get("/v1/services/b/instances/b-1"), 404)


def test_heartbeats_need_a_ttl(with_b: TestClient) -> None:
    with_b.put("/v1/services/b/instances/b-1", json=B1)
    problem = assert_problem(with_b.put("/v1/services/b/instances/b-1/heartbeat"), 409, "ttl")
    assert "register it with one" in problem["detail"]
    assert_problem(with_b.put("/v1/services/b/instances/b-9/heartbeat"), 404, "path.instance_id")
    with_b.put("/v1/services/b/instances/b-1", json={**B1, "ttl": "30s"})
    r = with_b.put("/v1/services/b/instances/b-1/heartbeat")
    assert r.status_code == 200, r.text
    assert (r.json()["changed"], r.json()["healthy"]) == (False, True)
    assert r.headers["Interlock-Revision"] == "3"  # a heartbeat that changes nothing


def test_an_app_report_takes_an_instance_out_and_brings_it_back(with_b: TestClient) -> None:
    with_b.put("/v1/services/b/instances/b-1", json=B1)
    path = "/v1/services/b/instances/b-1/health"
    reason = "GET http://127.0.0.1:9001/healthz: HTTP 503, 3 failures in a row"
    r = with_b.put(path, json={"status": "unhealthy", "reason": reason})
    assert r.status_code == 200, r.text
    assert (r.json()["healthy"], r.json()["changed"], r.json()["revision"]) == (False, True, 3)
    shown = with_b.get("/v1/services/b/instances/b-1").json()
    assert shown["healthy"] is False
    assert shown["health"]["status"] == "unhealthy"
    assert shown["health"]["reason"] == reason
    r = with_b.put(path, json={"status": "healthy"})
    assert (r.json()["healthy"], r.json()["health"]["reason"]) == (True, "its app probe passes")
    r = with_b.put(path, json={"status": "unhealthy"})
    assert r.json()["health"]["reason"] == "its app probe fails"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "sick"}, "status"),
        ({"status": "unhealthy", "reason": "two\nlines"}, "reason"),
        ({"status": "unhealthy", "reason": "x" * 600}, "reason"),
        ({"status": "unhealthy", "extra": 1}, "extra"),
        ({}, "status"),
    ],
)
def test_a_bad_report_is_refused_naming_the_field(
    with_b: TestClient, body: dict[str, object], field: str
) -> None:
    with_b.put("/v1/services/b/instances/b-1", json=B1)
    assert_problem(with_b.put("/v1/services/b/instances/b-1/health", json=body), 422, field)
    assert with_b.get("/v1/services/b/instances/b-1").json()["healthy"] is True


def test_a_registration_token_reports_for_its_own_service_only(store: Store) -> None:
    client = TestClient(create_app(store, auth=ApiAuth(store.security.find_token, cache_seconds=0)))
    token_id, token, digest = new_token(TokenRole.ADMIN)
    store.security.ensure_admin_token(Token(token_id, TokenRole.ADMIN), digest)
    admin = {"Authorization": f"Bearer {token}"}
    for name in ("b", "c"):
        client.put(f"/v1/services/{name}", json={"port": 8080}, headers=admin)
        body = {**B1, "ttl": "30s"}
        client.put(f"/v1/services/{name}/instances/{name}-1", json=body, headers=admin)
    issued = client.post("/v1/services/b/registration-token", headers=admin).json()["token"]
    reg = {"Authorization": f"Bearer {issued}"}
    unhealthy = {"status": "unhealthy", "reason": "probe"}
    assert client.put("/v1/services/b/instances/b-1/heartbeat", headers=reg).status_code == 200
    r = client.put("/v1/services/b/instances/b-1/health", json=unhealthy, headers=reg)
    assert r.status_code == 200
    for path in ("/v1/services/c/instances/c-1/heartbeat", "/v1/services/c/instances/c-1/health"):
        assert_problem(client.put(path, json=unhealthy, headers=reg), 403, "header.authorization")
    assert client.get("/v1/services/c/instances/c-1", headers=admin).json()["healthy"] is True
