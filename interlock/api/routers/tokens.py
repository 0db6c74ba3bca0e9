"""Proxy tokens: what a sidecar's Envoy presents on every xDS stream.

* ``POST /v1/services/{name}/instances/{instance_id}/token`` issues a token bound to that
  registered instance (its service, namespace and id). The token is in this response and
  nowhere else, ever: only its SHA-256 is stored.
* ``POST /v1/services/{name}/registration-token[?namespace=]`` issues a *registration*
  token: what a sidecar of that service needs (register, deregister, fetch proxy tokens), in
  that namespace only, and nothing else; give it to the hosts of that service instead of the
  admin token.
* ``GET /v1/tokens`` lists token records (ids, bindings, times — never a token).
* ``DELETE /v1/tokens/{token_id}`` revokes one; its xDS streams close within the server's
  ``--token-recheck`` interval. Deleting an instance revokes its tokens too. The token that
  authorizes the request and the last active admin token cannot be revoked (409).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

from fastapi import Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from interlock.api.auth import RegistrationTokenDep, confined_to, request_token
from interlock.api.context import ContextDep
from interlock.api.routing import StoreDep, api_router, errors_at
from interlock.api.schemas import InstanceId, Namespace, ServiceName
from interlock.model.errors import NotFound
from interlock.model.identity import (
    DEFAULT_TRUST_DOMAIN,
    Token,
    TokenRole,
    new_token,
    service_spiffe_id,
)

router = api_router(tags=["tokens"])

NamePath = Annotated[ServiceName, Path(description="the service name (a DNS label)")]
IdPath = Annotated[InstanceId, Path(description="the instance id")]
AT_PATH = {"service": "path.name", "instance_id": "path.instance_id"}


class TokenView(BaseModel):
    """A token's record: never the token itself."""

    model_config = ConfigDict(frozen=True)
    token_id: str
    role: str
    service: str
    namespace: str
    instance_id: str
    created_at: str
    revoked_at: str | None

    @classmethod
    def of(cls, token: Token) -> TokenView:
        return cls(
            token_id=token.token_id,
            role=token.role.value,
            service=token.service,
            namespace=token.namespace,
            instance_id=token.instance_id,
            created_at=_iso(token.created_at) or "",
            revoked_at=_iso(token.revoked_at),
        )


class IssuedToken(TokenView):
    token: str = Field(description="the bearer token; shown once, store it like a password")
    spiffe_id: str


class TokenList(BaseModel):
    model_config = ConfigDict(frozen=True)
    items: list[TokenView]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")


@router.post(
    "/v1/services/{name}/instances/{instance_id}/token",
    status_code=status.HTTP_201_CREATED,
)
def issue_proxy_token(
    name: NamePath,
    instance_id: IdPath,
    context: ContextDep,
    store: StoreDep,
    response: Response,
    registration: RegistrationTokenDep,
) -> IssuedToken:
    """A new proxy token for a registered instance (404 if it is not registered), bound to
    the namespace its service is registered in (both checked in the transaction that stores
    the token). With a registration token, 403 (no token issued) unless that is the
    registration token's namespace. Its proxy is expected to connect within the server's
    ``--instance-ttl``: else the instance's proxy check fails (docs/operations.md)."""
    token_id, token, digest = new_token(TokenRole.PROXY)
    asked = Token(
        token_id,
        TokenRole.PROXY,
        service=name,
        namespace="",
        instance_id=instance_id,
        created_at=time.time(),
    )
    action = f"issue proxy tokens for service {name}"
    with errors_at(**AT_PATH), confined_to(registration, action) as namespace:
        record = store.security.issue_proxy_token(
            asked,
            digest,
            in_namespace=namespace,
            connect_by=store.clock() + context.instance_ttl,
        )
    response.headers["Cache-Control"] = "no-store"
    stored = store.security.ca()
    trust_domain = stored.trust_domain if stored is not None else DEFAULT_TRUST_DOMAIN
    return IssuedToken(
        token=token,
        spiffe_id=service_spiffe_id(trust_domain, record.namespace, record.service),
        **TokenView.of(record).model_dump(),
    )


@router.post("/v1/services/{name}/registration-token", status_code=status.HTTP_201_CREATED)
def issue_registration_token(
    name: NamePath,
    store: StoreDep,
    response: Response,
    namespace: Annotated[
        Namespace | None,
        Query(description="the service's namespace (default: the registered one, or default)"),
    ] = None,
) -> IssuedToken:
    """A registration token for service ``name`` (which need not exist yet: the sidecar
    creates it). The token is in this response only."""
    try:
        registered = store.get_service(name)
        namespace = registered.namespace
    except NotFound:
        namespace = namespace or "default"
    token_id, token, digest = new_token(TokenRole.REGISTRATION)
    record = Token(
        token_id,
        TokenRole.REGISTRATION,
        service=name,
        namespace=namespace,
        created_at=time.time(),
    )
    store.security.add_token(record, digest)
    response.headers["Cache-Control"] = "no-store"
    stored = store.security.ca()
    trust_domain = stored.trust_domain if stored is not None else DEFAULT_TRUST_DOMAIN
    return IssuedToken(
        token=token,
        spiffe_id=service_spiffe_id(trust_domain, namespace, name),
        **TokenView.of(record).model_dump(),
    )


@router.get("/v1/tokens")
def list_tokens(store: StoreDep) -> TokenList:
    """Every token's record, oldest first (admin and proxy tokens; never a token)."""
    return TokenList(items=[TokenView.of(t) for t in store.security.list_tokens()])


@router.delete("/v1/tokens/{token_id}")
def revoke_token(
    token_id: Annotated[str, Path(description="a token's public id", max_length=32)],
    store: StoreDep,
    request: Request,
) -> TokenView:
    """Revoke a token (idempotent). A proxy token's streams close within the re-check
    interval; a revoked admin token stops working within seconds.

    409 (nothing revoked) for the token that authorizes this very request, and for the last
    active admin token: either would lock every client out (replace the admin token with
    ``interlock server --new-admin-token`` instead)."""
    caller = request_token(request.scope)
    with errors_at(token_id="path.token_id"):
        revoked = store.security.revoke_token(
            token_id, caller=None if caller is None else caller.token_id, keep_an_admin=True
        )
    return TokenView.of(revoked)
