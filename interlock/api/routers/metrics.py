"""``GET /metrics``: the control plane's own metrics in Prometheus' text format (see
:mod:`interlock.telemetry.metrics` for what they are)."""

from __future__ import annotations

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from interlock.api.context import ContextDep
from interlock.api.routing import api_router

router = api_router(tags=["meta"], responses={})


@router.get("/metrics", response_class=Response, include_in_schema=True)
def metrics(context: ContextDep) -> Response:
    """Prometheus text exposition of the control plane's metrics."""
    registry = context.metrics
    body = generate_latest(registry.registry) if registry is not None else b""
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
