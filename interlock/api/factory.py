"""The FastAPI application of API v1."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import interlock
from interlock.api import problems
from interlock.api.auth import ApiAuth, BearerAuth
from interlock.api.body import BodyLimit
from interlock.api.context import (
    ApiContext,
    ConfigReader,
    GraphReader,
    HealthCheck,
    ProblemReader,
)
from interlock.api.documents import policy_document_schema
from interlock.api.fast_path import RegistrationFastPath
from interlock.api.routers import ROUTERS
from interlock.api.routers.ca import BundleSource, CaAdmin
from interlock.model.health import DEFAULT_INSTANCE_TTL
from interlock.model.identity import DEFAULT_ROOT_NAMESPACE
from interlock.model.policy.registry import KINDS
from interlock.store import Store
from interlock.telemetry.metrics import ControlPlaneMetrics
from interlock.xds.transport.status import StatusRegistry

DESCRIPTION = """\
The Interlock control plane's REST API. Writes are idempotent PUTs and DELETEs; every response
carries the mesh revision it was read or written at (a `revision` field and the
`Interlock-Revision` header). Errors are RFC 9457 `application/problem+json` documents whose
`errors` name each wrong field.
"""


def create_app(
    store: Store,
    *,
    status: StatusRegistry | None = None,
    config_reader: ConfigReader | None = None,
    problem_reader: ProblemReader | None = None,
    graph_reader: GraphReader | None = None,
    metrics: ControlPlaneMetrics | None = None,
    max_body_bytes: int = 1_048_576,
    auth: ApiAuth | None = None,
    ca_admin: CaAdmin | None = None,
    root_namespace: str = DEFAULT_ROOT_NAMESPACE,
    bundle: BundleSource | None = None,
    instance_ttl: float = DEFAULT_INSTANCE_TTL,
    health_checks: tuple[HealthCheck, ...] = (),
) -> FastAPI:
    """An ASGI app serving API v1 from ``store`` (OpenAPI at ``/openapi.json``).

    ``status`` (the xDS server's registry) feeds ``/v1/proxies`` and the rollout part of
    ``/v1/revisions/{rev}``; ``config_reader`` maps a proxy's snapshot key to the resources it is
    served (for ``/v1/proxies/{node_id}/config``), ``problem_reader`` the problems its view
    met (``/v1/proxies/{node_id}``); ``graph_reader`` gives the traffic graph
    over a window of seconds (for ``/v1/graph``). Request bodies over ``max_body_bytes`` are
    refused with 413. The caller owns ``store`` (the app never closes it). Store reads run in
    FastAPI's thread pool; service and instance writes await the store's group commit on the
    event loop (no thread of their own), and well-formed registrations are answered by
    :class:`~interlock.api.fast_path.RegistrationFastPath`; status endpoints run on the event
    loop that owns ``status``.

    ``auth`` makes every request but ``/healthz``, ``/readyz``, ``/openapi.json`` and ``/ui``
    carry an admin bearer token (reads too, unless ``auth.open_reads``); the server always
    passes one, and only in-process tests of other behaviour leave it out. ``ca_admin`` enables
    ``/v1/ca/rotation``. ``root_namespace`` is the mesh's (policy problems depend on it).
    ``bundle`` (the server's TLS identity) serves ``/v1/ca/bundle`` and its long-poll;
    without it the bundle is read from the store. ``instance_ttl`` is the server's
    ``--instance-ttl`` (a proxy token's proxy must connect within it). ``health_checks``
    are the server's parts' checks for ``/healthz`` and ``/readyz``.
    """
    app = FastAPI(
        title="Interlock",
        version=interlock.__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.context = ApiContext(
        store=store,
        status=status,
        config_reader=config_reader,
        problem_reader=problem_reader,
        graph_reader=graph_reader,
        metrics=metrics,
        ca_admin=ca_admin,
        root_namespace=root_namespace,
        bundle=bundle,
        instance_ttl=instance_ttl,
        health_checks=health_checks,
    )
    problems.install(app)
    app.add_middleware(RegistrationFastPath, store=store)  # innermost: after auth and limits
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)
    if metrics is not None:
        app.add_middleware(RequestTimer, metrics=metrics)
    if auth is not None:
        app.add_middleware(BearerAuth, auth=auth)
    for router in ROUTERS:
        app.include_router(router)
    _document_problems(app)
    return app


class RequestTimer:
    """ASGI middleware observing every request's latency by method, route template (not the
    raw path, so names in paths cannot explode the label space) and status. Plain ASGI (not
    ``BaseHTTPMiddleware``): it adds no task and no stream per request."""

    def __init__(self, app: ASGIApp, metrics: ControlPlaneMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            key = (str(scope.get("method", "")), str(template), status)
            child = self._children.get(key)
            if child is None:
                child = self.metrics.api_seconds.labels(key[0], key[1], str(status))
                self._children[key] = child
            child.observe(time.perf_counter() - started)


def _document_problems(app: FastAPI) -> None:
    """Add the problem document schema the routes' errors refer to (``Problem``:
    :class:`~interlock.api.problems.ProblemDocument`), and the policy document the resource
    routes take."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            defs = problems.ProblemDocument.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(defs.pop("$defs", {}))
            components["Problem"] = defs
            components["PolicyDocument"] = policy_document_schema(
                [k.kind for k in KINDS], sorted({v for k in KINDS for v in k.api_versions})
            )
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
