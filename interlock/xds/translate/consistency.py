"""Consistency: does a set of resources refer only to resources it contains?

A snapshot is published only when it is consistent; Envoy would otherwise wait for, or warm
against, a resource that never comes (an EDS cluster without endpoints stays warming, an RDS
name without a route configuration holds its listener back).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from interlock.xds.references import eds_service_name
from interlock.xds.translate.resources import Resources


def _routed_clusters(config: route_pb2.RouteConfiguration) -> Iterator[str]:
    """Every cluster a route of ``config`` sends (or mirrors) requests to."""
    for vhost in config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                yield action.cluster
            for weighted in action.weighted_clusters.clusters:
                yield weighted.name
            for mirror in action.request_mirror_policies:
                if mirror.cluster:
                    yield mirror.cluster


def _tcp_clusters(proxy: tcp_proxy_pb2.TcpProxy) -> Iterator[str]:
    if proxy.cluster:
        yield proxy.cluster
    for weighted in proxy.weighted_clusters.clusters:
        yield weighted.name


def _secret_names(socket: base_pb2.TransportSocket) -> Iterator[str]:
    """The SDS secret names a TLS transport socket refers to."""
    context = tls_pb2.CommonTlsContext()
    for kind in (tls_pb2.DownstreamTlsContext, tls_pb2.UpstreamTlsContext):
        if socket.typed_config.Is(kind.DESCRIPTOR):
            tls = kind()
            socket.typed_config.Unpack(tls)
            context = tls.common_tls_context
    for config in context.tls_certificate_sds_secret_configs:
        yield config.name
    if context.HasField("validation_context_sds_secret_config"):
        yield context.validation_context_sds_secret_config.name
    combined = context.combined_validation_context
    if combined.HasField("validation_context_sds_secret_config"):
        yield combined.validation_context_sds_secret_config.name


def _cluster_sockets(cluster: cluster_pb2.Cluster) -> Iterator[base_pb2.TransportSocket]:
    if cluster.HasField("transport_socket"):
        yield cluster.transport_socket
    for match in cluster.transport_socket_matches:
        yield match.transport_socket


def _chains(listener: listener_pb2.Listener) -> Iterator[listener_pb2.FilterChain]:
    yield from listener.filter_chains
    if listener.HasField("default_filter_chain"):
        yield listener.default_filter_chain


def _duplicates(kind: str, names: Iterable[str]) -> Iterator[str]:
    for name, count in sorted(Counter(names).items()):
        if count > 1:
            yield f"{kind} {name!r} appears {count} times"


def check_consistency(resources: Resources, provided_secrets: Iterable[str] = ()) -> list[str]:
    """What ``resources`` refer to but do not contain; ``[]`` when they are consistent.

    Checked: every EDS cluster's service name has a ClusterLoadAssignment; every RDS name used
    by a connection manager (or a gRPC client's API listener) has a RouteConfiguration; every
    cluster named by a route (inline or RDS) or a tcp_proxy exists; every SDS secret named by a
    TLS transport socket is present, or in ``provided_secrets`` (secrets served beside these
    resources, such as each proxy's own certificate); no two resources of one kind share a
    name. Messages are sorted and name the referrer.
    """
    messages: list[str] = []
    messages += _duplicates("listener", (r.name for r in resources.listeners))
    messages += _duplicates("cluster", (r.name for r in resources.clusters))
    messages += _duplicates("route configuration", (r.name for r in resources.routes))
    messages += _duplicates("load assignment", (r.cluster_name for r in resources.endpoints))
    messages += _duplicates("secret", (r.name for r in resources.secrets))

    clusters = {c.name for c in resources.clusters}
    assignments = {e.cluster_name for e in resources.endpoints}
    route_configs = {r.name for r in resources.routes}
    secrets = {s.name for s in resources.secrets} | set(provided_secrets)

    def check_secrets(referrer: str, socket: base_pb2.TransportSocket) -> None:
        for name in _secret_names(socket):
            if name not in secrets:
                messages.append(f"{referrer} refers to secret {name!r}, which is missing")

    def check_routes(referrer: str, config: route_pb2.RouteConfiguration) -> None:
        for name in _routed_clusters(config):
            if name not in clusters:
                messages.append(f"{referrer} routes to cluster {name!r}, which is missing")

    for cluster in resources.clusters:
        referrer = f"cluster {cluster.name!r}"
        eds_name = eds_service_name(cluster)
        if eds_name is not None and eds_name not in assignments:
            messages.append(
                f"{referrer} takes its endpoints from EDS name {eds_name!r}, "
                "which has no ClusterLoadAssignment"
            )
        for socket in _cluster_sockets(cluster):
            check_secrets(referrer, socket)

    for listener in resources.listeners:
        referrer = f"listener {listener.name!r}"
        if listener.HasField("api_listener"):  # a proxyless gRPC client's
            manager = hcm_pb2.HttpConnectionManager()
            if listener.api_listener.api_listener.Unpack(manager) and manager.HasField("rds"):
                name = manager.rds.route_config_name
                if name not in route_configs:
                    messages.append(
                        f"{referrer} uses route configuration {name!r}, which is missing"
                    )
        for chain in _chains(listener):
            if chain.HasField("transport_socket"):
                check_secrets(referrer, chain.transport_socket)
            for network_filter in chain.filters:
                config = network_filter.typed_config
                if config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                    manager = hcm_pb2.HttpConnectionManager()
                    config.Unpack(manager)
                    if manager.HasField("rds"):
                        name = manager.rds.route_config_name
                        if name not in route_configs:
                            messages.append(
                                f"{referrer} uses route configuration {name!r}, which is missing"
                            )
                    if manager.HasField("route_config"):
                        check_routes(f"{referrer} (inline routes)", manager.route_config)
                elif config.Is(tcp_proxy_pb2.TcpProxy.DESCRIPTOR):
                    proxy = tcp_proxy_pb2.TcpProxy()
                    config.Unpack(proxy)
                    for name in _tcp_clusters(proxy):
                        if name not in clusters:
                            messages.append(
                                f"{referrer} forwards to cluster {name!r}, which is missing"
                            )

    for route_config in resources.routes:
        check_routes(f"route configuration {route_config.name!r}", route_config)
    return sorted(set(messages))
