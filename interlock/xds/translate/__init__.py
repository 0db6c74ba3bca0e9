"""The pure translator: ``MeshState`` + one ``Proxy`` -> the Envoy resources of that proxy.

It reads nothing but its arguments (no globals, environment, clock or I/O) and its output is
deterministic: equal input gives byte-identical serialized resources (serialize with
``deterministic=True``). User mistakes come back as ``Resources.problems``, never as exceptions.
"""

from __future__ import annotations

from interlock.model import MeshState, Proxy
from interlock.xds.translate.clusters import inbound_cluster, outbound_cluster
from interlock.xds.translate.common import config_source
from interlock.xds.translate.consistency import check_consistency
from interlock.xds.translate.endpoints import load_assignment
from interlock.xds.translate.listeners import plan_listeners
from interlock.xds.translate.resources import Resources
from interlock.xds.translate.routes import (
    inbound_route_configuration,
    outbound_route_configuration,
)
from interlock.xds.translate.telemetry import (
    source_header,
    source_virtual_clusters,
    telemetry_plan_for,
    tracing_cluster,
)

__all__ = ["Resources", "check_consistency", "translate"]


def translate(state: MeshState, proxy: Proxy) -> Resources:
    """The resources ``proxy`` needs to take part in the mesh described by ``state``.

    - Every service gets an EDS cluster and a load assignment of its healthy instances.
    - A sidecar with ``inbound_port`` and ``app_port`` gets an inbound listener and a static
      cluster to its app (gateways get none yet).
    - With ``outbound_port``, the proxy gets the outbound HTTP listener and its route
      configuration (one virtual host per HTTP service), and a listener per tcp service.

    Resources of each kind are sorted by name; problems are sorted.
    """
    services = sorted(state.services.values(), key=lambda s: (s.namespace, s.name))
    telemetry_plan = telemetry_plan_for(state, proxy)
    plan = plan_listeners(proxy, services, telemetry_plan)
    source = config_source(proxy)
    clusters = [outbound_cluster(s, source) for s in services]
    if plan.inbound is not None:
        clusters.append(inbound_cluster(plan.inbound.app_port, plan.inbound.protocol))
    if telemetry_plan.tracing is not None and plan.listeners:
        clusters.append(tracing_cluster(telemetry_plan.tracing))
    problems = list(plan.problems)
    routes = []
    if plan.inbound is not None and plan.inbound.protocol.is_http:
        routes.append(
            inbound_route_configuration(
                plan.inbound.app_port, proxy.service, source_virtual_clusters(services)
            )
        )
    if plan.outbound_http:
        route_config, route_problems = outbound_route_configuration(services, source_header(proxy))
        routes.append(route_config)
        problems += route_problems
    endpoints = [load_assignment(s, state.instances_of(s.name)) for s in services]
    return Resources(
        listeners=tuple(sorted(plan.listeners, key=lambda r: r.name)),
        clusters=tuple(sorted(clusters, key=lambda r: r.name)),
        routes=tuple(sorted(routes, key=lambda r: r.name)),
        endpoints=tuple(sorted(endpoints, key=lambda r: r.cluster_name)),
        secrets=(),
        problems=tuple(sorted(set(problems))),
    )
