"""/v1/services: the happy paths, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.problems import assert_problem

B = {"namespace": "shop", "protocol": "grpc", "port": 9090}


def test_put_creates_with_201_and_reports_the_revision(client: TestClient) -> None:
    response = client.put("/v1/services/b", json=B)

    assert response.status_code == 201
    assert response.headers["Interlock-Revision"] == "1"
    assert response.json() == {
        "name": "b",
        **B,
        "health_check": None,
        "export_to": [],
        "revision": 1,
        "created": True,
        "changed": True,
    }


def test_the_same_put_again_is_200_with_the_same_revision_and_one_row(
    client: TestClient,
) -> None:
    client.put("/v1/services/b", json=B)

    again = client.put("/v1/services/b", json=B)

    assert again.status_code == 200
    assert again.headers["Interlock-Revision"] == "1"
    assert again.json()["revision"] == 1
    assert (again.json()["created"], again.json()["changed"]) == (False, False)
    assert client.get("/v1/revision").json() == {"revision": 1}
    assert len(client.get("/v1/services").json()["items"]) == 1


def test_a_changed_body_replaces_the_service_in_a_new_revision(client: TestClient) -> None:
    client.put("/v1/services/b", json=B)

    response = client.put("/v1/services/b", json={**B, "port": 9091})

    assert response.status_code == 200
    assert response.json()["revision"] == 2
    assert client.get("/v1/services/b").json()["port"] == 9091


def test_namespace_and_protocol_have_defaults(client: TestClient) -> None:
    response = client.put("/v1/services/b", json={"port": 8080})

    body = response.json()
    assert (body["namespace"], body["protocol"], body["port"]) == ("default", "http", 8080)


def test_list_is_sorted_and_carries_its_revision(client: TestClient) -> None:
    for name in ["c", "a", "b"]:
        client.put(f"/v1/services/{name}", json={"port": 8080})

    response = client.get("/v1/services")

    assert response.status_code == 200
    assert response.headers["Interlock-Revision"] == "3"
    assert response.json()["revision"] == 3
    assert [s["name"] for s in response.json()["items"]] == ["a", "b", "c"]


def test_get_one_carries_the_revision_it_was_read_at(client: TestClient) -> None:
    client.put("/v1/services/b", json=B)
    client.put("/v1/services/c", json=B)

    response = client.get("/v1/services/b")

    assert response.headers["Interlock-Revision"] == "2"
    assert response.json() == {
        "name": "b",
        **B,
        "health_check": None,
        "export_to": [],
        "revision": 2,
    }


def test_get_a_missing_service_is_404(client: TestClient) -> None:
    assert_problem(client.get("/v1/services/nope"), 404, "path.name")


def test_delete_returns_the_new_revision(client: TestClient) -> None:
    client.put("/v1/services/b", json=B)

    response = client.delete("/v1/services/b")

    assert response.status_code == 200
    assert response.headers["Interlock-Revision"] == "2"
    assert response.json() == {"revision": 2}
    assert_problem(client.get("/v1/services/b"), 404)
    assert_problem(client.delete("/v1/services/b"), 404, "path.name")


def test_delete_with_instances_is_409_unless_cascade(client: TestClient) -> None:
    client.put("/v1/services/b", json=B)
    client.put("/v1/services/b/instances/b-1", json={"address": "127.0.0.1", "port": 15006})

    refused = client.delete("/v1/services/b")
    assert_problem(refused, 409)
    assert "cascade" in refused.json()["detail"]
    assert client.get("/v1/revision").json()["revision"] == 2

    response = client.delete("/v1/services/b", params={"cascade": "true"})

    assert response.json() == {"revision": 3}
    assert client.get("/v1/services").json() == {"revision": 3, "items": []}
    assert_problem(client.get("/v1/services/b/instances"), 404, "path.name")


def test_the_control_planes_own_identity_cannot_be_registered(client: TestClient) -> None:
    """`interlock` in the root namespace is the SPIFFE ID the control plane serves with: a
    service of that name there would hold SVIDs Envoy accepts as the control plane."""
    r = client.put("/v1/services/interlock", json={"namespace": "interlock-system", "port": 80})
    assert r.status_code == 422
    problem = r.json()
    assert problem["errors"][0]["field"] == "path.name" and "reserved" in problem["detail"]
    assert client.get("/v1/services/interlock").status_code == 404
    # The name is fine elsewhere.
    assert client.put("/v1/services/interlock", json={"port": 80}).status_code == 201


def test_a_health_check_is_stored_and_shown_with_its_defaults(client: TestClient) -> None:
    body = {**B, "health_check": {"path": "/healthz", "interval": "1.5s"}}
    response = client.put("/v1/services/b", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["health_check"] == {
        "path": "/healthz",
        "interval": "1.5s",
        "timeout": "1s",
        "unhealthy_threshold": 3,
        "healthy_threshold": 2,
    }
    assert client.put("/v1/services/b", json=body).json()["changed"] is False
    tcp = {"protocol": "tcp", "port": 5432, "health_check": {}}
    assert client.put("/v1/services/db", json=tcp).json()["health_check"]["path"] is None
    assert client.put("/v1/services/b", json=B).json()["health_check"] is None  # replaced


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"path": "healthz"}, "health_check.path"),
        ({"path": "/a b"}, "health_check.path"),
        ({"interval": "10ms"}, "health_check.interval"),
        ({"interval": "five seconds"}, "health_check.interval"),
        ({"interval": "1s", "timeout": "2s"}, "health_check.timeout"),
        ({"unhealthy_threshold": 0}, "health_check.unhealthy_threshold"),
        ({"healthy_threshold": "2"}, "health_check.healthy_threshold"),
        ({"method": "POST"}, "health_check.method"),
    ],
)
def test_a_bad_health_check_is_refused_naming_the_field(
    client: TestClient, check: dict[str, object], field: str
) -> None:
    assert_problem(client.put("/v1/services/b", json={**B, "health_check": check}), 422, field)
    assert client.get("/v1/revision").json()["revision"] == 0


def test_a_tcp_service_is_checked_by_connecting(client: TestClient) -> None:
    body = {"protocol": "tcp", "port": 5432, "health_check": {"path": "/healthz"}}
    problem = assert_problem(client.put("/v1/services/db", json=body), 422, "health_check.path")
    assert "leave path out" in problem["detail"]


def test_export_to_is_stored_and_shown(client: TestClient) -> None:
    response = client.put("/v1/services/b", json={**B, "export_to": [".", "team"]})
    assert response.status_code == 201
    assert response.json()["export_to"] == [".", "team"]
    assert client.get("/v1/services/b").json()["export_to"] == [".", "team"]
    assert client.put("/v1/services/b", json=B).json()["export_to"] == []  # everywhere again


@pytest.mark.parametrize(
    ("export_to", "field"),
    [
        (["*", "team"], "export_to"),
        (["~", "."], "export_to"),
        (["Team_A"], "export_to[0]"),
        ([".", "."], "export_to[1]"),
        (".", "export_to"),
    ],
)
def test_a_bad_export_to_is_refused_naming_the_field(
    client: TestClient, export_to: object, field: str
) -> None:
    assert_problem(client.put("/v1/services/b", json={**B, "export_to": export_to}), 422, field)
