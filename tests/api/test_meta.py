"""Health, the revision endpoint, OpenAPI, and a database that went away."""

from __future__ import annotations

from fastapi.testclient import TestClient

from interlock.api import create_app
from interlock.api.auth import ApiAuth
from interlock.api.context import HealthCheck
from interlock.store import Store
from tests.api.problems import assert_problem


def test_healthz_and_revision(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "revision": 0}
    client.put("/v1/services/b", json={"port": 8080})

    response = client.get("/v1/revision")

    assert response.json() == {"revision": 1}
    assert response.headers["Interlock-Revision"] == "1"


def test_openapi_describes_the_v1_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    assert {
        "/healthz",
        "/v1/revision",
        "/v1/services",
        "/v1/services/{name}",
        "/v1/services/{name}/instances",
        "/v1/services/{name}/instances/{instance_id}",
    } <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert schemas["ServiceSpec"]["required"] == ["port"]
    assert schemas["ServiceSpec"]["additionalProperties"] is False
    assert schemas["InstanceSpec"]["required"] == ["address", "port"]
    assert {"type", "title", "status", "detail", "instance", "errors"} <= set(
        schemas["Problem"]["properties"]
    )
    put = spec["paths"]["/v1/services/{name}"]["put"]["responses"]
    assert {"200", "201", "400", "413", "415", "422", "503"} <= set(put)
    assert "application/problem+json" in put["422"]["content"]


def test_an_unavailable_database_is_503_for_reads_and_writes(db_url: str) -> None:
    store = Store.open(db_url)
    client = TestClient(create_app(store))
    store.close()

    for response in (
        client.get("/healthz"),
        client.get("/v1/services"),
        client.put("/v1/services/b", json={"port": 8080}),
        client.delete("/v1/services/b"),
    ):
        assert_problem(response, 503)
        assert response.headers["Retry-After"] == "1"


def test_the_token_check_is_503_too_when_the_database_is_away(db_url: str) -> None:
    store = Store.open(db_url)
    client = TestClient(create_app(store, auth=ApiAuth(store.security.find_token)))
    store.close()

    response = client.get("/v1/services", headers={"Authorization": "Bearer some-token"})

    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"


def test_healthz_and_readyz_name_each_failing_check(db_url: str) -> None:
    reconciler: list[str | None] = [None, "loading and publishing the mesh state failed"]
    checks = (
        HealthCheck("change_feed", lambda: reconciler[0]),
        HealthCheck("reconciler", lambda: reconciler[1], readiness_only=True),
    )
    with Store.open(db_url) as store:
        client = TestClient(create_app(store, health_checks=checks))

        assert client.get("/healthz").json() == {"status": "ok", "revision": 0}
        body = assert_problem(client.get("/readyz"), 503, "reconciler")
        assert body["errors"] == [{"field": "reconciler", "message": reconciler[1]}]

        reconciler[0] = "the change feed's listener thread has ended"
        body = assert_problem(client.get("/healthz"), 503, "change_feed")
        assert "listener thread has ended" in body["detail"]
