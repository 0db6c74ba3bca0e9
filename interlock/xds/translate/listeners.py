"""Listeners: a sidecar's inbound listener, its outbound HTTP listener and one listener per tcp
service, each bound only where nothing else of the proxy is.

With a mesh identity, the inbound listener's filter chains follow the sidecar's
PeerAuthentication mode (:mod:`interlock.xds.translate.tls`): mTLS, plain text, or both told
apart by the TLS inspector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from interlock.model import Problem, Proxy, ProxyKind, Service, ServiceProtocol, Severity
from interlock.xds import naming
from interlock.xds.translate import filters, telemetry, tls
from interlock.xds.translate.common import config_source, socket_address
from interlock.xds.translate.ports import APP_ADDRESS, Binding, PortTable


@dataclass(frozen=True)
class Inbound:
    """The inbound side of a sidecar: traffic on ``port`` goes to the app on ``app_port``."""

    port: int
    app_port: int
    protocol: ServiceProtocol


@dataclass
class ListenerPlan:
    """The listeners of one proxy, what they need, and why some were left out."""

    listeners: list[listener_pb2.Listener] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    inbound: Inbound | None = None
    """Set when the inbound listener was made (its static cluster is then needed)."""
    outbound_http: bool = False
    """True when the outbound HTTP listener was made (its route configuration is then needed)."""


def _listener(
    name: str,
    address: str,
    port: int,
    direction: base_pb2.TrafficDirection.ValueType,
    network_filter: listener_components_pb2.Filter,
) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=direction,
        filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
    )


def inbound_listener(
    proxy: Proxy,
    inbound: Inbound,
    plan: telemetry.TelemetryPlan = telemetry.DEFAULT_PLAN,
    security: tls.InboundSecurity | None = None,
    authn: hcm_pb2.HttpFilter | None = None,
) -> listener_pb2.Listener:
    """Mesh traffic for this sidecar's app: HTTP through a connection manager whose routes
    (over RDS) send everything to the app, tcp straight through. With ``security``, the
    connections the mode accepts (mTLS and/or plain text), and the app learns the caller's
    SPIFFE ID from ``x-forwarded-client-cert``. ``authn`` (a JWT filter) goes into the HTTP
    connection manager."""
    address = proxy.inbound_address
    stat_prefix = naming.inbound_stat_prefix(inbound.port)
    if inbound.protocol.is_http:
        manager = filters.inbound_connection_manager(
            stat_prefix,
            naming.inbound_route(inbound.app_port),
            config_source(proxy),
            telemetry.http_access_logs(proxy, inbound=True, plan=plan),
            telemetry.http_tracing(proxy, plan.tracing) if plan.tracing else None,
            authn,
        )
        if security is not None:
            tls.forward_client_identity(manager)
        network_filter = filters.http_connection_manager_filter(manager)
    else:
        network_filter = filters.tcp_proxy_filter(
            filters.tcp_proxy(stat_prefix, naming.inbound_cluster(inbound.app_port))
        )
    listener = _listener(
        naming.inbound_listener(), address, inbound.port, base_pb2.INBOUND, network_filter
    )
    if security is not None:
        alpn = tls.HTTP_ALPN if inbound.protocol.is_http else ()
        chains, inspect = tls.inbound_chains(security, network_filter, alpn)
        del listener.filter_chains[:]
        listener.filter_chains.extend(chains)
        if inspect:
            listener.listener_filters.append(tls.tls_inspector())
    return listener


def outbound_http_listener(
    address: str,
    port: int,
    source: config_source_pb2.ConfigSource | None = None,
    access_logs: list[accesslog_pb2.AccessLog] | None = None,
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None = None,
) -> listener_pb2.Listener:
    """The listener the app sends HTTP through; routes come over RDS from ``source``."""
    manager = filters.outbound_connection_manager(
        naming.OUTBOUND_HTTP_STAT_PREFIX,
        naming.outbound_http_route(),
        source,
        access_logs,
        tracing,
    )
    return _listener(
        naming.outbound_http_listener(),
        address,
        port,
        base_pb2.OUTBOUND,
        filters.http_connection_manager_filter(manager),
    )


def outbound_tcp_listener(address: str, service: Service) -> listener_pb2.Listener:
    """The listener on ``address:<service.port>`` that forwards connections to ``service``."""
    proxy = filters.tcp_proxy(
        naming.outbound_tcp_stat_prefix(service), naming.outbound_cluster(service)
    )
    return _listener(
        naming.outbound_tcp_listener(service),
        address,
        service.port,
        base_pb2.OUTBOUND,
        filters.tcp_proxy_filter(proxy),
    )


def _proxy_resource(proxy: Proxy) -> str:
    return f"Proxy/{proxy.namespace}/{proxy.service}"


def _service_resource(service: Service) -> str:
    return f"Service/{service.namespace}/{service.name}"


def _own_service(proxy: Proxy, services: Sequence[Service]) -> Service | None:
    for service in services:
        if service.name == proxy.service and service.namespace == proxy.namespace:
            return service
    return None


def plan_listeners(
    proxy: Proxy,
    services: Sequence[Service],
    telemetry_plan: telemetry.TelemetryPlan = telemetry.DEFAULT_PLAN,
    inbound_security: tls.InboundSecurity | None = None,
    inbound_authn: hcm_pb2.HttpFilter | None = None,
) -> ListenerPlan:
    """Every listener ``proxy`` should have, given the mesh's ``services``.

    In order of precedence: the app's own port (``127.0.0.1:<app_port>``, never bound by
    Envoy), the inbound listener (sidecars with both ``inbound_port`` and ``app_port``), the
    outbound HTTP listener (when ``outbound_port`` is set) and, with it, one listener per tcp
    service on ``outbound_address:<service.port>``, by namespace and name. A listener whose
    address:port is already taken is left out and reported; no two listeners ever share one.
    Gateways get no inbound listener (yet). ``inbound_authn`` (a JWT filter) goes into the
    inbound HTTP connection manager.
    """
    plan = ListenerPlan()
    table = PortTable()
    if proxy.app_port is not None:
        table.claim(Binding(APP_ADDRESS, proxy.app_port, "the app's own port"))

    if (
        proxy.kind is ProxyKind.SIDECAR
        and proxy.inbound_port is not None
        and proxy.app_port is not None
    ):
        own = _own_service(proxy, services)
        binding = Binding(proxy.inbound_address, proxy.inbound_port, "the inbound listener")
        if own is None:
            plan.problems.append(
                Problem(
                    _proxy_resource(proxy),
                    "service",
                    f"service {proxy.namespace}/{proxy.service} is not registered, so its "
                    "protocol is unknown; the inbound listener is left out until it is",
                    Severity.WARNING,
                )
            )
        elif taken := table.claim(binding):
            plan.problems.append(
                Problem(
                    _proxy_resource(proxy),
                    "inbound_port",
                    f"the inbound listener ({binding.endpoint}) collides with {taken.owner} "
                    f"({taken.endpoint}); it is left out",
                )
            )
        else:
            plan.inbound = Inbound(proxy.inbound_port, proxy.app_port, own.protocol)
            plan.listeners.append(
                inbound_listener(
                    proxy, plan.inbound, telemetry_plan, inbound_security, inbound_authn
                )
            )

    if proxy.outbound_port is None:
        return plan
    binding = Binding(proxy.outbound_address, proxy.outbound_port, "the outbound HTTP listener")
    if taken := table.claim(binding):
        plan.problems.append(
            Problem(
                _proxy_resource(proxy),
                "outbound_port",
                f"the outbound HTTP listener ({binding.endpoint}) collides with {taken.owner} "
                f"({taken.endpoint}); it is left out",
            )
        )
    else:
        plan.outbound_http = True
        plan.listeners.append(
            outbound_http_listener(
                proxy.outbound_address,
                proxy.outbound_port,
                config_source(proxy),
                telemetry.http_access_logs(proxy, inbound=False, plan=telemetry_plan),
                telemetry.http_tracing(proxy, telemetry_plan.tracing)
                if telemetry_plan.tracing
                else None,
            )
        )

    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        if service.protocol.is_http:
            continue
        owner = f"the listener of tcp service {service.namespace}/{service.name}"
        binding = Binding(proxy.outbound_address, service.port, owner)
        if taken := table.claim(binding):
            plan.problems.append(
                Problem(
                    _service_resource(service),
                    "port",
                    f"port {service.port} collides with {taken.owner} ({taken.endpoint}) on "
                    f"the proxies of {proxy.namespace}/{proxy.service}; the service's tcp "
                    "listener is left out there",
                )
            )
        else:
            plan.listeners.append(outbound_tcp_listener(proxy.outbound_address, service))
    return plan
