"""Traffic management: Istio's VirtualService, DestinationRule, ServiceEntry and Gateway, and
Interlock's RateLimit, applied to the resources every proxy gets anyway (one cluster and load
assignment per service, the outbound and inbound route configurations, the listeners).

The order matters and is fixed: DestinationRules make subset clusters and set policies;
ServiceEntries add clusters, virtual hosts and listeners; mesh VirtualServices replace
default routes and tcp destinations; a gateway proxy gets its Gateway listeners; RateLimits
turn on buckets in the inbound routes; and finally every route (and tcp proxy) to a
consistent-hash cluster gets its hash policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from interlock.model import MeshState, Problem, Proxy, Service
from interlock.xds import naming
from interlock.xds.translate import telemetry
from interlock.xds.translate.destination_rule import (
    MutualTls,
    apply_destination_rules,
    attach_route_hash_policies,
    attach_tcp_hash_policies,
)
from interlock.xds.translate.destinations import Destinations
from interlock.xds.translate.gateway import gateway_resources
from interlock.xds.translate.rate_limit import apply_rate_limits
from interlock.xds.translate.service_entry import bound_table, external_resources
from interlock.xds.translate.virtual_service import MeshVirtualServices, apply_http, apply_tcp


@dataclass
class Draft:
    """A proxy's resources while policies are applied to them (the protos are owned here)."""

    listeners: list[listener_pb2.Listener]
    clusters: list[cluster_pb2.Cluster]
    routes: list[route_pb2.RouteConfiguration]
    endpoints: list[endpoint_pb2.ClusterLoadAssignment]
    problems: list[Problem] = field(default_factory=list)

    def route(self, name: str) -> route_pb2.RouteConfiguration | None:
        return next((r for r in self.routes if r.name == name), None)


def apply_traffic_management(
    state: MeshState,
    proxy: Proxy,
    services: Sequence[Service],
    draft: Draft,
    *,
    source: config_source_pb2.ConfigSource,
    plan: telemetry.TelemetryPlan,
    mutual_tls: MutualTls,
    inbound_route: str | None,
) -> None:
    """Apply the mesh's traffic policies to ``draft`` (in place). ``inbound_route`` names the
    inbound route configuration, when the proxy has an HTTP inbound listener."""
    destinations = Destinations(state, services)
    draft.clusters, draft.endpoints = apply_destination_rules(
        state, proxy, destinations, draft.clusters, draft.endpoints, mutual_tls
    )
    outbound = draft.route(naming.outbound_http_route())
    external, routing = external_resources(destinations, proxy, source, outbound, draft.listeners)
    draft.clusters += external.clusters
    draft.endpoints += external.endpoints
    draft.listeners += external.listeners
    draft.problems += external.problems
    mesh = MeshVirtualServices(state)
    if outbound is not None:
        outbound.virtual_hosts.extend(external.virtual_hosts)
        apply_http(outbound, services, routing.virtual_hosts, mesh, proxy, destinations)
    apply_tcp(draft.listeners, services, routing.tcp_listeners, mesh, proxy, destinations)
    gateways = gateway_resources(
        state, proxy, destinations, plan, bound_table(draft.listeners, proxy)
    )
    draft.listeners += gateways.listeners
    draft.routes += gateways.routes
    draft.problems += gateways.problems
    inbound = draft.route(inbound_route) if inbound_route else None
    if inbound is not None:
        apply_rate_limits(state, proxy, inbound)
    attach_route_hash_policies(draft.routes, destinations)
    attach_tcp_hash_policies(draft.listeners, destinations)
