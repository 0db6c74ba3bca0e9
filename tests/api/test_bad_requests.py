"""The acceptance table: every bad request is a 4xx problem+json naming what is wrong, and
leaves the revision and the stored data exactly as they were."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from interlock.api import create_app
from interlock.store import Store
from tests.api.problems import assert_problem, mesh

TEN_MB = 10 * 1024 * 1024
INSTANCE = {"address": "127.0.0.1", "port": 15006}


def big_json() -> bytes:
    return b'{"port": 8080, "padding": "' + b"x" * TEN_MB + b'"}'


def streamed_big_json() -> Iterator[bytes]:
    yield b'{"port": 8080, "padding": "'
    for _ in range(10):
        yield b"x" * (1024 * 1024)
    yield b'"}'


@dataclasses.dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    field: str | None
    json: Any = None
    content: Callable[[], Any] | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def send(self, client: TestClient) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers}
        if self.content is not None:
            kwargs["content"] = self.content()
        elif self.json is not None:
            kwargs["json"] = self.json
        return client.request(self.method, self.path, **kwargs)


def put_service(body: Any, name: str = "c", **kw: Any) -> Case:
    return Case("PUT", f"/v1/services/{name}", json=body, **kw)


def put_instance(body: Any, service: str = "b", iid: str = "b-2", **kw: Any) -> Case:
    return Case("PUT", f"/v1/services/{service}/instances/{iid}", json=body, **kw)


JSON = {"content-type": "application/json"}

CASES = {
    # names
    "service name with capitals": put_service(
        {"port": 8080}, name="Bad_Name", status=422, field="path.name"
    ),
    "service name too long": put_service(
        {"port": 8080}, name="a" * 64, status=422, field="path.name"
    ),
    # `$` in a Python regex matches before a final newline: the rules match whole values.
    "service name with a trailing newline": put_service(
        {"port": 8080}, name="c%0A", status=422, field="path.name"
    ),
    "namespace with a trailing newline": put_service(
        {"namespace": "shop\n", "port": 8080}, status=422, field="namespace"
    ),
    "namespace not a DNS label": put_service(
        {"namespace": "Shop", "port": 8080}, status=422, field="namespace"
    ),
    "instance id starting with a dash": put_instance(
        INSTANCE, iid="-b", status=422, field="path.instance_id"
    ),
    # ports
    "port 0": put_service({"port": 0}, status=422, field="port"),
    "port 70000": put_service({"port": 70000}, status=422, field="port"),
    "instance port 0": put_instance({**INSTANCE, "port": 0}, status=422, field="port"),
    "instance port 70000": put_instance({**INSTANCE, "port": 70000}, status=422, field="port"),
    # wrong types
    "port as a string": put_service({"port": "8080"}, status=422, field="port"),
    "port as a boolean": put_service({"port": True}, status=422, field="port"),
    # 8080.0 is an integer to JSON Schema (and to JavaScript), so the API takes it; 8080.5 not.
    "port as a fraction": put_service({"port": 8080.5}, status=422, field="port"),
    "port null": put_service({"port": None}, status=422, field="port"),
    "unknown protocol": put_service(
        {"port": 8080, "protocol": "udp"}, status=422, field="protocol"
    ),
    "protocol as a number": put_service(
        {"port": 8080, "protocol": 1}, status=422, field="protocol"
    ),
    "healthy as a string": put_instance(
        {**INSTANCE, "healthy": "yes"}, status=422, field="healthy"
    ),
    "label value as a number": put_instance(
        {**INSTANCE, "labels": {"version": 1}}, status=422, field="labels.version"
    ),
    "labels as a list": put_instance({**INSTANCE, "labels": ["v1"]}, status=422, field="labels"),
    "body is a list": put_service([{"port": 8080}], status=422, field="body"),
    "cascade not a boolean": Case(
        "DELETE", "/v1/services/b?cascade=maybe", status=422, field="query.cascade"
    ),
    # unknown and missing fields
    "unknown service field": put_service(
        {"port": 8080, "colour": "red"}, status=422, field="colour"
    ),
    "unknown instance field": put_instance({**INSTANCE, "weight": 3}, status=422, field="weight"),
    "missing port": put_service({"namespace": "default"}, status=422, field="port"),
    "missing address": put_instance({"port": 15006}, status=422, field="address"),
    "empty body": Case("PUT", "/v1/services/c", headers=JSON, status=422, field="body"),
    # labels, locality, address
    "label value with a space": put_instance(
        {**INSTANCE, "labels": {"version": "v 1"}}, status=422, field="labels.version"
    ),
    "label key with a space": put_instance(
        {**INSTANCE, "labels": {"my key": "v1"}}, status=422, field="labels.my key"
    ),
    "too many labels": put_instance(
        {**INSTANCE, "labels": {f"k{n}": "v" for n in range(65)}}, status=422, field="labels"
    ),
    "locality too deep": put_instance(
        {**INSTANCE, "locality": "a/b/c/d"}, status=422, field="locality"
    ),
    "address is a host name": put_instance(
        {**INSTANCE, "address": "localhost"}, status=422, field="address"
    ),
    # the body itself
    "a 10 MB body": Case(
        "PUT", "/v1/services/c", content=big_json, headers=JSON, status=413, field="body"
    ),
    "a 10 MB streamed body": Case(
        "PUT", "/v1/services/c", content=streamed_big_json, headers=JSON, status=413, field="body"
    ),
    "text/plain body": Case(
        "PUT",
        "/v1/services/c",
        content=lambda: b'{"port": 8080}',
        headers={"content-type": "text/plain"},
        status=415,
        field="header.content-type",
    ),
    "form body": Case(
        "PUT",
        "/v1/services/c",
        content=lambda: b"port=8080",
        headers={"content-type": "application/x-www-form-urlencoded"},
        status=415,
        field="header.content-type",
    ),
    "body without a content type": Case(
        "PUT",
        "/v1/services/c",
        content=lambda: b'{"port": 8080}',
        status=415,
        field="header.content-type",
    ),
    "malformed JSON": Case(
        "PUT",
        "/v1/services/c",
        content=lambda: b'{"port": 80',
        headers=JSON,
        status=400,
        field="body",
    ),
    "invalid UTF-8": Case(
        "PUT",
        "/v1/services/c",
        content=lambda: b'{"port": "\xff"}',
        headers=JSON,
        status=400,
        field=None,
    ),
    "deeply nested JSON": Case(
        "PUT",
        "/v1/services/c",
        content=lambda: b"[" * 100_000 + b"]" * 100_000,
        headers=JSON,
        status=400,
        field=None,
    ),
    # things that do not exist, or may not be done
    "instance of a missing service": put_instance(
        INSTANCE, service="nope", status=404, field="path.name"
    ),
    "delete a service that has instances": Case("DELETE", "/v1/services/b", status=409, field=None),
    "unknown route": Case("GET", "/v1/nothing", status=404, field=None),
    "wrong method": Case("POST", "/v1/services/b", json={"port": 8080}, status=405, field=None),
}


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    assert client.put("/v1/services/b", json={"port": 8080}).status_code == 201
    assert client.put("/v1/services/b/instances/b-1", json=INSTANCE).status_code == 201
    return client


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_request_is_a_problem_and_changes_nothing(seeded: TestClient, case: Case) -> None:
    before = mesh(seeded)

    response = case.send(seeded)

    assert_problem(response, case.status, case.field)
    assert "Interlock-Revision" not in response.headers
    assert mesh(seeded) == before


def test_every_wrong_field_is_named_at_once(client: TestClient) -> None:
    response = client.put(
        "/v1/services/Bad/instances/-x",
        json={"address": "nowhere", "port": 0, "labels": {"v": "a b"}, "extra": 1},
    )

    body = assert_problem(response, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"path.name", "path.instance_id", "address", "port", "labels.v", "extra"}


def test_wrong_method_lists_the_allowed_ones(client: TestClient) -> None:
    response = client.post("/v1/services/b", json={"port": 8080})

    assert_problem(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {
        "GET",
        "HEAD",
        "PUT",
        "DELETE",
    }


def test_a_smaller_body_limit_applies(store: Store) -> None:
    small = TestClient(create_app(store, max_body_bytes=16))

    assert_problem(small.put("/v1/services/b", json={"port": 8080, "namespace": "default"}), 413)
    assert small.put("/v1/services/b", json={"port": 8080}).status_code == 201
