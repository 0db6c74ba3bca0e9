"""The registration fast path: ``PUT /v1/services/{name}/instances/{instance_id}`` served
without FastAPI's per-request machinery.

Registrations are the API's busiest write (every sidecar and gateway start, every re-PUT). For
each one FastAPI resolves dependencies, validates path parameters and body one by one, builds
and re-validates the response model and passes the response through its exception and
routing layers: measured under load (B8), more than half of the event loop's CPU per
registration.
:class:`RegistrationFastPath` (innermost of the app's middleware: authentication, body limit
and request metrics have already run) answers a registration itself, with the route's own
pieces: the same pydantic types for the path and the body, the same store call
(:func:`interlock.api.routers.instances.register`, which confines a registration token's
write to its namespace: the token :class:`~interlock.api.auth.BearerAuth` let the request in
with is in ``scope["state"]``), the same response body
(:func:`interlock.api.routers.instances.written`), status (201 or 200) and
``Interlock-Revision`` header, and the same problem documents for the store's errors.

Anything it would not accept as is — another path or method, a body that is not JSON or not
valid, a bad name — goes to the app unchanged (the body it read is replayed), so every error
of the request itself keeps coming from the route and its handlers.
"""

from __future__ import annotations

import json
import re

from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interlock.api.auth import registration_token
from interlock.api.body import is_json
from interlock.api.problems import interlock_problem, request_instance
from interlock.api.routers.instances import register, written
from interlock.api.routing import REVISION_HEADER
from interlock.api.schemas import InstanceId, InstanceSpec, ServiceName
from interlock.model.errors import InterlockError
from interlock.store import Store

TEMPLATE = "/v1/services/{name}/instances/{instance_id}"
_PATH = re.compile(r"^/v1/services/([^/]+)/instances/([^/]+)$")
_NAME: TypeAdapter[str] = TypeAdapter(ServiceName)
_ID: TypeAdapter[str] = TypeAdapter(InstanceId)


class RegistrationFastPath:
    """ASGI middleware answering well-formed registrations (see the module docstring)."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope.get("method") == "PUT":
            match = _PATH.match(scope.get("path", ""))
        if match is None or not is_json(_header(scope, b"content-type")):
            await self.app(scope, receive, send)
            return
        body, messages = await _read_body(receive)
        spec = _accepted(match.group(1), match.group(2), body)
        if spec is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        scope["route"] = _ROUTE  # what the request metrics are labelled with
        name, instance_id = match.group(1), match.group(2)
        try:
            instance = spec.to_model(name, instance_id)
            result = await register(self.store, instance, registration_token(scope))
        except InterlockError as e:
            await interlock_problem(e, request_instance(scope))(scope, receive, send)
            return
        content = written(result).model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 201 if result.created else 200,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", b"application/json"),
                    (REVISION_HEADER.lower().encode(), str(result.revision).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


class _Route:
    """What the request metrics read of the route that answered: its template."""

    path = TEMPLATE


_ROUTE = _Route()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _accepted(name: str, instance_id: str, body: bytes) -> InstanceSpec | None:
    """The body as the route would validate it, or None when the route should answer."""
    try:
        _NAME.validate_python(name)
        _ID.validate_python(instance_id)
        return InstanceSpec.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        return None
