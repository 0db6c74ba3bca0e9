"""RFC 9457 problem details: every error response of the API is ``application/problem+json``.

A problem has ``type`` (``urn:interlock:problem:<slug>``), ``title``, ``status``, ``detail``,
``instance`` (the request path) and ``errors``: one ``{"field", "message"}`` per wrong field,
``field`` being a dotted path (``port``, ``labels.version``, ``path.name``, ``query.cascade``;
``body`` for the body as a whole). :func:`install` maps the model's exception tree, request
validation errors and HTTP errors to problems; no response ever carries a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.routing import Match

from interlock.model.errors import FieldError, InterlockError, InvalidInput, Unavailable

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:interlock:problem:"

_SLUGS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    503: "unavailable",
}
# Titles in the style of the model's errors (RFC 9110 names, sentence case).
_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Content too large",
    415: "Unsupported media type",
    500: "Internal error",
}


class HTTPProblem(HTTPException):
    """An HTTP error raised by the API's own plumbing, with the fields it concerns."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: tuple[FieldError, ...] = (),
        headers: Mapping[str, str] | None = None,
        title: str | None = None,
        slug: str | None = None,
    ) -> None:
        super().__init__(status, detail=detail, headers=headers)
        self.errors = errors
        self.title = title
        self.slug = slug


class ProblemField(BaseModel):
    field: str
    message: str


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document, as the API sends it (``Problem`` in the OpenAPI
    document; not the model's :class:`~interlock.model.Problem`, a policy's problem)."""

    model_config = ConfigDict(title="Problem")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemField] = []


def request_instance(scope: Mapping[str, Any]) -> str:
    """A problem's ``instance``: the request's path as sent, a URI reference (RFC 9457) —
    percent-encoded, never decoded into raw newlines or spaces."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1").partition("?")[0]
    return quote(str(scope.get("path", "")), safe="/:@!$&'()*+,;=-._~")


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str,
    title: str | None = None,
    slug: str | None = None,
    errors: Iterable[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response; ``title`` and ``slug`` default from ``status``."""
    body = ProblemDocument(
        type=TYPE_PREFIX
        + (slug or _SLUGS.get(status) or _phrase(status).lower().replace(" ", "-")),
        title=title or _TITLES.get(status) or _phrase(status),
        status=status,
        detail=detail,
        instance=instance,
        errors=[ProblemField(field=e.field, message=e.message) for e in errors],
    )
    return JSONResponse(
        body.model_dump(), status_code=status, headers=dict(headers or {}), media_type=MEDIA_TYPE
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def field_path(loc: Sequence[int | str]) -> str:
    """A dotted field path from a pydantic/FastAPI error location.

    Body fields lose their ``body`` prefix (``("body", "labels", "v")`` → ``labels.v``); a bad
    dict key is named by the key itself; path and query parameters keep their prefix.
    """
    parts = [str(p) for p in loc if p != "[key]"]
    if parts and parts[0] == "body" and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


_MESSAGES = {"extra_forbidden": "unknown field", "missing": "required"}


def validation_errors(raw: Iterable[Mapping[str, Any]]) -> tuple[FieldError, ...]:
    return tuple(
        FieldError(field_path(e.get("loc", ())), _MESSAGES.get(e.get("type", ""), e["msg"]))
        for e in raw
    )


def _summary(errors: Sequence[FieldError]) -> str:
    return "; ".join(f"{e.field}: {e.message}" for e in errors)


def interlock_problem(exc: InterlockError, path: str) -> JSONResponse:
    """The problem document of a model error raised while serving ``path``."""
    headers = {"Retry-After": "1"} if isinstance(exc, Unavailable) else None
    return problem_response(
        exc.status,
        exc.message,
        instance=path,
        title=exc.title,
        slug=exc.slug,
        errors=exc.errors,
        headers=headers,
    )


async def _on_interlock_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InterlockError)
    return interlock_problem(exc, request_instance(request.scope))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    malformed = next((e for e in raw if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        loc = malformed.get("loc", ())
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        reason = str((malformed.get("ctx") or {}).get("error", "invalid JSON"))
        message = f"the body is not valid JSON: {reason}{where}"
        return problem_response(
            400,
            message,
            instance=request_instance(request.scope),
            title="Malformed JSON",
            slug="malformed-json",
            errors=(FieldError("body", message),),
        )
    errors = validation_errors(raw)
    return problem_response(
        InvalidInput.status,
        _summary(errors),
        instance=request_instance(request.scope),
        title=InvalidInput.title,
        slug=InvalidInput.slug,
        errors=errors,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    detail = str(exc.detail)
    if detail == _phrase(status):
        detail = _DEFAULT_DETAIL.get(status, detail).format(
            method=request.method, path=request.url.path
        )
    problem = exc if isinstance(exc, HTTPProblem) else None
    errors = problem.errors if problem else ()
    if status == 400 and not errors:
        # FastAPI's own: a JSON body it could not decode other than as a JSON syntax error
        # (bytes that are not UTF-8). The body is at fault: say so, and name it.
        if detail == _FASTAPI_UNPARSED:
            detail = "the body could not be read: JSON must be UTF-8 text"
        errors = (FieldError("body", detail),)
    headers = dict(exc.headers or {})
    if status == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        status,
        detail,
        instance=request_instance(request.scope),
        errors=errors,
        headers=headers,
        title=problem.title if problem else None,
        slug=problem.slug if problem else None,
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on the request's path (Starlette names only one)."""
    allowed = {
        method
        for method in ("DELETE", "GET", "PATCH", "POST", "PUT")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    }
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)


_FASTAPI_UNPARSED = "There was an error parsing the body"
_DEFAULT_DETAIL = {
    404: "nothing at {path}",
    405: "{method} is not allowed on {path}",
    400: "the request could not be read",
}


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500,
        "an internal error occurred; the server log has the details",
        instance=request_instance(request.scope),
        slug="internal-error",
    )


def install(app: FastAPI) -> None:
    """Make ``app`` answer every error with a problem document."""
    app.add_exception_handler(InterlockError, _on_interlock_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


def _doc(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# OpenAPI documentation of the problems a route that reads and writes the store may answer with.
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("Malformed JSON"),
    404: _doc("Not found"),
    409: _doc("Conflict with what is stored"),
    413: _doc("Body larger than the limit"),
    415: _doc("Body of an unsupported content type"),
    422: _doc("Invalid input; `errors` names each field"),
    503: _doc("The database is unavailable; nothing changed"),
}
