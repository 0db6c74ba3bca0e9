"""Request bodies: a size limit for every request and JSON-only routes.

:class:`BodyLimit` refuses a body over the limit with 413 — at once when ``Content-Length``
announces it, otherwise as soon as the streamed bytes pass the limit. :class:`JsonRoute` makes
a route that takes a body refuse any body that is not ``application/json`` (or
``application/*+json``) with 415, before the body is read.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interlock.api.problems import HTTPProblem, problem_response, request_instance
from interlock.model.errors import FieldError


class BodyTooLarge(HTTPProblem):
    """Raised while reading a streamed body that passed the limit (answered with 413)."""

    def __init__(self, limit: int) -> None:
        message = _too_large(limit)
        super().__init__(413, message, errors=(FieldError("body", message),))


def _too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


def _too_large_response(limit: int, path: str) -> Response:
    message = _too_large(limit)
    return problem_response(413, message, instance=path, errors=(FieldError("body", message),))


class BodyLimit:
    """ASGI middleware limiting every HTTP request body to ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(Headers(scope=scope))
        if declared is not None and declared > limit:
            await _too_large_response(limit, request_instance(scope))(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Normally the app's exception handlers answer; this covers a body read elsewhere.
            if started:
                raise
            await _too_large_response(limit, request_instance(scope))(scope, receive, send)


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def is_json(content_type: str | None) -> bool:
    """True for ``application/json`` and ``application/<anything>+json`` (any parameters)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _has_body(headers: Headers) -> bool:
    length = _content_length(headers)
    return (length is not None and length > 0) or "transfer-encoding" in headers


class JsonRoute(APIRoute):
    """An API route whose body, if it takes one, must be JSON (415 otherwise)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def json_only(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if _has_body(request.headers) and not is_json(content_type):
                shown = repr(content_type) if content_type else "no content type"
                message = f"the body must be application/json, not {shown}"
                raise HTTPProblem(
                    415, message, errors=(FieldError("header.content-type", message),)
                )
            return await handler(request)

        return json_only
