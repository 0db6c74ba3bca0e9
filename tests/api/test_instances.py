"""/v1/services/{name}/instances: the happy paths, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from interlock.store import Store
from tests.api.problems import assert_problem

B1 = {
    "address": "10.0.0.1",
    "port": 15006,
    "labels": {"version": "v1"},
    "locality": "eu/west-1",
    "healthy": True,
    "sidecar": True,
}


#: What an instance registered healthy at the pinned clock (1e9) shows of its health.
REGISTERED = {
    "ttl": None,
    "health": {
        "status": "healthy",
        "reason": "registered",
        "since": "2001-09-09T01:46:40.000+00:00",
    },
}


@pytest.fixture
def with_b(client: TestClient, store: Store) -> TestClient:
    store.clock = lambda: 1e9
    assert client.put("/v1/services/b", json={"port": 8080}).status_code == 201
    return client


def test_put_creates_with_201(with_b: TestClient) -> None:
    response = with_b.put("/v1/services/b/instances/b-1", json=B1)

    assert response.status_code == 201
    assert response.headers["Interlock-Revision"] == "2"
    assert response.json() == {
        "service": "b",
        "instance_id": "b-1",
        **B1,
        **REGISTERED,
        "revision": 2,
        "created": True,
        "changed": True,
    }


def test_defaults_for_labels_locality_health_and_sidecar(with_b: TestClient) -> None:
    response = with_b.put("/v1/services/b/instances/b-1", json={"address": "::1", "port": 1})

    instance = response.json()
    assert (instance["labels"], instance["locality"], instance["healthy"]) == ({}, "", True)
    # A registration that does not say is a plain instance: callers send it plain text.
    assert instance["sidecar"] is False


def test_whether_a_sidecar_fronts_it_is_part_of_the_registration(with_b: TestClient) -> None:
    with_b.put("/v1/services/b/instances/b-1", json=B1)

    plain = with_b.put("/v1/services/b/instances/b-1", json={**B1, "sidecar": False})

    assert (plain.status_code, plain.json()["changed"], plain.json()["revision"]) == (200, True, 3)
    assert with_b.get("/v1/services/b/instances/b-1").json()["sidecar"] is False
    assert_problem(
        with_b.put("/v1/services/b/instances/b-1", json={**B1, "sidecar": "yes"}),
        422,
        "sidecar",
    )


def test_the_same_put_again_is_200_with_the_same_revision(with_b: TestClient) -> None:
    with_b.put("/v1/services/b/instances/b-1", json=B1)

    again = with_b.put("/v1/services/b/instances/b-1", json=B1)

    assert again.status_code == 200
    assert again.json()["revision"] == 2
    assert again.json()["changed"] is False
    assert with_b.get("/v1/revision").json()["revision"] == 2
    assert len(with_b.get("/v1/services/b/instances").json()["items"]) == 1


def test_a_changed_instance_gets_a_new_revision(with_b: TestClient) -> None:
    with_b.put("/v1/services/b/instances/b-1", json=B1)

    response = with_b.put("/v1/services/b/instances/b-1", json={**B1, "healthy": False})

    assert (response.status_code, response.json()["revision"]) == (200, 3)
    assert with_b.get("/v1/services/b/instances/b-1").json()["healthy"] is False


def test_list_and_get(with_b: TestClient) -> None:
    for iid in ["b-2", "b-1"]:
        with_b.put(f"/v1/services/b/instances/{iid}", json=B1)

    listed = with_b.get("/v1/services/b/instances")
    one = with_b.get("/v1/services/b/instances/b-2")

    assert listed.headers["Interlock-Revision"] == "3"
    assert [i["instance_id"] for i in listed.json()["items"]] == ["b-1", "b-2"]
    assert one.json() == {"service": "b", "instance_id": "b-2", **B1, **REGISTERED, "revision": 3}


def test_missing_instance_is_404_naming_the_instance(with_b: TestClient) -> None:
    assert_problem(with_b.get("/v1/services/b/instances/b-9"), 404, "path.instance_id")
    assert_problem(with_b.delete("/v1/services/b/instances/b-9"), 404, "path.instance_id")
    assert_problem(with_b.get("/v1/services/x/instances/b-9"), 404, "path.name")


def test_delete(with_b: TestClient) -> None:
    with_b.put("/v1/services/b/instances/b-1", json=B1)

    response = with_b.delete("/v1/services/b/instances/b-1")

    assert (response.status_code, response.json()) == (200, {"revision": 3})
    assert response.headers["Interlock-Revision"] == "3"
    assert with_b.get("/v1/services/b/instances").json() == {"revision": 3, "items": []}
