"""The AuthorizationPolicy pass: where the policies of a workload go.

On an HTTP sidecar they switch on the RBAC filters of its inbound route configuration
(:mod:`.authz`); on a tcp sidecar they become RBAC network filters of its inbound listener
(:mod:`.authz_tcp`); on a gateway proxy, both, port by port. Nothing that applies is left out
quietly: what tcp changes is a warning of the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interlock.model import Problem, ProxyKind, Severity
from interlock.model.policy.authorization_policy import AuthorizationPolicy
from interlock.model.policy.policies import Policy
from interlock.xds import naming
from interlock.xds.translate import authz_tcp, filters
from interlock.xds.translate.authz import applicable_policies, per_route_configs
from interlock.xds.translate.common import typed
from interlock.xds.translate.draft import Draft, PassContext
from interlock.xds.translate.jwt import applicable_authentications, key_problems


class Authorization:
    """The AuthorizationPolicy pass: the RBAC filters switched on in a sidecar's inbound route
    configuration for the policies of its workload.

    Where an AuthorizationPolicy or a RequestAuthentication applies but cannot be enforced —
    on a gateway proxy, on a tcp service — the policy gets a problem (error): nothing is
    silently left out. Where a RequestAuthentication is enforced, a ``jwksUri`` whose keys
    could not be fetched is a problem of the policy too (:func:`.jwt.key_problems`).
    """

    def apply(self, ctx: PassContext, draft: Draft) -> list[Problem]:
        proxy, identity = ctx.proxy, ctx.security
        policies = applicable_policies(ctx.state, proxy, identity.root_namespace)
        authentications = applicable_authentications(ctx.state, proxy, identity.root_namespace)
        if proxy.kind is ProxyKind.GATEWAY:
            return key_problems(authentications, ctx.state) + self._gateway(ctx, draft, policies)
        if proxy.kind is ProxyKind.GRPC:
            # A proxyless client's server side takes no xDS from Interlock (gRFC A36).
            scoped: list[Policy[Any]] = [*policies, *authentications]
            return [
                Problem(
                    p.ref,
                    "spec",
                    f"applies to {proxy.namespace}/{proxy.service}, but {p.kind} is not "
                    "enforced on proxyless gRPC workloads (their servers take no xDS from "
                    "Interlock)",
                    Severity.ERROR,
                )
                for p in scoped
            ]
        if ctx.inbound is not None and not ctx.inbound.protocol.is_http:
            return self._tcp(ctx, draft, policies, authentications)
        problems = key_problems(authentications, ctx.state) if ctx.inbound is not None else []
        inbound = draft.route(ctx.inbound_route)
        if not policies or inbound is None or len(inbound.virtual_hosts) != 1:
            return problems
        vhost = inbound.virtual_hosts[0]
        for name, config in per_route_configs(policies, identity.trust_domain).items():
            vhost.typed_per_filter_config[name].CopyFrom(typed(config))
        return problems

    def _tcp(
        self,
        ctx: PassContext,
        draft: Draft,
        policies: list[Policy[AuthorizationPolicy]],
        authentications: Sequence[Policy[Any]],
    ) -> list[Problem]:
        """A tcp workload: the policies become RBAC network filters in its inbound listener
        (:mod:`.authz_tcp`); a RequestAuthentication has no request to check there."""

        proxy, inbound = ctx.proxy, ctx.inbound
        assert inbound is not None
        where = f"{proxy.namespace}/{proxy.service}"
        problems = [
            Problem(
                p.ref,
                "spec",
                f"applies to {where}, which is tcp: no HTTP request carries a token there, so "
                "nothing is authenticated (as in Istio); AuthorizationPolicy rules on "
                "requestPrincipals match nothing there",
                Severity.WARNING,
            )
            for p in authentications
        ]
        if not policies:
            return problems
        rbac_filters, found = authz_tcp.network_filters(
            policies,
            ctx.security.trust_domain,
            naming.inbound_stat_prefix(inbound.port),
            where,
        )
        for listener in draft.listeners:
            if listener.name == naming.inbound_listener():
                authz_tcp.guard_listener(listener, rbac_filters)
        return problems + found

    def _gateway(
        self, ctx: PassContext, draft: Draft, policies: list[Policy[AuthorizationPolicy]]
    ) -> list[Problem]:
        """A gateway proxy (as Istio's ingress gateway): the RBAC filters of its HTTP and HTTPS
        ports are switched on in every virtual host of their routes; its TCP and TLS ports get
        RBAC network filters, with the tcp rule for HTTP-only fields. Its RequestAuthentications
        are already in its connection managers (:mod:`.gateway`)."""
        if not policies:
            return []
        proxy = ctx.proxy
        trust_domain = ctx.security.trust_domain
        configs = per_route_configs(policies, trust_domain)
        prefix = naming.gateway_route(0).rsplit("|", 1)[0] + "|"
        for route in draft.routes:
            if not route.name.startswith(prefix):
                continue
            for vhost in route.virtual_hosts:
                for name, config in configs.items():
                    vhost.typed_per_filter_config[name].CopyFrom(typed(config))
        problems: list[Problem] = []
        for listener in draft.listeners:
            chains = listener.filter_chains
            if not chains or chains[0].filters[-1].name != filters.TCP_PROXY:
                continue
            port = listener.name.rsplit("|", 1)[-1]
            rbac_filters, found = authz_tcp.network_filters(
                policies,
                trust_domain,
                f"gateway_{port}",
                f"gateway {proxy.namespace}/{proxy.service} port {port}",
            )
            authz_tcp.guard_listener(listener, rbac_filters)
            problems += [p for p in found if p not in problems]
        return problems
