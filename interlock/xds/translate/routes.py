"""Routes: the outbound route configuration (one virtual host per HTTP service) and the
inbound one (everything to the app).

VirtualService routing (matches, splits, rewrites, per-route timeouts and retries) replaces
:func:`default_route` for the hosts it names (see :mod:`.virtual_service`, :mod:`.http_routes`).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2

from interlock.model import Problem, Service, Severity
from interlock.xds import naming
from interlock.xds.translate.common import disabled, typed, uint32

RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,reset-before-request"
"""Istio's default retry conditions, without 503: a service with no endpoints fails at once."""
RETRY_ATTEMPTS = 2
HOST_SELECTION_ATTEMPTS = 5
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"


def service_domains(service: Service) -> list[str]:
    """Every ``Host`` by which an app may call ``service``, with and without its port.

    ``b``, ``b.ns`` and ``b.ns.svc.cluster.local`` (the name Istio users write), each also as
    ``host:port``, so both ``curl http://b/`` through the proxy and ``Host: b:8080`` match.
    """
    hosts = [service.name, f"{service.name}.{service.namespace}", service.fqdn]
    return [domain for host in hosts for domain in (host, f"{host}:{service.port}")]


def default_retry_policy() -> route_components_pb2.RetryPolicy:
    """Retry twice on another host when a connection fails or is refused, like Istio.

    503 responses are not retried, so "no healthy upstream" reaches the caller at once.
    """
    return route_components_pb2.RetryPolicy(
        retry_on=RETRY_ON,
        num_retries=uint32(RETRY_ATTEMPTS),
        retry_host_predicate=[
            route_components_pb2.RetryPolicy.RetryHostPredicate(
                name=PREVIOUS_HOSTS,
                typed_config=typed(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=HOST_SELECTION_ATTEMPTS,
    )


def _route_to(
    cluster: str, retry_policy: route_components_pb2.RetryPolicy | None = None
) -> route_components_pb2.Route:
    """Every request (prefix ``/``) to ``cluster``, without a timeout (Istio's default)."""
    action = route_components_pb2.RouteAction(cluster=cluster, timeout=disabled())
    if retry_policy is not None:
        action.retry_policy.CopyFrom(retry_policy)
    return route_components_pb2.Route(
        name="default",
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=action,
    )


def default_route(service: Service) -> route_components_pb2.Route:
    """The route of a service no policy names: everything to its cluster, with retries."""
    return _route_to(naming.outbound_cluster(service), default_retry_policy())


def outbound_virtual_host(
    service: Service, domains: list[str] | None = None
) -> route_components_pb2.VirtualHost:
    """The virtual host that sends ``service``'s domains (by default all of
    :func:`service_domains`) to its cluster."""
    return route_components_pb2.VirtualHost(
        name=naming.outbound_virtual_host(service),
        domains=service_domains(service) if domains is None else domains,
        routes=[default_route(service)],
    )


def outbound_route_configuration(
    services: Iterable[Service],
    source: base_pb2.HeaderValueOption | None = None,
) -> tuple[route_pb2.RouteConfiguration, list[Problem]]:
    """The route configuration of the outbound HTTP listener, and the problems met making it.

    One virtual host per HTTP (``http``, ``http2``, ``grpc``) service, sorted by namespace and
    name; tcp services are skipped. A request whose ``Host`` names no service matches no
    virtual host and gets Envoy's 404. Envoy rejects a route configuration in which two virtual
    hosts share a domain, so a domain already taken by an earlier service is left out of the
    later one and reported. ``source`` (the calling service's header) is stamped on every
    request.
    """
    http_services = sorted(
        (s for s in services if s.protocol.is_http), key=lambda s: (s.namespace, s.name)
    )
    owners: dict[str, Service] = {}
    problems: list[Problem] = []
    virtual_hosts = []
    for service in http_services:
        domains = []
        for domain in service_domains(service):
            owner = owners.setdefault(domain, service)
            if owner is service:
                domains.append(domain)
            else:
                problems.append(
                    Problem(
                        f"Service/{service.namespace}/{service.name}",
                        "name",
                        f"host {domain!r} already names service {owner.namespace}/{owner.name}; "
                        "requests for it go there",
                        Severity.WARNING,
                    )
                )
        virtual_hosts.append(outbound_virtual_host(service, domains))
    config = route_pb2.RouteConfiguration(
        name=naming.outbound_http_route(),
        virtual_hosts=virtual_hosts,
        request_headers_to_add=[source] if source is not None else [],
    )
    return config, problems


def inbound_route_configuration(
    app_port: int,
    service_name: str,
    virtual_clusters: Iterable[route_components_pb2.VirtualCluster] = (),
) -> route_pb2.RouteConfiguration:
    """The route configuration of an HTTP inbound listener (served over RDS): any host, any
    path, to the app. No retries: the caller's sidecar already retries. Its virtual host is
    named after the proxy's service and its ``virtual_clusters`` count requests by caller."""
    return route_pb2.RouteConfiguration(
        name=naming.inbound_route(app_port),
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=naming.inbound_virtual_host(service_name),
                domains=["*"],
                routes=[_route_to(naming.inbound_cluster(app_port))],
                virtual_clusters=list(virtual_clusters),
            )
        ],
    )
