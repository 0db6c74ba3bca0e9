"""Where traffic can go: every cluster a proxy gets (a service, a ServiceEntry host port, and
each DestinationRule subset of them), its traffic policy, and how a VirtualService
destination resolves to one of them.

DestinationRules for one host are merged like Istio does: the oldest rule's ``trafficPolicy``
applies, and subsets are gathered from every rule (the oldest wins a name). ServiceEntries
with resolution ``NONE`` make no cluster (see docs/policies.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from interlock.model import MeshState, Service
from interlock.model.policy.common import Destination
from interlock.model.policy.destination_rule import DestinationRule, Subset, TrafficPolicy
from interlock.model.policy.hosts import canonical_host, host_matches
from interlock.model.policy.lookup import (
    destination_rules_for_host,
    service_entries_for_host,
    service_for_host,
)
from interlock.model.policy.policies import Policy
from interlock.model.policy.service_entry import (
    PortProtocol,
    Resolution,
    ServiceEntry,
    ServicePort,
)
from interlock.xds import naming
from interlock.xds.translate.traffic_policy import EffectivePolicy, effective_policy

HTTP_PROTOCOLS = (PortProtocol.HTTP, PortProtocol.HTTP2, PortProtocol.GRPC)


def age(policy: Policy[Any]) -> tuple[int, str, str]:
    """Oldest first: the revision that created a policy, then its namespace and name."""
    resource = policy.resource
    return resource.created_revision or 2**62, resource.namespace, resource.name


@dataclass(frozen=True)
class MergedRule:
    """The DestinationRules of one host, merged."""

    traffic_policy: TrafficPolicy | None
    subsets: tuple[Subset, ...]

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


def merge_rules(rules: Iterable[Policy[DestinationRule]]) -> MergedRule | None:
    ordered = sorted(rules, key=age)
    if not ordered:
        return None
    policy = next((r.spec.traffic_policy for r in ordered if r.spec.traffic_policy), None)
    subsets: dict[str, Subset] = {}
    for rule in ordered:
        for subset in rule.spec.subsets:
            subsets.setdefault(subset.name, subset)
    return MergedRule(policy, tuple(subsets.values()))


@dataclass(frozen=True)
class ExternalPort:
    """One host of a ServiceEntry on one of its ports."""

    entry: Policy[ServiceEntry]
    host: str  # lower case, as written (possibly a wildcard)
    port: ServicePort

    @property
    def is_http(self) -> bool:
        return self.port.protocol in HTTP_PROTOCOLS


@dataclass(frozen=True)
class ClusterPlan:
    """One cluster to make: for ``service`` or ``external``, all of it or one ``subset``."""

    name: str
    policy: EffectivePolicy
    service: Service | None = None
    external: ExternalPort | None = None
    subset: Subset | None = None


class Destinations:
    """The clusters of one translation and the lookups routes need. Built once per
    ``translate`` call from the state alone (every proxy gets every cluster)."""

    def __init__(
        self, state: MeshState, services: Sequence[Service], *, external: bool = True
    ) -> None:
        """Plan ``services`` and, with ``external``, every ServiceEntry's ports."""
        self.state = state
        self.plans: dict[str, ClusterPlan] = {}
        self.external: list[ExternalPort] = []
        self._rules: dict[str, MergedRule | None] = {}
        for service in services:
            self._plan_service(service)
        for port in self._external_ports() if external else ():
            self.external.append(port)
            self._plan_external(port)

    # --- building -----------------------------------------------------------------------
    def _rule(self, key: str, rules: Iterable[Policy[DestinationRule]]) -> MergedRule | None:
        if key not in self._rules:
            self._rules[key] = merge_rules(rules)
        return self._rules[key]

    def service_rule(self, service: Service) -> MergedRule | None:
        return self._rule(
            service.fqdn, destination_rules_for_host(self.state, service.fqdn, service.namespace)
        )

    def external_rule(self, port: ExternalPort) -> MergedRule | None:
        entry = port.entry
        return self._rule(
            canonical_host(port.host, entry.namespace),
            destination_rules_for_host(self.state, port.host, entry.namespace),
        )

    def _add(self, base: ClusterPlan, rule: MergedRule | None, port: int) -> None:
        """Plan ``base`` and one cluster per subset of ``rule``."""
        self.plans[base.name] = base
        for subset in rule.subsets if rule else ():
            if base.service is not None:
                name = naming.outbound_subset_cluster(base.service, subset.name)
            else:
                assert base.external is not None
                name = naming.external_cluster(
                    base.external.host, base.external.port.number, subset.name
                )
            policy = effective_policy(
                rule.traffic_policy if rule else None, subset.traffic_policy, port
            )
            self.plans[name] = ClusterPlan(name, policy, base.service, base.external, subset)

    def _plan_service(self, service: Service) -> None:
        rule = self.service_rule(service)
        policy = effective_policy(rule.traffic_policy if rule else None, None, service.port)
        self._add(
            ClusterPlan(naming.outbound_cluster(service), policy, service=service),
            rule,
            service.port,
        )

    def _external_ports(self) -> list[ExternalPort]:
        """Every (host, port) of every ServiceEntry that can have a cluster, oldest entry
        first; a host:port already defined by an older entry is skipped."""
        found: dict[tuple[str, int], ExternalPort] = {}
        for entry in sorted(self.state.policies.service_entries, key=age):
            if entry.spec.resolution is Resolution.NONE:
                continue
            for host in entry.spec.hosts:
                for port in entry.spec.ports:
                    key = (host.lower().rstrip("."), port.number)
                    found.setdefault(key, ExternalPort(entry, key[0], port))
        return list(found.values())

    def _plan_external(self, port: ExternalPort) -> None:
        rule = self.external_rule(port)
        number = port.port.number
        policy = effective_policy(rule.traffic_policy if rule else None, None, number)
        name = naming.external_cluster(port.host, number)
        self._add(ClusterPlan(name, policy, external=port), rule, number)

    # --- lookups ------------------------------------------------------------------------
    @staticmethod
    def base_name(plan: ClusterPlan) -> str:
        """The cluster of the whole service or external port ``plan`` belongs to."""
        if plan.service is not None:
            return naming.outbound_cluster(plan.service)
        assert plan.external is not None
        return naming.external_cluster(plan.external.host, plan.external.port.number)

    def policy(self, cluster: str) -> EffectivePolicy | None:
        plan = self.plans.get(cluster)
        return plan.policy if plan is not None else None

    def external_ports_for(self, host: str, namespace: str) -> list[ExternalPort]:
        """The external ports whose host matches ``host`` (written in ``namespace``): an exact
        host before wildcards, oldest entry first."""
        wanted = canonical_host(host, namespace)
        entries = service_entries_for_host(self.state, host, namespace)
        ports = [p for p in self.external if p.entry in entries and host_matches(p.host, wanted)]
        return sorted(ports, key=lambda p: (p.host != wanted, p.host.startswith("*")))

    def resolve(
        self, destination: Destination, namespace: str, port: int | None = None
    ) -> str | None:
        """The cluster ``destination`` (written in a policy of ``namespace``) names, or None
        when it names nothing that has a cluster (the policy's problems say why). ``port`` is
        the port the request came for (picks an external host's port when the destination
        gives none)."""
        service = service_for_host(self.state, destination.host, namespace)
        if service is not None:
            if destination.subset is None:
                return naming.outbound_cluster(service)
            name = naming.outbound_subset_cluster(service, destination.subset)
            return name if name in self.plans else None
        candidates = self.external_ports_for(destination.host, namespace)
        if not candidates:
            return None
        wanted = destination.port.number if destination.port else port
        chosen = next((c for c in candidates if c.port.number == wanted), None)
        if chosen is None:
            first_host = [c for c in candidates if c.host == candidates[0].host]
            if destination.port is not None or len(first_host) != 1:
                return None
            chosen = first_host[0]
        name = naming.external_cluster(chosen.host, chosen.port.number, destination.subset or "")
        return name if name in self.plans else None
