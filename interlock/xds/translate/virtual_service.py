"""VirtualServices for sidecars (``gateways`` absent or listing ``mesh``): their HTTP rules
replace the default route of the virtual host of each host they name, and their TCP rules
decide where a tcp service's (or a ServiceEntry port's) listener forwards connections.

One VirtualService per host is used, as in Istio: the oldest naming the host exactly, else
the oldest whose wildcard host covers it. A VirtualService without ``http`` rules leaves HTTP
routing alone (and one without ``tcp`` rules leaves tcp listeners alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from interlock.model import MeshState, Problem, Proxy, Service
from interlock.model.policy.hosts import canonical_host, host_matches
from interlock.model.policy.lookup import service_for_host
from interlock.model.policy.policies import Policy
from interlock.model.policy.selectors import APP_LABEL
from interlock.model.policy.virtual_service import L4MatchAttributes, TCPRoute, VirtualService
from interlock.xds import naming
from interlock.xds.translate.destinations import Destinations, ExternalPort, age
from interlock.xds.translate.draft import Draft, PassContext
from interlock.xds.translate.http_routes import RouteScope, http_routes


def proxy_labels(proxy: Proxy) -> Mapping[str, str]:
    """The labels ``sourceLabels`` and selectors see on ``proxy``: its instance's registered
    labels and the implicit ``app: <service>``."""
    labels = dict(proxy.labels)
    labels.setdefault(APP_LABEL, proxy.service)
    return labels


class MeshVirtualServices:
    """The mesh VirtualServices, and which one routes a given host (indexed once)."""

    def __init__(self, state: MeshState) -> None:
        self.state = state
        ordered = sorted(
            (vs for vs in state.policies.virtual_services if vs.spec.applies_to_mesh), key=age
        )
        #: Exact hosts (a service's FQDN, or the canonical external host) → the oldest VS.
        self.exact: dict[str, Policy[VirtualService]] = {}
        #: Wildcard hosts (canonical), oldest VirtualService first.
        self.wildcards: list[tuple[str, Policy[VirtualService]]] = []
        for vs in ordered:
            for host in vs.spec.hosts:
                if host.startswith("*"):
                    self.wildcards.append((canonical_host(host, vs.namespace), vs))
                    continue
                service = service_for_host(state, host, vs.namespace)
                key = service.fqdn if service else canonical_host(host, vs.namespace)
                self.exact.setdefault(key, vs)

    def for_service(self, service: Service) -> Policy[VirtualService] | None:
        return self.exact.get(service.fqdn) or self._wildcard(service.fqdn)

    def for_external(self, port: ExternalPort) -> Policy[VirtualService] | None:
        wanted = canonical_host(port.host, port.entry.namespace)
        return self.exact.get(wanted) or self._wildcard(wanted)

    def _wildcard(self, host: str) -> Policy[VirtualService] | None:
        return next((vs for pattern, vs in self.wildcards if host_matches(pattern, host)), None)


def _apply_http(
    config: route_pb2.RouteConfiguration,
    services: Sequence[Service],
    external: Mapping[str, ExternalPort],
    mesh: MeshVirtualServices,
    proxy: Proxy,
    destinations: Destinations,
) -> None:
    """Replace the routes of every virtual host a VirtualService routes (in place)."""
    labels = proxy_labels(proxy)
    by_name = {vhost.name: vhost for vhost in config.virtual_hosts}
    targets: list[tuple[str, Policy[VirtualService] | None, int]] = [
        (naming.outbound_virtual_host(s), mesh.for_service(s), s.port)
        for s in services
        if s.protocol.is_http
    ]
    targets += [
        (name, mesh.for_external(port), port.port.number) for name, port in external.items()
    ]
    for name, vs, port in targets:
        vhost = by_name.get(name)
        if vhost is None or vs is None or not vs.spec.http:
            continue
        routes = http_routes(vs, RouteScope(port, labels), destinations)
        del vhost.routes[:]
        vhost.routes.extend(routes)


def _l4_applies(match: L4MatchAttributes, port: int, labels: Mapping[str, str]) -> bool:
    if match.port is not None and match.port != port:
        return False
    return all(labels.get(k) == v for k, v in match.source_labels.items())


def tcp_targets(
    vs: Policy[VirtualService],
    port: int,
    labels: Mapping[str, str],
    destinations: Destinations,
) -> list[tuple[str, int]] | None:
    """``(cluster, weight)`` of the first TCP rule of ``vs`` that applies to connections on
    ``port`` from a proxy with ``labels``; None when no rule applies or its destinations name
    nothing with a cluster."""
    rule: TCPRoute | None = next(
        (
            t
            for t in vs.spec.tcp
            if not t.match or any(_l4_applies(m, port, labels) for m in t.match)
        ),
        None,
    )
    if rule is None:
        return None
    found = []
    for target in rule.route:
        weight = 100 if target.weight is None else target.weight
        cluster = destinations.resolve(target.destination, vs.namespace, port)
        if weight and cluster is not None:
            found.append((cluster, weight))
    return found or None


def route_tcp_proxy(proxy: tcp_proxy_pb2.TcpProxy, targets: list[tuple[str, int]]) -> None:
    """Point ``proxy`` at ``targets`` (in place): one cluster, or weighted clusters."""
    proxy.ClearField("cluster")
    proxy.ClearField("weighted_clusters")
    if len(targets) == 1:
        proxy.cluster = targets[0][0]
        return
    for cluster, weight in targets:
        proxy.weighted_clusters.clusters.append(
            tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=cluster, weight=weight)
        )


def _retarget(listener: listener_pb2.Listener, targets: list[tuple[str, int]]) -> None:
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.Is(tcp_proxy_pb2.TcpProxy.DESCRIPTOR):
                proxy = tcp_proxy_pb2.TcpProxy()
                network_filter.typed_config.Unpack(proxy)
                route_tcp_proxy(proxy, targets)
                network_filter.typed_config.Pack(proxy, deterministic=True)


def _apply_tcp(
    listeners: list[listener_pb2.Listener],
    services: Sequence[Service],
    external: Mapping[str, Sequence[ExternalPort]],
    mesh: MeshVirtualServices,
    proxy: Proxy,
    destinations: Destinations,
) -> None:
    """Point each tcp listener a VirtualService routes at the rule's destinations."""
    labels = proxy_labels(proxy)
    by_name = {listener.name: listener for listener in listeners}
    targets: list[tuple[str, Policy[VirtualService] | None, int]] = [
        (naming.outbound_tcp_listener(s), mesh.for_service(s), s.port)
        for s in services
        if not s.protocol.is_http
    ]
    targets += [
        (name, mesh.for_external(ports[0]), ports[0].port.number)
        for name, ports in external.items()
        if len(ports) == 1  # several hosts on one TLS port are told apart by SNI, not routes
    ]
    for name, vs, port in targets:
        listener = by_name.get(name)
        if listener is None or vs is None or not vs.spec.tcp:
            continue
        found = tcp_targets(vs, port, labels, destinations)
        if found is not None:
            _retarget(listener, found)


class VirtualServices:
    """The mesh VirtualServices pass: HTTP rules replace the default routes of the virtual
    hosts (services' and ServiceEntry ports') they name; TCP rules retarget tcp listeners."""

    def apply(self, ctx: PassContext, draft: Draft) -> list[Problem]:
        mesh = MeshVirtualServices(ctx.state)
        outbound = draft.route(naming.outbound_http_route())
        if outbound is not None:
            _apply_http(
                outbound, ctx.services, draft.external_hosts, mesh, ctx.proxy, ctx.destinations
            )
        _apply_tcp(
            draft.listeners,
            ctx.services,
            draft.external_listeners,
            mesh,
            ctx.proxy,
            ctx.destinations,
        )
        return []
