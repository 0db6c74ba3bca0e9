"""The pure translator: ``MeshState`` + one ``Proxy`` -> the Envoy resources of that proxy.

It reads nothing but its arguments (no globals, environment, clock or I/O) and its output is
deterministic: equal input gives byte-identical serialized resources (serialize with
``deterministic=True``). User mistakes come back as ``Resources.problems``, never as exceptions.
"""

from __future__ import annotations

from interlock.model import MeshState, Proxy, ProxyKind
from interlock.model.identity import MeshIdentity
from interlock.xds.translate import jwt, mtls
from interlock.xds.translate.clusters import inbound_cluster, outbound_cluster
from interlock.xds.translate.common import config_source
from interlock.xds.translate.consistency import check_consistency
from interlock.xds.translate.destinations import Destinations
from interlock.xds.translate.draft import Draft, PassContext
from interlock.xds.translate.endpoints import load_assignment
from interlock.xds.translate.grpc import translate_grpc
from interlock.xds.translate.incremental import refresh_endpoints
from interlock.xds.translate.listeners import ListenerPlan, plan_listeners
from interlock.xds.translate.passes import apply_passes
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
from interlock.xds.translate.tls import InboundSecurity

__all__ = ["Resources", "check_consistency", "refresh_endpoints", "translate"]


def translate(state: MeshState, proxy: Proxy, identity: MeshIdentity | None = None) -> Resources:
    """The resources ``proxy`` needs to take part in the mesh described by ``state``.

    - Every service gets an EDS cluster and a load assignment of its healthy instances.
    - A sidecar with ``inbound_port`` and ``app_port`` gets an inbound listener and a static
      cluster to its app (gateways get none yet).
    - With ``outbound_port``, the proxy gets the outbound HTTP listener and its route
      configuration (one virtual host per HTTP service), and a listener per tcp service.
    - With ``identity`` (the mesh's trust domain), sidecars speak mutual TLS to every instance
      whose PeerAuthentication mode accepts it (PERMISSIVE unless a policy says otherwise),
      and the inbound listener accepts what its own mode allows. The TLS contexts name the
      secrets ``default`` and ``ROOTCA``, which are per proxy and not part of the result.
    - The policy passes (:mod:`.passes`: DestinationRule, ServiceEntry, VirtualService,
      Gateway, RateLimit, AuthorizationPolicy, hash policies) are then applied to them, in
      one fixed order, each under the contract of :mod:`.draft`.
    - A sidecar's inbound side enforces the RequestAuthentications (:mod:`.jwt`) and
      AuthorizationPolicies (:mod:`.authz`) of its workload; without ``identity`` the mesh's
      defaults (trust domain, root namespace) are used for them.

    A proxyless gRPC client (``ProxyKind.GRPC``) gets what gRPC's xDS client implements of
    the same (:mod:`.grpc`): API listeners, routes, EDS clusters, endpoints.

    Resources of each kind are sorted by name; problems are sorted.
    """
    if proxy.kind is ProxyKind.GRPC:
        return translate_grpc(state, proxy, identity)
    services = sorted(state.services.values(), key=lambda s: (s.namespace, s.name))
    telemetry_plan = telemetry_plan_for(state, proxy)
    source = config_source(proxy)
    inbound_security = None
    if identity is not None:
        mode = mtls.proxy_mode(state, proxy, identity.root_namespace)
        inbound_security = InboundSecurity(identity, mode, source)
    root_namespace = (identity or MeshIdentity()).root_namespace
    authentications = jwt.applicable_authentications(state, proxy, root_namespace)
    plan = plan_listeners(
        proxy, services, telemetry_plan, inbound_security, jwt.authn_filter(authentications, state)
    )
    ctx = PassContext(
        state,
        proxy,
        services,
        Destinations(state, services),
        identity,
        source,
        telemetry_plan,
        plan.inbound,
    )
    draft = _base_draft(ctx, plan)
    draft.problems += apply_passes(ctx, draft)
    return Resources(
        listeners=tuple(sorted(draft.listeners, key=lambda r: r.name)),
        clusters=tuple(sorted(draft.clusters, key=lambda r: r.name)),
        routes=tuple(sorted(draft.routes, key=lambda r: r.name)),
        endpoints=tuple(sorted(draft.endpoints, key=lambda r: r.cluster_name)),
        secrets=(),
        problems=tuple(sorted(set(draft.problems))),
    )


def _base_draft(ctx: PassContext, plan: ListenerPlan) -> Draft:
    """What every proxy gets before any policy pass: ``plan``'s listeners, a cluster and load
    assignment per service, the inbound and outbound route configurations, and the inbound
    and tracing clusters when they are needed."""
    services, identity = ctx.services, ctx.identity
    caller = source_header(ctx.proxy)
    clusters = [outbound_cluster(s, ctx.source, identity, caller) for s in services]
    if plan.inbound is not None:
        clusters.append(inbound_cluster(plan.inbound.app_port, plan.inbound.protocol))
    if ctx.telemetry.tracing is not None and plan.listeners:
        clusters.append(tracing_cluster(ctx.telemetry.tracing))
    problems = list(plan.problems)
    routes = []
    if plan.inbound is not None and plan.inbound.protocol.is_http:
        routes.append(
            inbound_route_configuration(
                plan.inbound.app_port, ctx.proxy.service, source_virtual_clusters(services)
            )
        )
    if plan.outbound_http:
        route_config, route_problems = outbound_route_configuration(services, caller)
        routes.append(route_config)
        problems += route_problems
    endpoints = [
        load_assignment(s, ctx.state.instances_of(s.name), ctx.mutual_tls(s.name)) for s in services
    ]
    return Draft(plan.listeners, clusters, routes, endpoints, problems)
