"""Applying policies through the REST API and counting where requests land, for traffic tests."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

NET = "networking.istio.io/v1"


class HasApi(Protocol):
    def api(self) -> httpx.Client: ...


def doc(kind: str, name: str, spec: Mapping[str, Any], api_version: str = NET) -> dict[str, Any]:
    """A policy document in namespace ``default``."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}


def apply(server: HasApi, *documents: Mapping[str, Any], wait: float = 15.0) -> int:
    """Apply ``documents`` in one revision and return once every connected proxy ACKed it
    (what ``interlock apply --wait`` does); the revision."""
    with server.api() as api:
        response = api.post("/v1/resources", json=list(documents))
        assert response.status_code == 200, response.text
        revision = int(response.json()["revision"])
        report = api.get(
            f"/v1/revisions/{revision}", params={"wait": wait}, timeout=wait + 5
        ).json()
    proxies = report["proxies"]
    assert proxies["complete"] and not proxies["nacked"], report
    return revision


def delete(server: HasApi, kind: str, name: str, wait: float = 15.0) -> None:
    with server.api() as api:
        response = api.delete(f"/v1/resources/{kind}/default/{name}")
        assert response.status_code == 200, response.text
        revision = int(response.json()["revision"])
        report = api.get(
            f"/v1/revisions/{revision}", params={"wait": wait}, timeout=wait + 5
        ).json()
    assert report["proxies"]["complete"] and not report["proxies"]["nacked"], report


def landings(
    port: int,
    host: str,
    count: int,
    *,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
) -> collections.Counter[str]:
    """Send ``count`` GETs through a proxy's listener on 127.0.0.1:``port``; count answers by
    the instance that served them (``status <code>`` for anything but 200)."""
    landed: collections.Counter[str] = collections.Counter()
    with httpx.Client(timeout=5) as client:
        for _ in range(count):
            r = client.get(
                f"http://127.0.0.1:{port}{path}", headers={"Host": host, **(headers or {})}
            )
            landed[r.json()["instance"] if r.status_code == 200 else f"status {r.status_code}"] += 1
    return landed
