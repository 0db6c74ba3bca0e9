"""The proxyless gRPC target: what gRPC's own xDS client (``xds:///`` targets) is served.

gRPC resolves ``xds:///<host>`` by asking LDS for the listener named ``<host>``: an *API
listener* whose connection manager names a route configuration (RDS); the virtual host whose
domains match the channel's authority picks routes (path and header matches, weighted
clusters: gRFC A28), whose clusters (CDS, EDS type only) take their endpoints over EDS.

The target builds its own base draft (a cluster and load assignment per service, the outbound
route configuration, no listeners), runs the same policy passes as sidecars
(:data:`~interlock.xds.translate.passes.PASSES`, under the contract of :mod:`.draft`), and then
keeps of each resource only what gRPC implements:

- listeners: one API listener per host a sidecar accepts for a service (``b``, ``b:8080``,
  ``b.ns``, …, ``b.ns.svc.cluster.local:8080``), RDS over ADS, the fault filter and the router;
- routes: timeouts as ``max_stream_duration`` (A31), retries on gRPC status codes (A44),
  fault injection (A33), header hash policies for ring hash (A42);
- clusters: EDS, round robin or ring hash, ``max_requests`` circuit breaking (A32);
- load assignments: every locality weighted (gRPC ignores a locality without a weight),
  instances that require mutual TLS left out (a proxyless client speaks plain text).

Whatever else a policy asked for is taken out and reported as a problem on that policy, so
the proxy's status says what its gRPC clients will not do — never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from interlock.model import Instance, MeshState, Problem, Proxy, Severity
from interlock.model.identity import MeshIdentity
from interlock.model.policy.destination_rule import TLSMode
from interlock.model.policy.selectors import selects
from interlock.xds import naming
from interlock.xds.translate import mtls
from interlock.xds.translate.clusters import outbound_cluster
from interlock.xds.translate.common import ads_config_source, connect_timeout, typed
from interlock.xds.translate.destination_rule import finish_assignment
from interlock.xds.translate.destinations import ClusterPlan, Destinations
from interlock.xds.translate.draft import Draft, PassContext
from interlock.xds.translate.endpoints import load_assignment
from interlock.xds.translate.filters import http_filters
from interlock.xds.translate.passes import apply_passes
from interlock.xds.translate.resources import Resources
from interlock.xds.translate.route_filters import FAULT
from interlock.xds.translate.routes import outbound_route_configuration
from interlock.xds.translate.telemetry import telemetry_plan_for
from interlock.xds.translate.upstream_tls import instance_resource

_Cluster = cluster_pb2.Cluster

#: The retry conditions gRPC implements (status codes, gRFC A44); Envoy's others are ignored.
GRPC_RETRY_ON = ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")
#: What Envoy retries on that gRPC covers by itself (transparent retries, gRFC A6): dropping
#: them changes nothing a caller sees, so they are never reported.
_TRANSPARENT = frozenset(
    {"connect-failure", "refused-stream", "reset-before-request", "retriable-status-codes"}
)
#: gRPC makes at most five attempts of a call.
MAX_ATTEMPTS = 5
#: The per-route filter configurations gRPC implements (the others' filters are not there).
_ROUTE_FILTERS = frozenset({FAULT})
_LB_POLICIES = frozenset({_Cluster.LbPolicy.ROUND_ROBIN, _Cluster.LbPolicy.RING_HASH})
#: The hash policy sources gRPC's ring hash implements (gRFC A42).
_HASH_KEYS = frozenset({"header", "filter_state"})


class _Report(Protocol):
    """Reports what a route loses on the VirtualService that made it (default routes: none)."""

    def __call__(self, field: str, what: str, severity: Severity = Severity.WARNING) -> None: ...


def translate_grpc(state: MeshState, proxy: Proxy, identity: MeshIdentity | None) -> Resources:
    """The resources a proxyless gRPC client ``proxy`` is served (see the module)."""
    services = sorted(state.services.values(), key=lambda s: (s.namespace, s.name))
    source = ads_config_source()
    ctx = PassContext(
        state,
        proxy,
        services,
        Destinations(state, services),
        None,  # the client speaks plain text: no mTLS sockets, every instance reachable as such
        source,
        telemetry_plan_for(state, proxy),
    )
    route_config, problems = outbound_route_configuration(services)
    draft = Draft(
        [],
        [outbound_cluster(s, source) for s in services],
        [route_config],
        [load_assignment(s, state.instances_of(s.name)) for s in services],
        problems,
    )
    draft.problems += apply_passes(ctx, draft)
    draft.problems += _keep_mesh_hosts(ctx, draft)
    draft.problems += _grpc_clusters(ctx, draft)
    draft.problems += _grpc_routes(draft)
    draft.endpoints = []
    served = {c.name for c in draft.clusters}
    for plan in ctx.destinations.plans.values():
        planned = grpc_assignment(state, identity, proxy, plan) if plan.name in served else None
        if planned is not None:
            draft.endpoints.append(planned[0])
            draft.problems += planned[1]
    draft.listeners = api_listeners(draft.routes)
    return Resources(
        listeners=tuple(sorted(draft.listeners, key=lambda r: r.name)),
        clusters=tuple(sorted(draft.clusters, key=lambda r: r.name)),
        routes=tuple(sorted(draft.routes, key=lambda r: r.name)),
        endpoints=tuple(sorted(draft.endpoints, key=lambda r: r.cluster_name)),
        secrets=(),
        problems=tuple(sorted(set(draft.problems))),
    )


# --- listeners -----------------------------------------------------------------------------


def api_listener(host: str, route_config: str) -> listener_pb2.Listener:
    """The API listener gRPC resolves ``xds:///<host>`` to: routes over RDS (ADS), the fault
    filter (switched on per route) and the router."""
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=naming.OUTBOUND_HTTP_STAT_PREFIX,
        rds=hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=route_config),
        http_filters=[
            hcm_pb2.HttpFilter(name=FAULT, typed_config=typed(fault_pb2.HTTPFault())),
            *http_filters(),
        ],
    )
    return listener_pb2.Listener(
        name=naming.grpc_listener(host),
        api_listener=api_listener_pb2.ApiListener(api_listener=typed(manager)),
    )


def api_listeners(routes: Iterable[route_pb2.RouteConfiguration]) -> list[listener_pb2.Listener]:
    """One API listener per exact domain of the outbound route configuration's virtual hosts
    (every host a sidecar accepts for a service); wildcard domains name no target."""
    return [
        api_listener(domain, config.name)
        for config in routes
        for vhost in config.virtual_hosts
        for domain in vhost.domains
        if "*" not in domain
    ]


# --- what gRPC is not served ---------------------------------------------------------------


def _keep_mesh_hosts(ctx: PassContext, draft: Draft) -> list[Problem]:
    """ServiceEntry hosts are not served to gRPC clients yet: their virtual hosts, listeners
    and clusters go, each host reported once."""
    problems = []
    listeners_of_entries = set(draft.external_listeners)
    draft.listeners = [lst for lst in draft.listeners if lst.name not in listeners_of_entries]
    for config in draft.routes:
        kept = [v for v in config.virtual_hosts if v.name not in draft.external_hosts]
        if len(kept) != len(config.virtual_hosts):
            del config.virtual_hosts[:]
            config.virtual_hosts.extend(kept)
    seen: set[str] = set()
    for port in ctx.destinations.external:
        if port.entry.ref in seen:
            continue
        seen.add(port.entry.ref)
        problems.append(
            Problem(
                port.entry.ref,
                "hosts",
                f"proxyless gRPC client {_who(ctx.proxy)} is not served ServiceEntry hosts "
                "(gRPC takes only EDS clusters); call them through a sidecar",
                Severity.WARNING,
            )
        )
    return problems


def _who(proxy: Proxy) -> str:
    return f"{proxy.namespace}/{proxy.service}"


# --- clusters ------------------------------------------------------------------------------


def _grpc_clusters(ctx: PassContext, draft: Draft) -> list[Problem]:
    """Every mesh cluster as gRPC takes it; other clusters (ServiceEntry hosts) leave."""
    problems: list[Problem] = []
    kept = []
    for cluster in draft.clusters:
        plan = ctx.destinations.plans.get(cluster.name)
        if plan is None or plan.service is None:
            continue
        problems += _grpc_cluster(cluster, plan)
        kept.append(cluster)
    draft.clusters = kept
    return problems


def _rule_problem(plan: ClusterPlan, field: str, message: str) -> Problem:
    assert plan.service is not None
    return Problem(
        f"Service/{plan.service.namespace}/{plan.service.name}",
        f"DestinationRule.trafficPolicy.{field}",
        f"{message} (cluster {plan.name}); proxyless gRPC clients do without it",
        Severity.WARNING,
    )


def _grpc_cluster(cluster: cluster_pb2.Cluster, plan: ClusterPlan) -> list[Problem]:
    """Reduce ``cluster`` (in place) to what gRPC implements; the problems of what left."""
    problems = []
    if cluster.type != _Cluster.DiscoveryType.EDS:
        # loadBalancer.simple PASSTHROUGH made it ORIGINAL_DST: gRPC takes EDS only.
        problems.append(
            _rule_problem(
                plan, "loadBalancer.simple", "PASSTHROUGH is not implemented by gRPC clients"
            )
        )
        cluster.ClearField("original_dst_lb_config")
        cluster.type = _Cluster.DiscoveryType.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
        cluster.eds_cluster_config.service_name = cluster.name
        cluster.lb_policy = _Cluster.LbPolicy.ROUND_ROBIN
    if cluster.lb_policy not in _LB_POLICIES:
        name = _Cluster.LbPolicy.Name(cluster.lb_policy)
        problems.append(
            _rule_problem(
                plan,
                "loadBalancer",
                f"{name} is not implemented by gRPC (round robin and ring hash are)",
            )
        )
        cluster.lb_policy = _Cluster.LbPolicy.ROUND_ROBIN
        cluster.ClearField("maglev_lb_config")
    problems += _hash_problems(plan)
    if cluster.HasField("outlier_detection"):
        problems.append(
            _rule_problem(
                plan,
                "outlierDetection",
                "ejection on consecutive errors is not implemented by gRPC (gRFC A50 ejects "
                "on success rate and failure percentage only)",
            )
        )
        cluster.ClearField("outlier_detection")
    problems += _circuit_breakers(cluster, plan)
    options = cluster.typed_extension_protocol_options
    if options:
        for config in options.values():
            unpacked = http_protocol_options_pb2.HttpProtocolOptions()
            if config.Unpack(unpacked) and (
                unpacked.common_http_protocol_options.HasField("max_requests_per_connection")
            ):
                problems.append(
                    _rule_problem(
                        plan,
                        "connectionPool.http.maxRequestsPerConnection",
                        "is not implemented by gRPC",
                    )
                )
        cluster.ClearField("typed_extension_protocol_options")
    if cluster.connect_timeout != connect_timeout():
        problems.append(
            _rule_problem(
                plan, "connectionPool.tcp.connectTimeout", "is not implemented by gRPC clients"
            )
        )
        cluster.connect_timeout.CopyFrom(connect_timeout())
    tls = plan.policy.tls
    if tls is not None and tls.mode is not TLSMode.DISABLE:
        problems.append(
            _rule_problem(
                plan,
                "tls.mode",
                f"{tls.mode.value} cannot be honoured: proxyless gRPC clients speak plain "
                "text to instances",
            )
        )
    cluster.ClearField("transport_socket")
    cluster.ClearField("transport_socket_matches")
    if cluster.health_checks:
        assert plan.service is not None
        problems.append(
            Problem(
                f"Service/{plan.service.namespace}/{plan.service.name}",
                "health_check",
                "proxyless gRPC clients do not run Envoy's active health checks; they use "
                "every instance the registry holds healthy",
                Severity.WARNING,
            )
        )
        del cluster.health_checks[:]
        cluster.common_lb_config.ClearField("healthy_panic_threshold")
    return problems


def _hash_problems(plan: ClusterPlan) -> list[Problem]:
    """Consistent hashing on what gRPC cannot hash on: each call is then hashed at random."""
    lb = plan.policy.load_balancer
    hashing = lb.consistent_hash if lb is not None else None
    if hashing is None or hashing.http_header_name is not None:
        return []
    if hashing.http_cookie is not None:
        field = "httpCookie"
    elif hashing.http_query_parameter_name is not None:
        field = "httpQueryParameterName"
    else:
        field = "useSourceIp"
    return [
        _rule_problem(
            plan,
            f"loadBalancer.consistentHash.{field}",
            "gRPC's ring hash hashes only on a header (each call is hashed at random)",
        )
    ]


def _circuit_breakers(cluster: cluster_pb2.Cluster, plan: ClusterPlan) -> list[Problem]:
    """Keep only ``max_requests`` (gRFC A32) of the default-priority thresholds."""
    problems: list[Problem] = []
    kept = []
    for thresholds in cluster.circuit_breakers.thresholds:
        fields = {
            "max_connections": "connectionPool.tcp.maxConnections",
            "max_pending_requests": "connectionPool.http.http1MaxPendingRequests",
            "max_retries": "connectionPool.http.maxRetries",
        }
        for proto_field, policy_field in fields.items():
            if thresholds.HasField(proto_field):
                problems.append(_rule_problem(plan, policy_field, "is not implemented by gRPC"))
        if thresholds.HasField("max_requests"):
            kept.append(
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    priority=thresholds.priority, max_requests=thresholds.max_requests
                )
            )
    del cluster.circuit_breakers.thresholds[:]
    cluster.circuit_breakers.thresholds.extend(kept)
    if not kept:
        cluster.ClearField("circuit_breakers")
    return problems


# --- routes --------------------------------------------------------------------------------


def _grpc_routes(draft: Draft) -> list[Problem]:
    """Every route as gRPC takes it; routes to clusters that are not served fail their calls."""
    clusters = {c.name for c in draft.clusters}
    problems: list[Problem] = []
    for config in draft.routes:
        config.ClearField("request_headers_to_add")
        for vhost in config.virtual_hosts:
            kept = []
            for route in vhost.routes:
                if _grpc_route(route, clusters, problems):
                    kept.append(route)
            del vhost.routes[:]
            vhost.routes.extend(kept)
    return problems


def _owner(route: rc.Route) -> tuple[str, str] | None:
    """``(VirtualService/<ns>/<name>, rule)`` of a route a VirtualService made (its name is
    ``<ns>/<name>/<rule>``, see :func:`naming.http_route`); None for a default route."""
    parts = route.name.split("/", 2)
    if len(parts) != 3:
        return None
    return f"VirtualService/{parts[0]}/{parts[1]}", parts[2]


def _grpc_route(route: rc.Route, clusters: set[str], problems: list[Problem]) -> bool:
    """Reduce ``route`` (in place) to what gRPC implements, adding the problems of what left;
    False when gRPC would skip the whole route (it is left out)."""
    owner = _owner(route)

    def report(field: str, what: str, severity: Severity = Severity.WARNING) -> None:
        if owner is not None:
            problems.append(
                Problem(
                    owner[0],
                    f"http[{owner[1]}].{field}",
                    f"{what}; proxyless gRPC clients do without it",
                    severity,
                )
            )

    if route.match.query_parameters:
        report("match.queryParams", "query parameter matches are not implemented by gRPC")
        return False
    if route.request_headers_to_add or route.request_headers_to_remove:
        report("headers.request", "request header changes are not implemented by gRPC")
    if route.response_headers_to_add or route.response_headers_to_remove:
        report("headers.response", "response header changes are not implemented by gRPC")
    route.ClearField("request_headers_to_add")
    route.ClearField("request_headers_to_remove")
    route.ClearField("response_headers_to_add")
    route.ClearField("response_headers_to_remove")
    for name in list(route.typed_per_filter_config):
        if name not in _ROUTE_FILTERS:
            report("corsPolicy" if "cors" in name else name, f"{name} is not implemented by gRPC")
            del route.typed_per_filter_config[name]
    if route.HasField("redirect"):
        report(
            "redirect",
            "gRPC does not follow redirects: the calls this route matches fail (UNAVAILABLE)",
        )
        return True
    if not route.HasField("route"):
        return True
    action = route.route
    if action.prefix_rewrite or action.HasField("regex_rewrite"):
        report("rewrite.uri", "path rewrites are not implemented by gRPC")
        action.ClearField("prefix_rewrite")
        action.ClearField("regex_rewrite")
    if action.host_rewrite_literal:
        report("rewrite.authority", "authority rewrites are not implemented by gRPC")
        action.ClearField("host_rewrite_literal")
    if action.request_mirror_policies:
        report("mirror", "mirroring is not implemented by gRPC")
        del action.request_mirror_policies[:]
    for weighted in action.weighted_clusters.clusters:
        if (
            weighted.request_headers_to_add
            or weighted.request_headers_to_remove
            or weighted.response_headers_to_add
            or weighted.response_headers_to_remove
            or weighted.host_rewrite_literal
        ):
            report("route.headers", "per-destination header changes are not implemented by gRPC")
        weighted.ClearField("request_headers_to_add")
        weighted.ClearField("request_headers_to_remove")
        weighted.ClearField("response_headers_to_add")
        weighted.ClearField("response_headers_to_remove")
        weighted.ClearField("host_rewrite_literal")
    _grpc_retries(action, report)
    _grpc_hash_policies(action)
    weighted_names = [w.name for w in action.weighted_clusters.clusters]
    targets = [action.cluster] if action.cluster else weighted_names
    missing = [t for t in targets if t not in clusters]
    if missing:
        report(
            "route.destination",
            f"{', '.join(missing)} is not served to gRPC clients: the calls this route "
            "matches fail (UNAVAILABLE)",
            Severity.ERROR,
        )
        route.ClearField("route")
        route.direct_response.status = 503
    return True


def _grpc_retries(action: rc.RouteAction, report: _Report) -> None:
    if not action.HasField("retry_policy"):
        return
    policy = action.retry_policy
    conditions = [c.strip() for c in policy.retry_on.split(",") if c.strip()]
    kept = [c for c in conditions if c in GRPC_RETRY_ON]
    dropped = [c for c in conditions if c not in GRPC_RETRY_ON and c not in _TRANSPARENT]
    if dropped:
        report(
            "retries.retryOn",
            f"{', '.join(dropped)} are not gRPC status codes (gRPC retries on "
            f"{', '.join(GRPC_RETRY_ON)})",
        )
    if policy.HasField("per_try_timeout"):
        report("retries.perTryTimeout", "per-try timeouts are not implemented by gRPC")
    if not kept:
        action.ClearField("retry_policy")
        return
    retries = policy.num_retries.value if policy.HasField("num_retries") else 1
    if retries + 1 > MAX_ATTEMPTS:
        report("retries.attempts", f"gRPC makes at most {MAX_ATTEMPTS} attempts of a call")
    grpc_policy = rc.RetryPolicy(retry_on=",".join(kept))
    grpc_policy.num_retries.value = min(retries, MAX_ATTEMPTS - 1)
    if policy.HasField("retry_back_off"):
        grpc_policy.retry_back_off.CopyFrom(policy.retry_back_off)
    action.retry_policy.CopyFrom(grpc_policy)


def _grpc_hash_policies(action: rc.RouteAction) -> None:
    """Ring hash hashes on a header (or gRPC's channel id); other hash sources are not
    implemented (reported on the cluster's DestinationRule, see :func:`_hash_problems`)."""
    kept = [p for p in action.hash_policy if p.WhichOneof("policy_specifier") in _HASH_KEYS]
    del action.hash_policy[:]
    action.hash_policy.extend(kept)


# --- endpoints -----------------------------------------------------------------------------


def grpc_assignment(
    state: MeshState, identity: MeshIdentity | None, proxy: Proxy, plan: ClusterPlan
) -> tuple[endpoint_pb2.ClusterLoadAssignment, tuple[Problem, ...]] | None:
    """The load assignment of a mesh service's cluster or subset cluster ``plan`` for a gRPC
    client, and the problems of the instances left out (None for other plans).

    A sidecar-fronted instance whose PeerAuthentication requires mutual TLS (STRICT) would
    refuse the client's plain text: it is left out and reported, as is a second instance at
    the same address (gRPC refuses the assignment). Every group of endpoints has a locality
    (gRPC refuses one without, even empty) and, unless ``distribute`` weighed them, a weight
    (its endpoints' count): gRPC ignores a locality without one.
    """
    service = plan.service
    if service is None:
        return None
    instances = state.instances_of(service.name)
    if plan.subset is not None:
        labels = plan.subset.labels
        instances = tuple(i for i in instances if selects(labels, i))
    problems: list[Problem] = []
    held: list[Instance] = []
    if identity is None:
        held = list(instances)
    else:
        fronted = [i for i in instances if i.sidecar]
        modes = mtls.endpoint_modes(state, service.namespace, fronted, identity.root_namespace)
        for instance in instances:
            mode = modes.get(instance.instance_id)
            if mode is None or mtls.accepts_plaintext(mode) or not instance.routable:
                held.append(instance)
                continue
            problems.append(
                Problem(
                    instance_resource(service, instance.instance_id),
                    "mtls",
                    f"its PeerAuthentication requires mutual TLS ({mode.value}); proxyless "
                    f"gRPC client {_who(proxy)} speaks plain text, so it is left out of "
                    f"{plan.name} for that client",
                    Severity.WARNING,
                )
            )
    # gRPC refuses an assignment that names one address twice (Envoy takes it): the first
    # instance of an address (in id order) is kept, the others are named.
    held = [i for i in held if i.routable]
    first: dict[tuple[str, int], Instance] = {}
    for instance in sorted(held, key=lambda i: i.instance_id):
        kept = first.setdefault((instance.address, instance.port), instance)
        if kept is not instance:
            problems.append(
                Problem(
                    instance_resource(service, instance.instance_id),
                    "address",
                    f"{instance.address}:{instance.port} is also instance {kept.instance_id}'s; "
                    f"proxyless gRPC clients take each address once, so it is left out of "
                    f"{plan.name} for them",
                    Severity.WARNING,
                )
            )
    held = [i for i in held if first[(i.address, i.port)] is i]
    assignment = load_assignment(service, held)
    assignment.cluster_name = plan.name
    finish_assignment(assignment, plan, proxy)
    weighted = any(group.load_balancing_weight.value for group in assignment.endpoints)
    for group in assignment.endpoints:
        group.locality.SetInParent()  # gRPC refuses a group without one, even an empty one
        if not weighted:  # (with localityLbSetting.distribute, unweighted ones get nothing)
            group.load_balancing_weight.value = max(1, len(group.lb_endpoints))
    return assignment, tuple(problems)
