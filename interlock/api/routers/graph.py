"""``GET /v1/graph``: the live service graph — every registered service (and callers from
outside the mesh) as nodes, every caller → callee pair seen in the window as an edge with its
request rate, error rate and latency, computed from the access logs sidecars stream (ALS)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from interlock.api.context import ContextDep
from interlock.api.routing import StoreDep, api_router
from interlock.telemetry.graph import EXTERNAL, Graph

router = api_router(tags=["graph"])


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class GraphNode(_Out):
    id: str
    kind: Literal["service", "external", "unregistered"]
    service: str
    namespace: str
    instances: int
    healthy: int


class GraphEdge(_Out):
    source: str
    destination: str
    requests: int
    errors: int
    rps: float
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None


class GraphView(_Out):
    window_seconds: float
    generated_at: str
    revision: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]


@router.get("/v1/graph")
async def get_graph(
    context: ContextDep,
    store: StoreDep,
    window: Annotated[float, Query(gt=0, le=3600, description="Seconds to look back")] = 60.0,
) -> GraphView:
    """Who calls whom over the last ``window`` seconds (rates are per second)."""
    reader = context.graph_reader
    graph = reader(window) if reader is not None else Graph(window, (), ())
    state = await run_in_threadpool(store.load_state)
    nodes: dict[str, GraphNode] = {}
    for service in state.services.values():
        instances = state.instances_of(service.name)
        node_id = f"{service.name}.{service.namespace}"
        nodes[node_id] = GraphNode(
            id=node_id,
            kind="service",
            service=service.name,
            namespace=service.namespace,
            instances=len(instances),
            healthy=sum(1 for i in instances if i.routable),
        )
    for name in graph.nodes:
        if name not in nodes:
            short, _, namespace = name.partition(".")
            nodes[name] = GraphNode(
                id=name,
                kind="external" if name == EXTERNAL else "unregistered",
                service=short,
                namespace=namespace,
                instances=0,
                healthy=0,
            )
    return GraphView(
        window_seconds=window,
        generated_at=dt.datetime.now(tz=dt.UTC).isoformat(timespec="milliseconds"),
        revision=state.revision,
        nodes=sorted(nodes.values(), key=lambda n: n.id),
        edges=[GraphEdge(**e.__dict__) for e in graph.edges],
    )
