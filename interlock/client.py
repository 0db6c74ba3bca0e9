"""A small client of the REST API, used by the CLI and the sidecar exactly as a user's script
would use the API: over HTTP, with problem+json errors turned into :class:`ApiError`."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from interlock.trust import (
    BUNDLE_PATH,
    BundleUnreachable,
    Trust,
    TrustError,
    client_context,
    verification_failure,
)

DEFAULT_CONTROL_PLANE = "https://127.0.0.1:8080"


class ClientError(Exception):
    """Base of what the client raises; its message is fit to show a user as it is."""


class ControlPlaneUnreachable(ClientError):
    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(f"cannot reach the control plane at {url}: {cause}")
        self.url = url


class ControlPlaneUntrusted(ClientError):
    """The control plane's certificate did not verify against the trusted bundle (or the
    trust options could not be used)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the control plane at {url} is not trusted: {reason}. Give --ca-file FILE (the "
            "server writes its CA bundle beside its database: <db>.ca.pem) or "
            "--ca-fingerprint sha256:HEX (the server prints it at start)"
        )
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
    """Typed calls for the endpoints the CLI and the sidecar use. Raises :class:`ClientError`.

    An ``https://`` control plane is verified against ``trust`` (see :mod:`interlock.trust`);
    ``http://`` is only for a server run with ``--plaintext`` on loopback (``trust`` does not
    apply to it)."""

    def __init__(
        self,
        base_url: str = DEFAULT_CONTROL_PLANE,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        trust: Trust | None = None,
    ) -> None:
        #: Every replica's URL (``--control-plane A,B``); calls go to the first that answers
        #: and stay there until it stops answering.
        self.urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
        if not self.urls:
            raise ClientError("--control-plane must be an https:// (or http://) URL")
        trust = trust or Trust()
        schemes = {u.partition("://")[0].lower() for u in self.urls}
        if not schemes <= {"http", "https"} or len(schemes) != 1:
            raise ClientError(
                "--control-plane must be https:// (or http://) URLs of one scheme, "
                f"got {base_url!r}"
            )
        self.base_url = self.urls[0]
        self.context: ssl.SSLContext | None = None
        if schemes == {"https"}:
            bundle = self._bundle(trust, timeout)
            self.context = (
                client_context(bundle)
                if bundle is not None
                else ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            )
        token = token if token is not None else os.environ.get("INTERLOCK_TOKEN")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._http = self._client(self.base_url)

    def _bundle(self, trust: Trust, timeout: float) -> bytes | None:
        """The trusted bundle, from the first replica that answers (they share the CA)."""
        for url in self.urls:
            try:
                bundle = trust.bundle(url, timeout)
            except BundleUnreachable as exc:
                if url == self.urls[-1]:
                    raise ControlPlaneUnreachable(url, exc) from None
                continue
            except TrustError as exc:
                raise ClientError(str(exc)) from None
            self.base_url = url
            return bundle
        return None

    def _client(self, url: str) -> httpx.Client:
        return httpx.Client(
            base_url=url,
            timeout=self.timeout,
            headers=self._headers,
            verify=self.context if self.context is not None else True,
        )

    def _next_replica(self) -> None:
        index = (self.urls.index(self.base_url) + 1) % len(self.urls)
        self._http.close()
        self.base_url = self.urls[index]
        self._http = self._client(self.base_url)

    def trust_more(self, bundle_pem: bytes) -> None:
        """Also trust the roots of ``bundle_pem`` from now on (a root rotation published a new
        one: the server's next certificate may come from it)."""
        if self.context is not None:
            self.context.load_verify_locations(cadata=bundle_pem.decode("ascii"))

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
        # Each replica once, starting with the one that answered last: a replica that does
        # not answer (refused, reset, timed out) hands the call to the next. The calls the
        # sidecar makes are idempotent (PUT, DELETE); a repeated token issue is harmless.
        for attempt in range(len(self.urls)):
            try:
                response = self._http.request(
                    method, path, json=json, params=params, timeout=timeout
                )
                break
            except httpx.HTTPError as exc:
                reason = verification_failure(exc)
                if reason is not None:
                    raise ControlPlaneUntrusted(self.base_url, reason) from None
                if attempt == len(self.urls) - 1:
                    raise ControlPlaneUnreachable(self.base_url, exc) from None
                self._next_replica()
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
    def put_service(
        self,
        name: str,
        *,
        namespace: str,
        protocol: str,
        port: int,
        health_check: Mapping[str, Any] | None = None,
        export_to: Sequence[str] = (),
    ) -> Any:
        body: dict[str, Any] = {"namespace": namespace, "protocol": protocol, "port": port}
        if health_check is not None:
            body["health_check"] = dict(health_check)
        if export_to:
            body["export_to"] = list(export_to)
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
        ttl: str | None = None,
        sidecar: bool = False,
    ) -> Any:
        """Register (or update) an instance; ``sidecar``: an Interlock sidecar fronts it (it
        takes mutual TLS); ``ttl``: heartbeats must arrive within it."""
        body: dict[str, Any] = {
            "address": address,
            "port": port,
            "labels": dict(labels or {}),
            "locality": locality,
            "healthy": healthy,
            "sidecar": sidecar,
        }
        if ttl is not None:
            body["ttl"] = ttl
        return self.request("PUT", f"/v1/services/{service}/instances/{instance_id}", json=body)

    def heartbeat(self, service: str, instance_id: str) -> Any:
        """A heartbeat of an instance registered with a ``ttl``."""
        return self.request("PUT", f"/v1/services/{service}/instances/{instance_id}/heartbeat")

    def report_app_health(
        self, service: str, instance_id: str, *, healthy: bool, reason: str = ""
    ) -> Any:
        """The verdict of the instance's app probe (``reason``: why it fails)."""
        body = {"status": "healthy" if healthy else "unhealthy", "reason": reason}
        path = f"/v1/services/{service}/instances/{instance_id}/health"
        return self.request("PUT", path, json=body)

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

    def ca_bundle(self, *, wait: float = 0.0, known: str = "") -> Any:
        """The CA bundle (public); with ``wait`` and ``known`` (a ``version`` seen before),
        held until the bundle is another one or ``wait`` seconds pass."""
        params = {k: v for k, v in (("wait", f"{wait:g}" if wait > 0 else ""), ("known", known))}
        return self.request("GET", BUNDLE_PATH, params={k: v for k, v in params.items() if v})

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
