"""What Interlock accepts but cannot (yet) turn into Envoy configuration, as problems on the
resources that ask for it — so nothing valid is silently ignored by the translator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from interlock.model.policy.gateway import ServerProtocol, ServerTLSMode
from interlock.model.policy.lookup import service_for_host
from interlock.model.policy.service_entry import Resolution
from interlock.model.problem import Problem, Severity

if TYPE_CHECKING:
    from interlock.model.state import MeshState


def translation_limits(state: MeshState) -> Iterator[Problem]:
    """Parts of valid policies that change no Envoy resource, and why."""
    policies = state.policies
    for entry in policies.service_entries:
        if entry.spec.resolution is Resolution.NONE:
            yield Problem(
                entry.ref,
                "spec.resolution",
                "resolution NONE passes connections through to the address the caller dialed, "
                "which needs traffic interception; Interlock's sidecars are explicit proxies, so "
                "this entry makes no cluster (use DNS or STATIC)",
                Severity.ERROR,
            )
    for rule in policies.destination_rules:
        service = service_for_host(state, rule.spec.host, rule.namespace)
        policies_with_tls = [("spec.trafficPolicy", rule.spec.traffic_policy)] + [
            (f"spec.subsets[{i}].trafficPolicy", s.traffic_policy)
            for i, s in enumerate(rule.spec.subsets)
        ]
        for field, policy in policies_with_tls:
            if policy is None or policy.tls is None:
                continue
            if service is None and not policy.tls.originates:
                yield Problem(
                    rule.ref,
                    f"{field}.tls.mode",
                    f"tls.mode {policy.tls.mode} is for registered services: a ServiceEntry "
                    "host is outside the mesh, so sidecars reach it in plain TCP (TLS, if any, "
                    "is the app's); use SIMPLE or MUTUAL to originate TLS to it",
                    Severity.WARNING,
                )
    for limit in policies.rate_limits:
        service = service_for_host(state, limit.spec.target.service, limit.namespace)
        if service is not None and not service.protocol.is_http:
            yield Problem(
                limit.ref,
                "spec.target.service",
                f"{service.name!r} is a tcp service; rate limits apply to HTTP requests",
                Severity.ERROR,
            )
    for gateway in policies.gateways:
        for index, server in enumerate(gateway.spec.servers):
            tls = server.tls
            if (
                server.port.protocol is ServerProtocol.TLS
                and tls is not None
                and tls.effective_mode is ServerTLSMode.PASSTHROUGH
            ):
                yield Problem(
                    gateway.ref,
                    f"spec.servers[{index}].tls.mode",
                    "TLS PASSTHROUGH needs VirtualService tls routes, which Interlock does not "
                    "support yet; gateways leave this server out",
                    Severity.ERROR,
                )
