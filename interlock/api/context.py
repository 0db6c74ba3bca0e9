"""What the API's routes are given besides the request: one typed :class:`ApiContext` per app.

:func:`interlock.api.create_app` builds it once and keeps it in ``app.state.context``; routes
take it (or one of its parts) as a FastAPI dependency — :data:`ContextDep`,
:data:`interlock.api.routing.StoreDep` — instead of reading ``app.state`` attributes back with
``getattr`` and ``cast``. Every optional part is ``None`` when the app was built without it
(in-process tests of other behaviour), and the routes that need it say so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from google.protobuf.message import Message
from starlette.types import Scope

from interlock.model.health import DEFAULT_INSTANCE_TTL
from interlock.model.identity import DEFAULT_ROOT_NAMESPACE
from interlock.model.problem import Problem
from interlock.store import Store
from interlock.telemetry.graph import Graph
from interlock.telemetry.metrics import ControlPlaneMetrics
from interlock.xds.transport.status import StatusRegistry

if TYPE_CHECKING:  # the CA router imports this module
    from interlock.api.routers.ca import BundleSource, CaAdmin

ConfigReader = Callable[[str], Mapping[str, Sequence[Message]] | None]
"""snapshot key → {type URL: [resource]}, private keys included: the route that shows them
redacts them (None: no snapshot)."""
ProblemReader = Callable[[str], Sequence[Problem]]
"""snapshot key → the problems its view's last translation met: what the proxy was not given
and why (e.g. what a proxyless gRPC client does not implement)."""
GraphReader = Callable[[float], Graph]
"""The traffic graph over a window of seconds."""


@dataclass(frozen=True)
class HealthCheck:
    """One check of ``/healthz`` and ``/readyz``: ``problem`` says what is wrong (None: all
    is well); ``readiness_only`` checks count for ``/readyz`` alone."""

    name: str
    problem: Callable[[], str | None]
    readiness_only: bool = False


@dataclass(frozen=True, eq=False)
class ApiContext:
    """Everything the routes use: the store, and the server's parts the API reads.

    ``status`` (the xDS server's registry) feeds ``/v1/proxies`` and rollouts;
    ``config_reader`` what a proxy is served, ``problem_reader`` what it is not and why;
    ``graph_reader`` ``/v1/graph``; ``metrics`` ``/metrics``; ``ca_admin`` enables
    ``/v1/ca/rotation``; ``bundle`` (the server's TLS identity) serves ``/v1/ca/bundle``;
    ``root_namespace`` is the mesh's; ``instance_ttl`` is how long a proxy has to connect once
    its token is issued (the server's ``--instance-ttl``). ``health_checks`` are the server's
    parts' checks (``/healthz``, ``/readyz``; the store's is always made). ``commit_times`` is
    the API's own cache of revision → commit time.
    """

    store: Store
    status: StatusRegistry | None = None
    config_reader: ConfigReader | None = None
    problem_reader: ProblemReader | None = None
    graph_reader: GraphReader | None = None
    metrics: ControlPlaneMetrics | None = None
    ca_admin: CaAdmin | None = None
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    bundle: BundleSource | None = None
    instance_ttl: float = DEFAULT_INSTANCE_TTL
    health_checks: tuple[HealthCheck, ...] = ()
    commit_times: dict[int, float] = field(default_factory=dict)


def context_of(scope: Scope) -> ApiContext:
    """The context of the app serving ``scope`` (set by ``create_app``)."""
    context = scope["app"].state.context
    assert isinstance(context, ApiContext)
    return context


async def get_context(request: Request) -> ApiContext:
    """The app's :class:`ApiContext` (async only so that FastAPI resolves it on the event
    loop instead of in a worker thread)."""
    return context_of(request.scope)


ContextDep = Annotated[ApiContext, Depends(get_context)]
