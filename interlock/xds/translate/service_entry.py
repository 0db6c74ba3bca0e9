"""ServiceEntries: clusters for hosts outside the registry, and how sidecars reach them.

- ``resolution: DNS``: a STRICT_DNS cluster per host and port, whose endpoints are the entry's
  ``endpoints`` (host names or IPs) or else the host itself, on the endpoint's port for that
  port name, the port's ``targetPort`` or its number.
- ``resolution: STATIC``: an EDS cluster per host and port whose load assignment holds the
  entry's endpoints (by locality, with their weights).
- ``resolution: NONE`` makes nothing (reported as a problem of the entry).

HTTP ports (``HTTP``, ``HTTP2``, ``GRPC``) are served by the outbound HTTP listener, one virtual
host per host and port (``api.example.com:80``; the bare host goes to port 80, or to the
lowest HTTP port). Other ports (``TCP``, ``TLS``, ``HTTPS``, unset) get a listener of their own
on the sidecar's outbound address and the port's number, like tcp services; a TLS port with
several hosts tells them apart by SNI. Traffic to external hosts is plain TCP from the sidecar
(TLS, if any, is the app's).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from interlock.model import Problem, Proxy, Severity
from interlock.model.policy.service_entry import PortProtocol, Resolution, WorkloadEntry
from interlock.xds import naming
from interlock.xds.translate import filters, tls
from interlock.xds.translate.common import (
    connect_timeout,
    disabled,
    socket_address,
    typed,
    uint32,
)
from interlock.xds.translate.destination_rule import finish
from interlock.xds.translate.destinations import ClusterPlan, Destinations, ExternalPort
from interlock.xds.translate.draft import Draft, PassContext
from interlock.xds.translate.locality import split
from interlock.xds.translate.ports import Binding, PortTable, bound_table
from interlock.xds.translate.routes import default_retry_policy
from interlock.xds.translate.traffic_policy import HTTP_PROTOCOL_OPTIONS

_Cluster = cluster_pb2.Cluster
_TLS_PROTOCOLS = (PortProtocol.TLS, PortProtocol.HTTPS)


def _endpoint_port(port: ExternalPort, endpoint: WorkloadEntry | None) -> int:
    if endpoint is not None and port.port.name in endpoint.ports:
        return endpoint.ports[port.port.name]
    return port.port.target_port or port.port.number


def _assignment(plan: ClusterPlan) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints of an external cluster, grouped by locality (sorted)."""
    port = plan.external
    assert port is not None
    spec = port.entry.spec
    chosen: list[tuple[str, int, WorkloadEntry | None]] = []
    if spec.endpoints:
        for endpoint in spec.endpoints:
            wanted = plan.subset.labels.items() if plan.subset is not None else ()
            if any(endpoint.labels.get(k) != v for k, v in wanted):
                continue
            chosen.append((endpoint.address, _endpoint_port(port, endpoint), endpoint))
    elif plan.subset is None:
        chosen.append((port.host, _endpoint_port(port, None), None))
    groups: dict[tuple[str, str, str], list[endpoint_components_pb2.LbEndpoint]] = {}
    for address, number, entry in sorted(chosen, key=lambda c: (c[0], c[1])):
        lb_endpoint = endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=socket_address(address, number))
        )
        if entry is not None and entry.weight is not None:
            lb_endpoint.load_balancing_weight.CopyFrom(uint32(entry.weight))
        locality = split(entry.locality if entry is not None else "")
        groups.setdefault(locality, []).append(lb_endpoint)
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=plan.name)
    for locality in sorted(groups):
        group = assignment.endpoints.add()
        if any(locality):
            group.locality.CopyFrom(
                base_pb2.Locality(region=locality[0], zone=locality[1], sub_zone=locality[2])
            )
        group.lb_endpoints.extend(groups[locality])
    return assignment


def _cluster(plan: ClusterPlan, source: config_source_pb2.ConfigSource) -> cluster_pb2.Cluster:
    port = plan.external
    assert port is not None
    cluster = _Cluster(name=plan.name, connect_timeout=connect_timeout())
    if port.entry.spec.resolution is Resolution.DNS:
        cluster.type = _Cluster.DiscoveryType.STRICT_DNS
        cluster.dns_lookup_family = _Cluster.DnsLookupFamily.V4_PREFERRED
        cluster.load_assignment.CopyFrom(_assignment(plan))
    else:
        cluster.type = _Cluster.DiscoveryType.EDS
        cluster.eds_cluster_config.CopyFrom(
            _Cluster.EdsClusterConfig(eds_config=source, service_name=plan.name)
        )
    metadata = {"host": port.host, "service_entry": port.entry.ref}
    if plan.subset is not None:
        metadata["subset"] = plan.subset.name
    cluster.metadata.filter_metadata[naming.METADATA_NAMESPACE].update(metadata)
    if port.port.protocol in (PortProtocol.HTTP2, PortProtocol.GRPC):
        options = http_protocol_options_pb2.HttpProtocolOptions()
        options.explicit_http_config.http2_protocol_options.SetInParent()
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(typed(options))
    return cluster


def _clusters(ctx: PassContext, draft: Draft) -> None:
    for plan in ctx.destinations.plans.values():
        if plan.external is None:
            continue
        cluster = _cluster(plan, ctx.source)
        if cluster.type == _Cluster.DiscoveryType.STRICT_DNS:
            finish(cluster, cluster.load_assignment, plan, ctx.proxy)
            if cluster.type == _Cluster.DiscoveryType.ORIGINAL_DST:
                cluster.ClearField("load_assignment")
        else:
            assignment = finish(cluster, _assignment(plan), plan, ctx.proxy)
            if assignment is not None:
                draft.endpoints.append(assignment)
        draft.clusters.append(cluster)


def _default_route(cluster: str) -> route_components_pb2.Route:
    action = route_components_pb2.RouteAction(
        cluster=cluster, timeout=disabled(), retry_policy=default_retry_policy()
    )
    return route_components_pb2.Route(
        name="default", match=route_components_pb2.RouteMatch(prefix="/"), route=action
    )


def _virtual_hosts(
    destinations: Destinations,
    outbound: route_pb2.RouteConfiguration,
    draft: Draft,
    problems: list[Problem],
) -> None:
    """One virtual host per external host and HTTP port, in ``outbound``."""
    taken = {d for v in outbound.virtual_hosts for d in v.domains}
    made = draft.external_hosts
    http = [p for p in destinations.external if p.is_http]
    bare: dict[str, ExternalPort] = {}
    for port in sorted(http, key=lambda p: (p.port.number != 80, p.port.number)):
        bare.setdefault(port.host, port)
    for port in http:
        wanted = [f"{port.host}:{port.port.number}"]
        if bare[port.host] is port:
            wanted.insert(0, port.host)
        domains = []
        for domain in wanted:
            if domain in taken:
                problems.append(
                    Problem(
                        port.entry.ref,
                        "spec.hosts",
                        f"host {domain!r} already names a service or another ServiceEntry; "
                        "requests for it go there",
                        Severity.WARNING,
                    )
                )
                continue
            taken.add(domain)
            domains.append(domain)
        if not domains:
            continue
        name = naming.external_virtual_host(port.host, port.port.number)
        cluster = naming.external_cluster(port.host, port.port.number)
        outbound.virtual_hosts.append(
            route_components_pb2.VirtualHost(
                name=name, domains=domains, routes=[_default_route(cluster)]
            )
        )
        made[name] = port


def _tcp_listeners(
    destinations: Destinations,
    proxy: Proxy,
    table: PortTable,
    draft: Draft,
    problems: list[Problem],
) -> None:
    """One listener per ServiceEntry and non-HTTP port."""
    groups: dict[tuple[str, int], list[ExternalPort]] = {}
    for port in destinations.external:
        if not port.is_http:
            groups.setdefault((port.entry.ref, port.port.number), []).append(port)
    made = draft.external_listeners
    listeners: list[listener_pb2.Listener] = []
    for (ref, number), ports in groups.items():
        first = ports[0]
        name = naming.external_tcp_listener(first.host, number)
        owner = f"the listener of ServiceEntry {ref} port {number}"
        binding = Binding(proxy.outbound_address, number, owner)
        if taken := table.claim(binding):
            problems.append(
                Problem(
                    ref,
                    "spec.ports",
                    f"port {number} collides with {taken.owner} ({taken.endpoint}) on the "
                    f"proxies of {proxy.namespace}/{proxy.service}; it is left out there",
                )
            )
            continue
        listener = listener_pb2.Listener(
            name=name,
            address=socket_address(proxy.outbound_address, number),
            traffic_direction=base_pb2.OUTBOUND,
        )
        by_sni = first.port.protocol in _TLS_PROTOCOLS and len(ports) > 1
        for port in ports if by_sni else ports[:1]:
            proxy_filter = filters.tcp_proxy(
                naming.external_tcp_stat_prefix(port.host, number),
                naming.external_cluster(port.host, number),
            )
            chain = listener_components_pb2.FilterChain(
                filters=[filters.tcp_proxy_filter(proxy_filter)]
            )
            if by_sni:
                chain.filter_chain_match.server_names.append(port.host)
            listener.filter_chains.append(chain)
        if by_sni:
            listener.listener_filters.append(tls.tls_inspector())
        listeners.append(listener)
        made[name] = ports
    draft.listeners += listeners


class ServiceEntries:
    """The ServiceEntries pass: clusters and assignments of every external port; with the
    outbound HTTP listener, virtual hosts for HTTP ports and listeners for the others
    (recorded in the draft's ``external_hosts`` and ``external_listeners``)."""

    def apply(self, ctx: PassContext, draft: Draft) -> list[Problem]:
        problems: list[Problem] = []
        _clusters(ctx, draft)
        outbound = draft.route(naming.outbound_http_route())
        if outbound is not None:
            table = bound_table(draft.listeners, ctx.proxy)
            _virtual_hosts(ctx.destinations, outbound, draft, problems)
            _tcp_listeners(ctx.destinations, ctx.proxy, table, draft, problems)
        return problems
