"""A small client of the REST API, used by the CLI and the sidecar exactly as a user's script
would use the API: over HTTP, with problem+json errors turned into :class:`ApiError`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:8080"


class ClientError(Exception):
    """Base of what the client raises; its message is fit to show a user as it is."""


class ControlPlaneUnreachable(ClientError):
    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(f"cannot reach the control plane at {url}: {cause}")
        self.url = url


class ApiError(ClientError):
    """The API answered with an error; ``problem`` is its problem+json body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        detail = problem.get("detail") or problem.get("title") or "error"
        fields = [
            f"{e.get('field')}: {e.get('message')}"
            for e in problem.get("errors", [])
            if isinstance(e, Mapping)
        ]
        text = f"{status} {problem.get('title', '')}: {detail}".strip()
        if fields and not all(f in str(detail) for f in fields):
            text += " (" + "; ".join(fields) + ")"
        super().__init__(text)


class InterlockClient:
    """Typed calls for the endpoints the CLI and the sidecar use. Raises :class:`ClientError`."""

    def __init__(
        self,
        base_url: str = DEFAULT_CONTROL_PLANE,
        *,
        token: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        token = token if token is not None else os.environ.get("INTERLOCK_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def __enter__(self) -> InterlockClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        """One API call; returns the decoded JSON body (``None`` for an empty body)."""
        # A long-poll (?wait=) must not be cut by the client's own timeout.
        waited = 0.0
        if isinstance(params, dict) and "wait" in params:
            waited = float(params["wait"])
        timeout = httpx.Timeout(self.timeout + waited)
        try:
            response = self._http.request(method, path, json=json, params=params, timeout=timeout)
        except httpx.HTTPError as exc:
            raise ControlPlaneUnreachable(self.base_url, exc) from None
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:200]}
            if not isinstance(problem, dict):
                problem = {"title": response.reason_phrase}
            raise ApiError(response.status_code, problem)
        if not response.content:
            return None
        return response.json()

    # -- services -------------------------------------------------------------------------
    def put_service(self, name: str, *, namespace: str, protocol: str, port: int) -> Any:
        body = {"namespace": namespace, "protocol": protocol, "port": port}
        return self.request("PUT", f"/v1/services/{name}", json=body)

    def get_service(self, name: str) -> Any:
        return self.request("GET", f"/v1/services/{name}")

    def list_services(self) -> Any:
        return self.request("GET", "/v1/services")

    def delete_service(self, name: str, *, cascade: bool = False) -> Any:
        params = {"cascade": "true"} if cascade else None
        return self.request("DELETE", f"/v1/services/{name}", params=params)

    # -- instances ------------------------------------------------------------------------
    def put_instance(
        self,
        service: str,
        instance_id: str,
        *,
        address: str,
        port: int,
        labels: Mapping[str, str] | None = None,
        locality: str = "",
        healthy: bool = True,
    ) -> Any:
        body = {
            "address": address,
            "port": port,
            "labels": dict(labels or {}),
            "locality": locality,
            "healthy": healthy,
        }
        return self.request("PUT", f"/v1/services/{service}/instances/{instance_id}", json=body)

    def list_instances(self, service: str) -> Any:
        return self.request("GET", f"/v1/services/{service}/instances")

    def delete_instance(self, service: str, instance_id: str) -> Any:
        return self.request("DELETE", f"/v1/services/{service}/instances/{instance_id}")

    # -- tokens and the CA ------------------------------------------------------------------
    def issue_proxy_token(self, service: str, instance_id: str) -> Any:
        """A new proxy token for a registered instance: ``token`` (a secret), ``token_id``..."""
        return self.request("POST", f"/v1/services/{service}/instances/{instance_id}/token")

    def list_tokens(self) -> Any:
        return self.request("GET", "/v1/tokens")

    def revoke_token(self, token_id: str) -> Any:
        return self.request("DELETE", f"/v1/tokens/{token_id}")

    def get_ca(self) -> Any:
        return self.request("GET", "/v1/ca")

    def rotate_ca(
        self, action: str, *, wait: float = 0.0, pem: Mapping[str, str] | None = None
    ) -> Any:
        """One root-rotation step (``start``, ``advance`` or ``abort``); ``pem`` may carry
        ``ca_cert``, ``ca_key`` and ``ca_chain`` for ``start``."""
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        body = {"action": action, **(pem or {})}
        return self.request("POST", "/v1/ca/rotation", json=body, params=params)

    # -- policy resources ---------------------------------------------------------------------
    def apply_resources(self, documents: list[Any], *, dry_run: bool = False) -> Any:
        """POST the documents as one batch (all or nothing, one revision)."""
        params = {"dryRun": "true"} if dry_run else None
        return self.request("POST", "/v1/resources", json=documents, params=params)

    def put_resource(
        self, kind: str, namespace: str, name: str, document: Any, *, dry_run: bool = False
    ) -> Any:
        params = {"dryRun": "true"} if dry_run else None
        path = f"/v1/resources/{kind}/{namespace}/{name}"
        return self.request("PUT", path, json=document, params=params)

    def get_resource(self, kind: str, namespace: str, name: str) -> Any:
        return self.request("GET", f"/v1/resources/{kind}/{namespace}/{name}")

    def list_resources(self, kind: str | None = None, namespace: str | None = None) -> Any:
        params = {k: v for k, v in (("kind", kind), ("namespace", namespace)) if v}
        return self.request("GET", "/v1/resources", params=params or None)

    def delete_resource(self, kind: str, namespace: str, name: str) -> Any:
        return self.request("DELETE", f"/v1/resources/{kind}/{namespace}/{name}")

    # -- status -----------------------------------------------------------------------------
    def list_proxies(self) -> Any:
        return self.request("GET", "/v1/proxies")

    def proxy_config(self, node_id: str, types: list[str] | None = None) -> Any:
        params = [("type", t) for t in types or []]
        return self.request("GET", f"/v1/proxies/{node_id}/config", params=params)

    def revision_report(self, revision: int, *, wait: float = 0.0) -> Any:
        """The rollout of ``revision``; with ``wait``, held until complete or ``wait`` s pass."""
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        return self.request("GET", f"/v1/revisions/{revision}", params=params)
