"""``GET /metrics``: the control plane's own metrics in Prometheus' text format (see
:mod:`interlock.telemetry.metrics` for what they are)."""

from __future__ import annotations

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from interlock.api.routing import api_router

router = api_router(tags=["meta"], responses={})


@router.get("/metrics", response_class=Response, include_in_schema=True)
def metrics(request: Request) -> Response:
    """Prometheus text exposition of the control plane's metrics."""
    registry = getattr(request.app.state, "metrics", None)
    body = generate_latest(registry.registry) if registry is not None else b""
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
