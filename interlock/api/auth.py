"""Who may call the REST API: bearer tokens, checked before any route runs.

- Writes (every method but GET and HEAD) need an admin token: ``Authorization: Bearer <token>``.
  Without one the answer is 401 (with ``WWW-Authenticate: Bearer``); with a token that is not
  an active admin token (unknown, revoked, or a proxy token), 403.
- Reads need one too, unless the server runs with ``--open-reads``.
- A *registration* token (bound to one service of one namespace) may do what a sidecar does
  for that service and nothing else: read and PUT the service, read, PUT and DELETE its
  instances, POST their proxy tokens and PUT their heartbeats and app health (see
  :func:`registration_allows`) — and only in its
  namespace: the routes confine its writes with :func:`confined_to`, so it can neither move
  the service to another namespace nor act on a service of that name registered in another
  (403, nothing changed). Otherwise it could mint SVIDs of any namespace.
- Credentials in the URL (``?token=``, ``?access_token=``) are refused with 400 on every path:
  URLs end up in logs, histories and Referer headers.
- Always open: ``/healthz`` and ``/readyz`` (probes), the OpenAPI document, the CA bundle
  (``/v1/ca/bundle``: public certificates, which clients need before they can verify
  anything) and the dashboard's static files (``/ui``), which hold no data: the page reads
  the API like any client.

Tokens are looked up by their SHA-256; a lookup is remembered for ``cache_seconds`` so that a
busy client does not cost a database read per request (a revoked admin token stops working
within that time).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from interlock.api.problems import interlock_problem, problem_response, request_instance
from interlock.model.errors import FieldError, Forbidden, InterlockError
from interlock.model.identity import Token, TokenRole, token_hash

TokenLookup = Callable[[str], Token | None]
"""token hash → the stored token (revoked or not), or None."""

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/v1/ca/bundle"}
)
PUBLIC_PREFIXES = ("/ui",)
URL_CREDENTIALS = frozenset({"token", "access_token", "api_key", "apikey"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ApiAuth:
    """How the API authenticates: ``lookup`` finds tokens; ``open_reads`` lets anyone read."""

    lookup: TokenLookup
    open_reads: bool = False
    cache_seconds: float = 2.0


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            text = bytes(value).decode("latin-1")
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""
    return None


def _query_names(scope: Scope) -> set[str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {part.partition("=")[0].lower() for part in raw.split("&") if part}


_SERVICE = re.compile(r"^/v1/services/(?P<name>[^/]+)$")
_INSTANCE = re.compile(r"^/v1/services/(?P<name>[^/]+)/instances/[^/]+$")
_PROXY_TOKEN = re.compile(r"^/v1/services/(?P<name>[^/]+)/instances/[^/]+/token$")
_CHECK = re.compile(r"^/v1/services/(?P<name>[^/]+)/instances/[^/]+/(heartbeat|health)$")


def registration_allows(service: str, method: str, path: str) -> bool:
    """What a registration token for ``service`` may do: the calls ``interlock sidecar`` makes
    for that service (and only that one)."""
    rules = (
        (_SERVICE, {"GET", "HEAD", "PUT"}),
        (_INSTANCE, {"GET", "HEAD", "PUT", "DELETE"}),
        (_PROXY_TOKEN, {"POST"}),
        (_CHECK, {"PUT"}),
    )
    for pattern, methods in rules:
        match = pattern.match(path)
        if match is not None:
            return method in methods and match.group("name") == service
    return False


def registration_token(scope: Scope) -> Token | None:
    """The registration token a request was let in with (by :class:`BearerAuth`), or None (an
    admin token, or an app without authentication)."""
    token = request_token(scope)
    return token if token is not None and token.role is TokenRole.REGISTRATION else None


def request_token(scope: Scope) -> Token | None:
    """The token a request was let in with (by :class:`BearerAuth`), whatever its role, or
    None (open reads, or an app without authentication)."""
    token = scope.get("state", {}).get("token")
    return token if isinstance(token, Token) else None


async def _registration_token(request: Request) -> Token | None:
    return registration_token(request.scope)


RegistrationTokenDep = Annotated[Token | None, Depends(_registration_token)]
"""A route's :func:`registration_token` (async: resolved on the event loop)."""


def refused(
    token: Token, action: str, reason: str, field: str = "header.authorization"
) -> Forbidden:
    """The 403 for a registration ``token`` that may not ``action`` because of ``reason``;
    ``errors`` names ``field``."""
    message = (
        f"a registration token for {token.namespace}/{token.service} cannot {action}: {reason}"
    )
    return Forbidden(message, errors=(FieldError(field, message),))


@contextlib.contextmanager
def confined_to(token: Token | None, action: str) -> Iterator[str | None]:
    """The namespace a store write must stay in (``in_namespace``): the registration
    ``token``'s, or None (any) for other callers. The store's :class:`Forbidden` raised inside
    becomes :func:`refused` for ``action``."""
    try:
        yield None if token is None else token.namespace
    except Forbidden as e:
        if token is None:
            raise
        raise refused(token, action, e.message) from None


class BearerAuth:
    """ASGI middleware enforcing :class:`ApiAuth` (see the module docstring)."""

    def __init__(self, app: ASGIApp, auth: ApiAuth) -> None:
        self.app = app
        self.auth = auth
        self._cache: dict[str, tuple[float, Token | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if URL_CREDENTIALS & _query_names(scope):
            message = (
                "credentials in the URL are refused (they end up in logs); "
                "send them in the Authorization header: 'Authorization: Bearer <token>'"
            )
            response = problem_response(
                400,
                message,
                instance=request_instance(scope),
                title="Credentials in the URL",
                slug="credentials-in-url",
                errors=(FieldError("query.token", message),),
            )
            await response(scope, receive, send)
            return
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        read = scope.get("method", "GET") in READ_METHODS
        if read and self.auth.open_reads:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if not token:
            what = "reading" if read else "changing"
            message = (
                f"{what} the mesh needs an admin token: 'Authorization: Bearer <token>' "
                "(the CLI sends INTERLOCK_TOKEN)"
            )
            response = problem_response(
                401,
                message,
                instance=request_instance(scope),
                title="Unauthorized",
                slug="unauthorized",
                errors=(FieldError("header.authorization", "missing"),),
                headers={"WWW-Authenticate": 'Bearer realm="interlock"'},
            )
            await response(scope, receive, send)
            return
        try:
            record = await self._lookup(token)
        except InterlockError as exc:  # the store is unavailable: 503 + Retry-After, not 500
            await interlock_problem(exc, request_instance(scope))(scope, receive, send)
            return
        allowed = record is not None and record.active
        if allowed and record is not None and record.role is not TokenRole.ADMIN:
            allowed = record.role is TokenRole.REGISTRATION and registration_allows(
                record.service, scope.get("method", "GET"), path
            )
        if not allowed:
            message = (
                "the token is not an active admin token for this API"
                if record is None or record.role is not TokenRole.REGISTRATION
                else f"a registration token for service {record.service!r} may only register "
                "that service's instances"
            )
            response = problem_response(
                403,
                message,
                instance=request_instance(scope),
                title="Forbidden",
                slug="forbidden",
                errors=(FieldError("header.authorization", message),),
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["token"] = record
        await self.app(scope, receive, send)

    async def _lookup(self, token: str) -> Token | None:
        digest = token_hash(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await anyio.to_thread.run_sync(self.auth.lookup, digest)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[digest] = (now + self.auth.cache_seconds, record)
        return record
