"""Assertions on problem+json responses and on the stored mesh, for the API tests."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status`` that names ``field`` (if given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:interlock:problem:")
    assert body["title"] and body["detail"]
    # A URI reference: the path as sent, percent-encoded.
    assert body["instance"] == response.request.url.raw_path.decode().partition("?")[0]
    assert "Traceback" not in response.text
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def mesh(client: TestClient) -> dict[str, Any]:
    """Everything the API shows: the revision, every service and every instance."""
    services = client.get("/v1/services").json()["items"]
    instances = {
        s["name"]: client.get(f"/v1/services/{s['name']}/instances").json()["items"]
        for s in services
    }
    return {
        "revision": client.get("/v1/revision").json()["revision"],
        "services": services,
        "instances": instances,
    }
