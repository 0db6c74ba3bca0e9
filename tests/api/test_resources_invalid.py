"""The acceptance table for policy resources: every invalid spec, of every kind, is a 4xx
problem+json naming the wrong field (with the document's index in a batch), and leaves the
stored resources and the revision exactly as they were. Never a 500."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from interlock.api import create_app
from interlock.store import Store
from tests.api.problems import assert_problem
from tests.model.specs import INVALID, VALID, Invalid, valid
from tests.store.databases import fresh_pg_schema, sqlite_url

YAML = {"content-type": "application/yaml"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One store per backend for the whole table, holding a resource of every kind."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = sqlite_url(str(tmp_path_factory.mktemp("db")))
        else:
            url = stack.enter_context(fresh_pg_schema(request.getfixturevalue("postgres_url")))
        store = stack.enter_context(Store.open(url))
        client = TestClient(create_app(store))
        client.put("/v1/services/reviews", json={"port": 9080}).raise_for_status()
        client.post("/v1/resources", json=[valid(k) for k in VALID]).raise_for_status()
        yield client


def stored(client: TestClient) -> dict[str, Any]:
    """What a user can see: the revision and every resource."""
    listing = client.get("/v1/resources").json()
    return {"revision": client.get("/v1/revision").json()["revision"], "items": listing["items"]}


@pytest.mark.parametrize("case", INVALID.values(), ids=list(INVALID))
def test_an_invalid_document_is_refused_with_its_field(api: TestClient, case: Invalid) -> None:
    before = stored(api)

    response = api.post("/v1/resources", json=case.document)

    body = assert_problem(response, 422, case.field)
    message = next(e["message"] for e in body["errors"] if e["field"] == case.field)
    assert case.says.lower() in message.lower()
    assert stored(api) == before


BATCH_CASES = [
    "route weights below 100",
    "dr duplicate subset names",
    "gw HTTPS without tls",
    "ap unknown condition key",
    "tm unknown provider",
    "unknown kind",
]


@pytest.mark.parametrize("name", BATCH_CASES)
def test_one_bad_document_in_a_yaml_stream_applies_none(api: TestClient, name: str) -> None:
    before = stored(api)
    fresh = valid("Gateway")
    fresh["metadata"]["name"] = "new-gateway"
    stream = yaml.safe_dump_all([fresh, INVALID[name].document, valid("RateLimit")])

    response = api.post("/v1/resources", content=stream, headers=YAML)

    body = assert_problem(response, 422, f"[1].{INVALID[name].field}")
    assert "none of the 3 documents was applied" in body["detail"]
    assert stored(api) == before
    assert api.get("/v1/resources/gw/default/new-gateway").status_code == 404


def test_a_put_of_an_invalid_spec_changes_nothing(api: TestClient) -> None:
    before = stored(api)
    case = INVALID["dr maglev table size not prime"]

    response = api.put("/v1/resources/dr/default/reviews", json=case.document)

    assert_problem(response, 422, case.field)
    assert stored(api) == before


def alias_bomb(levels: int) -> str:
    """YAML whose aliases expand to 3**levels values (a "billion laughs")."""
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [
        ("kind: [", YAML, 400, "body"),
        ("{", {"content-type": "application/json"}, 400, "body"),
        ("kind: VirtualService", {"content-type": "text/plain"}, 415, "header.content-type"),
        ("kind: VirtualService", {}, 415, "header.content-type"),
        ("---\n---\n", YAML, 422, "body"),
        ("[]", {"content-type": "application/json"}, 422, "body"),
        ("42", {"content-type": "application/json"}, 422, "body"),
        ("- 1\n- 2\n", YAML, 422, "[0]"),
        ("\xff\xfe", YAML, 400, "body"),
        ("[" * 5000 + "]" * 5000, {"content-type": "application/json"}, 400, "body"),
        (
            alias_bomb(25),
            YAML,
            422,
            None,
        ),
    ],
    ids=[
        "malformed yaml",
        "malformed json",
        "text/plain",
        "no content type",
        "no documents",
        "empty json list",
        "json scalar",
        "yaml list of scalars",
        "not utf-8",
        "deeply nested json",
        "yaml alias bomb",
    ],
)
def test_bodies_that_are_not_documents(
    api: TestClient, body: str, headers: dict[str, str], status: int, field: str | None
) -> None:
    before = stored(api)
    content = body.encode("latin-1") if body.startswith("\xff") else body.encode()

    response = api.post("/v1/resources", content=content, headers=headers)

    assert_problem(response, status, field)
    assert stored(api) == before
