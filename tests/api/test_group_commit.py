"""Concurrent registrations through the API: committed together, each answered on its own.

The store commits writes that arrive together in one transaction and one revision (see
tests/store/test_group_commit.py); here many clients PUT at once and each gets its own status,
body and ``Interlock-Revision``, and a bad request among them gets its own problem document
while the others land.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from interlock.api import create_app
from interlock.api.fast_path import RegistrationFastPath
from interlock.store import Store
from tests.api.problems import assert_problem
from tests.store.test_group_commit import WAIT_S, held_writer


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=40) as executor:
        yield executor


def body(n: int) -> dict[str, Any]:
    return {"address": f"10.0.0.{n + 1}", "port": 8000 + n, "labels": {"n": str(n)}}


def test_concurrent_puts_each_get_their_own_answer_at_a_shared_revision(
    client: TestClient, store: Store, pool: ThreadPoolExecutor
) -> None:
    store.clock = lambda: 1e9
    assert client.put("/v1/services/b", json={"port": 8080}).status_code == 201

    with held_writer(store, queued=20):
        puts = [
            pool.submit(client.put, f"/v1/services/b/instances/b-{n}", json=body(n))
            for n in range(20)
        ]

    for n, future in enumerate(puts):
        response: httpx.Response = future.result(WAIT_S)
        assert response.status_code == 201, response.text
        assert response.headers["Interlock-Revision"] == "2"
        assert response.json() == {
            "service": "b",
            "instance_id": f"b-{n}",
            **body(n),
            "locality": "",
            "healthy": True,
            "ttl": None,
            "health": {
                "status": "healthy",
                "reason": "registered",
                "since": "2001-09-09T01:46:40.000+00:00",
            },
            "sidecar": False,
            "revision": 2,
            "created": True,
            "changed": True,
        }
    listed = client.get("/v1/services/b/instances").json()
    assert listed["revision"] == 2
    assert [i["instance_id"] for i in listed["items"]] == sorted(f"b-{n}" for n in range(20))
    changes = client.get("/v1/revisions/2").json()["changes"]
    assert sorted(c["name"] for c in changes) == sorted(f"b/b-{n}" for n in range(20))


def test_a_bad_registration_among_them_gets_its_own_problem_and_the_rest_land(
    client: TestClient, store: Store, pool: ThreadPoolExecutor
) -> None:
    assert client.put("/v1/services/b", json={"port": 8080}).status_code == 201

    with held_writer(store, queued=11):  # the invalid body never reaches the store
        good = [
            pool.submit(client.put, f"/v1/services/b/instances/b-{n}", json=body(n))
            for n in range(10)
        ]
        missing = pool.submit(client.put, "/v1/services/nope/instances/x-1", json=body(0))
        invalid = pool.submit(
            client.put, "/v1/services/b/instances/b-bad", json={"address": "10.0.0.1", "port": 0}
        )

    problem = assert_problem(missing.result(WAIT_S), 404, "path.name")
    assert "'nope'" in problem["detail"]
    assert_problem(invalid.result(WAIT_S), 422, "port")
    assert {f.result(WAIT_S).status_code for f in good} == {201}
    assert {f.result(WAIT_S).headers["Interlock-Revision"] for f in good} == {"2"}
    assert len(client.get("/v1/services/b/instances").json()["items"]) == 10
    assert client.get("/v1/revision").json()["revision"] == 2


def _without_fast_path(store: Store) -> TestClient:
    app = create_app(store)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RegistrationFastPath]
    return TestClient(app)


REQUESTS: list[tuple[str, str, Any]] = [
    ("PUT", "/v1/services/b", {"port": 8080}),
    ("PUT", "/v1/services/b/instances/b-1", body(1)),  # 201
    ("PUT", "/v1/services/b/instances/b-1", body(1)),  # 200, unchanged
    ("PUT", "/v1/services/b/instances/b-1", {**body(1), "healthy": False}),  # 200, changed
    ("PUT", "/v1/services/b/instances/b-1", {**body(1), "ttl": "30s"}),  # 200, changed
    ("PUT", "/v1/services/nope/instances/x", body(1)),  # 404 from the store
    ("PUT", "/v1/services/b/instances/b-2", {**body(2), "port": "80"}),  # 422 (strict)
    ("PUT", "/v1/services/b/instances/b-2", {**body(2), "extra": 1}),  # 422 (closed)
    ("PUT", "/v1/services/B/instances/b-2", body(2)),  # 422 (path)
    ("PUT", "/v1/services/b/instances/b-2", None),  # 422 (no body)
    ("PUT", "/v1/services/b/instances/b-2", "[1, 2"),  # 400 (malformed JSON)
]


def test_the_registration_fast_path_answers_exactly_as_the_route(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Registrations are answered without FastAPI's machinery when they are well formed;
    every response (status, body, revision header, content type) is the route's."""
    answers = []
    for fast in (True, False):
        url = f"sqlite:///{tmp_path_factory.mktemp('db')}/mesh.db"
        with Store.open(url) as store:
            store.clock = lambda: 1e9  # health.since is in the answer: the same in both runs
            client = TestClient(create_app(store)) if fast else _without_fast_path(store)
            seen = []
            for method, path, payload in REQUESTS:
                if isinstance(payload, str):
                    response = client.request(
                        method, path, content=payload, headers={"content-type": "application/json"}
                    )
                else:
                    response = client.request(method, path, json=payload)
                seen.append(
                    (
                        response.status_code,
                        response.headers.get("content-type"),
                        response.headers.get("Interlock-Revision"),
                        response.content,
                    )
                )
            answers.append(seen)
    assert answers[0] == answers[1]
    assert [status for status, *_ in answers[0]] == [
        201,
        201,
        200,
        200,
        200,
        404,
        422,
        422,
        422,
        422,
        400,
    ]
