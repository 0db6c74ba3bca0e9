"""Gateways: the listeners of a gateway proxy (``interlock gateway``), from the Gateway
resources whose ``selector`` matches it, and the routes of the VirtualServices bound to them.

- A Gateway selects the gateway proxies whose labels include its ``selector`` (every proxy
  carries ``app: <its name>``; ``interlock gateway`` also registers ``gateway: <name>`` and
  ``istio: ingressgateway``). An empty selector selects every gateway proxy. Namespaces do not
  limit selection (Istio's default).
- A proxy serves the Gateway ports it was started with (``--port PORT[:LISTEN]``) on its
  address, one listener ``gateway|<port>`` per port; servers on other ports are reported.
- HTTP servers: an HTTP connection manager whose routes (``gateway|<port>``, over RDS) hold one
  virtual host per bound VirtualService, for the hosts it shares with the servers (``host``,
  ``host:<port>`` and ``host:<listen port>``). ``tls.httpsRedirect`` answers with a redirect
  to https.
- HTTPS servers: one filter chain per server, chosen by SNI (the server's hosts; a ``*`` host
  matches any), terminating TLS with ``serverCertificate``/``privateKey`` (files Envoy reads on
  the gateway's host) — ``MUTUAL`` also requires a client certificate signed by
  ``caCertificates``; then the same routes as HTTP.
- TLS servers (``SIMPLE``/``MUTUAL``) and TCP servers forward connections as the first TCP rule
  of a bound VirtualService says. TLS ``PASSTHROUGH`` needs VirtualService TLS routes, which
  Interlock does not support yet: such servers are reported and left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from interlock.model import MeshState, Problem, Proxy, ProxyKind, Severity
from interlock.model.policy.gateway import Gateway, Server, ServerProtocol, ServerTLSMode
from interlock.model.policy.hosts import canonical_host, host_matches
from interlock.model.policy.policies import Policy
from interlock.model.policy.virtual_service import VirtualService
from interlock.xds import naming
from interlock.xds.translate import filters, route_filters, telemetry, tls
from interlock.xds.translate.common import boolean, config_source, socket_address, typed
from interlock.xds.translate.destinations import Destinations, age
from interlock.xds.translate.draft import Draft, PassContext
from interlock.xds.translate.http_routes import RouteScope, http_routes
from interlock.xds.translate.jwt import applicable_authentications, authn_filter
from interlock.xds.translate.ports import Binding, PortTable, bound_table
from interlock.xds.translate.virtual_service import proxy_labels, route_tcp_proxy, tcp_targets

_VirtualHost = route_components_pb2.VirtualHost


@dataclass(frozen=True)
class _Server:
    gateway: Policy[Gateway]
    index: int
    server: Server

    @property
    def field(self) -> str:
        return f"spec.servers[{self.index}]"

    def hosts(self) -> Iterator[tuple[str, str]]:
        """``(namespace, host)``: namespace ``*`` (any) or one namespace."""
        for written in self.server.hosts:
            namespace, slash, host = written.rpartition("/")
            if not slash or namespace == "*":
                yield "*", host.lower()
            else:
                yield (self.gateway.namespace if namespace == "." else namespace), host.lower()


@dataclass
class GatewayResources:
    listeners: list[listener_pb2.Listener] = field(default_factory=list)
    routes: list[route_pb2.RouteConfiguration] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def selected_gateways(state: MeshState, proxy: Proxy) -> list[Policy[Gateway]]:
    """The Gateways whose selector matches ``proxy``, oldest first."""
    labels = proxy_labels(proxy)
    return sorted(
        (
            gw
            for gw in state.policies.gateways
            if all(labels.get(k) == v for k, v in gw.spec.selector.items())
        ),
        key=age,
    )


def _binds(vs: Policy[VirtualService], gateway: Policy[Gateway]) -> bool:
    for ref in vs.spec.gateway_refs:
        namespace, _, name = ref.rpartition("/")
        if name == gateway.name and (namespace or vs.namespace) == gateway.namespace:
            return True
    return False


def _domains(vs: Policy[VirtualService], servers: Sequence[_Server]) -> list[str]:
    """The hosts ``vs`` shares with ``servers`` of the gateways it binds to."""
    found: list[str] = []
    for written in vs.spec.hosts:
        host = "*" if written == "*" else canonical_host(written, vs.namespace)
        for server in servers:
            if not _binds(vs, server.gateway):
                continue
            for namespace, server_host in server.hosts():
                if namespace not in ("*", vs.namespace):
                    continue
                if host_matches(server_host, host):
                    domain = host
                elif host_matches(host, server_host):
                    domain = server_host
                else:
                    continue
                if domain not in found:
                    found.append(domain)
    return found


def _with_ports(domains: Sequence[str], port: int, listen: int) -> list[str]:
    out: list[str] = []
    for domain in domains:
        variants = [domain] if domain == "*" else [domain, f"{domain}:{port}", f"{domain}:{listen}"]
        out += [v for v in variants if v not in out]
    return out


class _Builder:
    def __init__(
        self,
        state: MeshState,
        proxy: Proxy,
        destinations: Destinations,
        plan: telemetry.TelemetryPlan,
        table: PortTable,
        authn: hcm_pb2.HttpFilter | None = None,
    ) -> None:
        self.authn = authn
        self.state = state
        self.proxy = proxy
        self.destinations = destinations
        self.plan = plan
        self.table = table
        self.out = GatewayResources()
        self.labels = proxy_labels(proxy)
        self.bound = sorted(
            (vs for vs in state.policies.virtual_services if vs.spec.gateway_refs), key=age
        )

    def problem(self, server: _Server, field: str, message: str, warning: bool = False) -> None:
        severity = Severity.WARNING if warning else Severity.ERROR
        self.out.problems.append(
            Problem(server.gateway.ref, f"{server.field}{field}", message, severity)
        )

    def bound_to(self, servers: Sequence[_Server]) -> list[Policy[VirtualService]]:
        return [vs for vs in self.bound if any(_binds(vs, s.gateway) for s in servers)]

    # --- HTTP and HTTPS ----------------------------------------------------------------
    def route_configuration(
        self, port: int, listen: int, servers: Sequence[_Server]
    ) -> route_pb2.RouteConfiguration:
        config = route_pb2.RouteConfiguration(name=naming.gateway_route(port))
        taken: dict[str, str] = {}
        scope = RouteScope(port, self.labels)
        redirecting = [s for s in servers if s.server.tls and s.server.tls.https_redirect]
        serving = [s for s in servers if s not in redirecting]
        for vs in self.bound_to(servers):
            if not vs.spec.http:
                continue
            plain = _domains(vs, serving)
            redirect = [d for d in _domains(vs, redirecting) if d not in plain]
            routes = http_routes(vs, scope, self.destinations)
            conflicts: list[str] = []
            for hosts, redirected in ((plain, False), (redirect, True)):
                domains = []
                for host in hosts:
                    owner = taken.setdefault(host, vs.ref)
                    if owner != vs.ref:
                        conflicts.append(f"{host!r} ({owner})")
                        continue
                    domains += _with_ports([host], port, listen)
                if not domains:
                    continue
                vhost = _VirtualHost(
                    name=naming.gateway_virtual_host(vs.namespace, vs.name, redirected),
                    domains=domains,
                    routes=routes,
                )
                if redirected:
                    vhost.require_tls = _VirtualHost.TlsRequirementType.ALL
                config.virtual_hosts.append(vhost)
            if conflicts:
                self.out.problems.append(
                    Problem(
                        vs.ref,
                        "spec.hosts",
                        f"older VirtualServices already route {', '.join(conflicts)} on gateway "
                        f"port {port}; the oldest is used",
                        Severity.WARNING,
                    )
                )
        return config

    def http_filter(self, port: int) -> listener_components_pb2.Filter:
        manager = filters.outbound_connection_manager(
            naming.gateway_stat_prefix(port),
            naming.gateway_route(port),
            config_source(self.proxy),
            telemetry.http_access_logs(self.proxy, inbound=False, plan=self.plan),
            telemetry.http_tracing(self.proxy, self.plan.tracing) if self.plan.tracing else None,
            route_filters.gateway_http_filters(self.authn),
        )
        return filters.http_connection_manager_filter(manager)

    # --- TLS ----------------------------------------------------------------------------
    def transport_socket(self, server: _Server, alpn: tuple[str, ...]) -> base_pb2.TransportSocket:
        settings = server.server.tls
        assert settings is not None
        common = tls_pb2.CommonTlsContext(
            tls_certificates=[
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(filename=settings.server_certificate),
                    private_key=base_pb2.DataSource(filename=settings.private_key),
                )
            ],
            alpn_protocols=list(alpn),
        )
        context = tls_pb2.DownstreamTlsContext(common_tls_context=common)
        if settings.effective_mode is ServerTLSMode.MUTUAL:
            common.validation_context.trusted_ca.filename = settings.ca_certificates or ""
            context.require_client_certificate.CopyFrom(boolean(True))
        return base_pb2.TransportSocket(name=tls.TLS_TRANSPORT_SOCKET, typed_config=typed(context))

    def terminating(self, servers: Sequence[_Server]) -> list[_Server]:
        kept = []
        for server in servers:
            settings = server.server.tls
            mode = settings.effective_mode if settings else ServerTLSMode.PASSTHROUGH
            if mode is ServerTLSMode.PASSTHROUGH:
                self.problem(
                    server,
                    ".tls.mode",
                    "TLS PASSTHROUGH needs VirtualService tls routes, which Interlock does not "
                    "support yet; this server is left out",
                )
            elif settings is not None and settings.credential_name:
                self.problem(server, ".tls.credentialName", "credentialName is not supported yet")
            else:
                kept.append(server)
        return kept

    def tls_chains(
        self,
        servers: Sequence[_Server],
        make_filter: Callable[[_Server], listener_components_pb2.Filter | None],
        alpn: tuple[str, ...],
    ) -> list[listener_components_pb2.FilterChain]:
        chains: list[listener_components_pb2.FilterChain] = []
        seen: dict[tuple[str, ...], _Server] = {}
        for server in servers:
            hosts = sorted({host for _, host in server.hosts()})
            names = () if "*" in hosts else tuple(hosts)
            if names in seen:
                self.problem(
                    server,
                    ".hosts",
                    f"{seen[names].gateway.ref} {seen[names].field} already terminates TLS for "
                    "these hosts on this port; this server is left out",
                )
                continue
            network_filter = make_filter(server)
            if network_filter is None:
                continue
            seen[names] = server
            chain = listener_components_pb2.FilterChain(
                name=naming.gateway_chain(
                    server.gateway.namespace, server.gateway.name, server.server.port.name
                ),
                filters=[network_filter],
                transport_socket=self.transport_socket(server, alpn),
            )
            chain.filter_chain_match.server_names.extend(names)
            chains.append(chain)
        return chains

    # --- TCP ----------------------------------------------------------------------------
    def tcp_filter(
        self, port: int, servers: Sequence[_Server]
    ) -> listener_components_pb2.Filter | None:
        """The tcp proxy of the oldest VirtualService bound to ``servers``' gateways whose hosts
        meet theirs (as Istio binds it) and that has a tcp rule for ``port``."""
        for vs in self.bound_to(servers):
            if not vs.spec.tcp or not _domains(vs, servers):
                continue
            targets = tcp_targets(vs, port, self.labels, self.destinations)
            if targets is None:
                continue
            proxy = filters.tcp_proxy(naming.gateway_stat_prefix(port), targets[0][0])
            route_tcp_proxy(proxy, targets)
            return filters.tcp_proxy_filter(proxy)
        return None

    def _server_tcp(self, port: int) -> Callable[[_Server], listener_components_pb2.Filter | None]:
        def make(server: _Server) -> listener_components_pb2.Filter | None:
            found = self.tcp_filter(port, [server])
            if found is None:
                self.problem(
                    server,
                    ".hosts",
                    "no VirtualService bound to this gateway with a tcp rule for port "
                    f"{port} names these hosts; this server is left out",
                    warning=True,
                )
            return found

        return make

    # --- one port -----------------------------------------------------------------------
    def port(self, port: int, listen: int, servers: list[_Server]) -> None:
        protocol = servers[0].server.port.protocol
        for server in servers[1:]:
            if server.server.port.protocol is not protocol:
                self.problem(
                    server,
                    ".port.protocol",
                    f"port {port} is {protocol.value} in {servers[0].gateway.ref}; one port "
                    "has one protocol, this server is left out",
                )
        servers = [s for s in servers if s.server.port.protocol is protocol]
        address = self.proxy.inbound_address
        listener = listener_pb2.Listener(
            name=naming.gateway_listener(port),
            address=socket_address(address, listen),
            traffic_direction=base_pb2.INBOUND,
        )
        if protocol is ServerProtocol.HTTP:
            self.out.routes.append(self.route_configuration(port, listen, servers))
            listener.filter_chains.append(
                listener_components_pb2.FilterChain(filters=[self.http_filter(port)])
            )
        elif protocol is ServerProtocol.HTTPS:
            kept = self.terminating(servers)
            http = self.http_filter(port)
            chains = self.tls_chains(kept, lambda _: http, tls.HTTP_ALPN)
            if chains:
                self.out.routes.append(self.route_configuration(port, listen, kept))
            listener.filter_chains.extend(chains)
        else:
            kept = self.terminating(servers) if protocol is ServerProtocol.TLS else servers
            tcp = self.tcp_filter(port, kept)
            if tcp is None:
                for server in kept[:1]:
                    self.problem(
                        server,
                        ".port",
                        f"no VirtualService bound to this gateway has a tcp rule for port {port}; "
                        "the port is left out",
                        warning=True,
                    )
            elif protocol is ServerProtocol.TLS:
                # Each server's SNI chain forwards as the VirtualService whose hosts meet its own.
                listener.filter_chains.extend(self.tls_chains(kept, self._server_tcp(port), ()))
            else:
                listener.filter_chains.append(listener_components_pb2.FilterChain(filters=[tcp]))
        if not listener.filter_chains:
            return
        if any(c.filter_chain_match.server_names for c in listener.filter_chains):
            listener.listener_filters.append(tls.tls_inspector())
        owner = f"gateway port {port}"
        if taken := self.table.claim(Binding(address, listen, owner)):
            self.problem(
                servers[0],
                ".port.number",
                f"gateway port {port} ({address}:{listen}) collides with {taken.owner} "
                f"({taken.endpoint}) on {self.proxy.namespace}/{self.proxy.service}; "
                "it is left out",
            )
            return
        self.out.listeners.append(listener)


class Gateways:
    """The Gateways pass: a gateway proxy's listeners and route configurations, from the
    Gateways that select it (sidecars get nothing)."""

    def apply(self, ctx: PassContext, draft: Draft) -> list[Problem]:
        proxy = ctx.proxy
        if proxy.kind is not ProxyKind.GATEWAY:
            return []
        table = bound_table(draft.listeners, proxy)
        authentications = applicable_authentications(ctx.state, proxy, ctx.security.root_namespace)
        builder = _Builder(
            ctx.state,
            proxy,
            ctx.destinations,
            ctx.telemetry,
            table,
            authn_filter(authentications, ctx.state),
        )
        listen_on = dict(proxy.gateway_ports)
        by_port: dict[int, list[_Server]] = {}
        for gateway in selected_gateways(ctx.state, proxy):
            for index, server in enumerate(gateway.spec.servers):
                number = server.port.number
                entry = _Server(gateway, index, server)
                if number not in listen_on:
                    ports = ", ".join(str(p) for p in listen_on) or "none"
                    builder.problem(
                        entry,
                        ".port.number",
                        f"gateway {proxy.namespace}/{proxy.service} does not serve port {number} "
                        f"(its ports: {ports}); start it with --port {number}",
                        warning=True,
                    )
                    continue
                by_port.setdefault(number, []).append(entry)
        for number in sorted(by_port):
            builder.port(number, listen_on[number], by_port[number])
        draft.listeners += builder.out.listeners
        draft.routes += builder.out.routes
        return builder.out.problems
