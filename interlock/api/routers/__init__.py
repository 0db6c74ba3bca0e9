"""The API's routers, in the order :func:`interlock.api.create_app` includes them.

To add a router: build it with :func:`interlock.api.routing.api_router` in a module of this
package and append it to :data:`ROUTERS`.
"""

from __future__ import annotations

from fastapi import APIRouter

from interlock.api.routers import (
    ca,
    graph,
    instances,
    meta,
    metrics,
    proxies,
    resources,
    revisions,
    services,
    tokens,
    ui,
)

ROUTERS: tuple[APIRouter, ...] = (
    meta.router,
    services.router,
    instances.router,
    tokens.router,
    ca.router,
    proxies.router,
    revisions.router,
    resources.router,
    graph.router,
    metrics.router,
    ui.router,
)

__all__ = ["ROUTERS"]
