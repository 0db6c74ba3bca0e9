"""Cross-resource problems: what is wrong with a policy given everything else in the mesh.

A policy can be valid on its own and still point at nothing: a route to a subset no
DestinationRule defines, a host no service or ServiceEntry answers to, a rate limit on a route
name no VirtualService has. :func:`policy_problems` finds them in a :class:`MeshState`, purely
(the API shows them beside each resource; the translator can use the same function to leave
such parts out instead of pushing a route to nothing).

Severity: ``error`` — part of the policy cannot take effect as written; ``warning`` — it is
probably a mistake, or it waits for something not registered yet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interlock.model.identity import DEFAULT_ROOT_NAMESPACE
from interlock.model.policy.common import Destination
from interlock.model.policy.destination_rule import DestinationRule, TLSMode
from interlock.model.policy.hosts import canonical_host
from interlock.model.policy.limits import translation_limits
from interlock.model.policy.lookup import (
    destination_rules_for_host,
    host_is_known,
    service_entries_for_host,
    service_for_host,
)
from interlock.model.policy.no_effect import no_effect
from interlock.model.policy.policies import Policy
from interlock.model.policy.selectors import selected_instances, selects
from interlock.model.policy.service_entry import ServiceEntry
from interlock.model.policy.virtual_service import VirtualService
from interlock.model.problem import Problem, Severity
from interlock.model.schema.values import ip_error
from interlock.model.service import Service

if TYPE_CHECKING:
    from interlock.model.state import MeshState

ERROR = Severity.ERROR
WARNING = Severity.WARNING


def policy_problems(
    state: MeshState, root_namespace: str = DEFAULT_ROOT_NAMESPACE
) -> tuple[Problem, ...]:
    """Every cross-resource problem of the policies in ``state``, sorted. ``root_namespace``
    is the mesh's (an AuthorizationPolicy there with a selector applies in every namespace)."""
    return tuple(sorted(_Checker(state, root_namespace).run()))


def problems_by_resource(
    state: MeshState, root_namespace: str = DEFAULT_ROOT_NAMESPACE
) -> Mapping[str, tuple[Problem, ...]]:
    """:func:`policy_problems` grouped by resource (``VirtualService/default/reviews``)."""
    grouped: dict[str, list[Problem]] = defaultdict(list)
    for problem in policy_problems(state, root_namespace):
        grouped[problem.resource].append(problem)
    return {ref: tuple(problems) for ref, problems in grouped.items()}


class _Checker:
    def __init__(self, state: MeshState, root_namespace: str = DEFAULT_ROOT_NAMESPACE) -> None:
        self.state = state
        self.root_namespace = root_namespace
        self.policies = state.policies
        self.found: list[Problem] = []
        #: The oldest mesh VirtualService routing each host (canonical form).
        self.first_route_for: dict[str, Policy[VirtualService]] = {}
        for vs in sorted(self.policies.virtual_services, key=_order):
            if vs.spec.applies_to_mesh:
                for host in vs.spec.hosts:
                    self.first_route_for.setdefault(canonical_host(host, vs.namespace), vs)

    def run(self) -> list[Problem]:
        for invalid in self.policies.invalid:
            for error in invalid.errors:
                self.found.append(
                    Problem(
                        invalid.resource.ref,
                        error.field,
                        f"the stored spec is no longer valid ({error.message}); apply it again "
                        "with the fix",
                    )
                )
        for vs in self.policies.virtual_services:
            self._virtual_service(vs)
        for dr in self.policies.destination_rules:
            self._destination_rule(dr)
        for se in self.policies.service_entries:
            self._service_entry(se)
        for kind_policies in (
            self.policies.peer_authentications,
            self.policies.request_authentications,
        ):
            for policy in kind_policies:
                self._selector(policy, policy.spec.selector, "spec.selector.matchLabels")
        for ap in self.policies.authorization_policies:
            self._selector(ap, ap.spec.selector, "spec.selector.matchLabels", mesh_wide=True)
        self._rate_limits()
        self._telemetries()
        self.found.extend(translation_limits(self.state))
        self.found.extend(no_effect(self.state))
        return self.found

    def report(self, policy: Policy[Any], field: str, message: str, severity: Severity) -> None:
        self.found.append(Problem(policy.ref, field, message, severity))

    # --- hosts ----------------------------------------------------------------------------

    def service(self, host: str, namespace: str) -> Service | None:
        return service_for_host(self.state, host, namespace)

    def entries(self, host: str, namespace: str) -> list[Policy[ServiceEntry]]:
        return service_entries_for_host(self.state, host, namespace)

    def known(self, host: str, namespace: str) -> bool:
        return host_is_known(self.state, host, namespace)

    def rules_for(self, host: str, namespace: str) -> list[Policy[DestinationRule]]:
        return destination_rules_for_host(self.state, host, namespace)

    def destination(self, policy: Policy[Any], dest: Destination, field: str) -> None:
        service = self.service(dest.host, policy.namespace)
        if service is None and not self.entries(dest.host, policy.namespace):
            self.report(
                policy,
                f"{field}.host",
                f"host {dest.host!r} names no registered service or ServiceEntry: requests "
                "sent here would fail",
                ERROR,
            )
            return
        if service is not None and dest.port is not None and dest.port.number != service.port:
            self.report(
                policy,
                f"{field}.port.number",
                f"service {service.name!r} is registered on port {service.port}, "
                f"not {dest.port.number}",
                WARNING,
            )
        if dest.subset is None:
            return
        rules = self.rules_for(dest.host, policy.namespace)
        if not any(dr.spec.subset(dest.subset) for dr in rules):
            where = (
                f"the DestinationRule(s) for it ({', '.join(dr.ref for dr in rules)})"
                if rules
                else "no DestinationRule for it exists"
            )
            self.report(
                policy,
                f"{field}.subset",
                f"subset {dest.subset!r} of {dest.host!r} is not defined: {where}",
                ERROR,
            )

    # --- kinds ----------------------------------------------------------------------------

    def _virtual_service(self, vs: Policy[VirtualService]) -> None:
        spec = vs.spec
        if spec.applies_to_mesh:
            for index, host in enumerate(spec.hosts):
                if ip_error(host) is None or host == "*" or self.known(host, vs.namespace):
                    continue
                self.report(
                    vs,
                    f"spec.hosts[{index}]",
                    f"host {host!r} names no registered service or ServiceEntry (yet); "
                    "sidecars ignore this host until one exists",
                    WARNING,
                )
            self._shared_hosts(vs)
        for index, ref in enumerate(spec.gateways):
            if ref == "mesh":
                continue
            namespace, _, name = ref.rpartition("/")
            namespace = namespace or vs.namespace
            if not any(g.name == name and g.namespace == namespace for g in self.policies.gateways):
                self.report(
                    vs,
                    f"spec.gateways[{index}]",
                    f"no Gateway {namespace}/{name} exists",
                    ERROR,
                )
        for i, http in enumerate(spec.http):
            for j, route in enumerate(http.route):
                self.destination(vs, route.destination, f"spec.http[{i}].route[{j}].destination")
            if http.mirror is not None:
                self.destination(vs, http.mirror, f"spec.http[{i}].mirror")
        for i, tcp in enumerate(spec.tcp):
            for j, tcp_route in enumerate(tcp.route):
                self.destination(vs, tcp_route.destination, f"spec.tcp[{i}].route[{j}].destination")

    def _shared_hosts(self, vs: Policy[VirtualService]) -> None:
        """Istio uses one VirtualService per host for sidecars; say when another one (created
        earlier) already claims a host."""
        for index, host in enumerate(vs.spec.hosts):
            first = self.first_route_for.get(canonical_host(host, vs.namespace))
            if first is not None and first.key != vs.key:
                self.report(
                    vs,
                    f"spec.hosts[{index}]",
                    f"{first.ref} already routes {host!r}; only one VirtualService per host "
                    "is used (the oldest)",
                    WARNING,
                )

    def _destination_rule(self, dr: Policy[DestinationRule]) -> None:
        spec = dr.spec
        service = self.service(spec.host, dr.namespace)
        if service is None and not self.known(spec.host, dr.namespace):
            self.report(
                dr,
                "spec.host",
                f"host {spec.host!r} names no registered service or ServiceEntry (yet)",
                WARNING,
            )
        if service is not None:
            instances = self.state.instances_of(service.name)
            for index, subset in enumerate(spec.subsets):
                if instances and not any(selects(subset.labels, i) for i in instances):
                    self.report(
                        dr,
                        f"spec.subsets[{index}].labels",
                        f"subset {subset.name!r} selects none of the {len(instances)} "
                        f"instance(s) of {service.name!r}",
                        WARNING,
                    )
            self._mutual_tls(dr, service)
        for other in self.rules_for(spec.host, dr.namespace):
            if other.key != dr.key and _order(other) < _order(dr):
                self.report(
                    dr,
                    "spec.host",
                    f"{other.ref} also configures {spec.host!r}; like Istio, Interlock merges "
                    "them and the oldest wins where they conflict",
                    WARNING,
                )
                break

    def _mutual_tls(self, dr: Policy[DestinationRule], service: Service) -> None:
        """``tls.mode: ISTIO_MUTUAL`` where an instance it covers has no sidecar to take
        mTLS: sidecars leave that instance out rather than send it plain text."""
        scopes = [("spec.trafficPolicy", dr.spec.traffic_policy, None)] + [
            (f"spec.subsets[{i}].trafficPolicy", s.traffic_policy, s.labels)
            for i, s in enumerate(dr.spec.subsets)
        ]
        for field, policy, labels in scopes:
            if policy is None or policy.tls is None or policy.tls.mode is not TLSMode.ISTIO_MUTUAL:
                continue
            for instance in self.state.instances_of(service.name):
                if instance.sidecar or (labels is not None and not selects(labels, instance)):
                    continue
                self.report(
                    dr,
                    f"{field}.tls.mode",
                    f"ISTIO_MUTUAL requires mutual TLS, but no sidecar fronts instance "
                    f"{instance.instance_id!r} of {service.name!r} (registered with sidecar: "
                    "false); sidecars leave it out rather than send it plain text",
                    ERROR,
                )

    def _service_entry(self, se: Policy[ServiceEntry]) -> None:
        for index, host in enumerate(se.spec.hosts):
            service = self.service(host, se.namespace)
            if service is not None:
                self.report(
                    se,
                    f"spec.hosts[{index}]",
                    f"host {host!r} is also the registered service {service.name!r}",
                    WARNING,
                )

    def _selector(
        self, policy: Policy[Any], selector: Any, field: str, *, mesh_wide: bool = False
    ) -> None:
        """Warn when ``selector`` selects no instance of the policy's namespace (of any
        namespace, for a policy that applies ``mesh_wide`` from the root namespace)."""
        if selector is None:
            return
        if mesh_wide and policy.namespace == self.root_namespace:
            namespaces = sorted({s.namespace for s in self.state.services.values()})
            if not any(
                selected_instances(self.state, ns, selector.match_labels) for ns in namespaces
            ):
                self.report(policy, field, "selects no instance in any namespace (yet)", WARNING)
            return
        if not selected_instances(self.state, policy.namespace, selector.match_labels):
            self.report(
                policy,
                field,
                f"selects no instance in namespace {policy.namespace!r} (yet)",
                WARNING,
            )

    def _rate_limits(self) -> None:
        whole_service: dict[str, Policy[Any]] = {}
        for rl in sorted(self.policies.rate_limits, key=_order):
            target = rl.spec.target
            service = self.service(target.service, rl.namespace)
            if service is None:
                self.report(
                    rl,
                    "spec.target.service",
                    f"{target.service!r} names no registered service",
                    ERROR,
                )
                continue
            route_names = {
                http.name
                for vs in self.policies.virtual_services
                if any(self.service(h, vs.namespace) == service for h in vs.spec.hosts)
                for http in vs.spec.http
                if http.name
            }
            for index, selector in enumerate(target.routes):
                if selector.name is not None and selector.name not in route_names:
                    self.report(
                        rl,
                        f"spec.target.routes[{index}].name",
                        f"no VirtualService for {service.name!r} has an http route named "
                        f"{selector.name!r}",
                        ERROR,
                    )
            if not target.routes:
                earlier = whole_service.get(service.name)
                if earlier is not None:
                    self.report(
                        rl,
                        "spec.target",
                        f"{earlier.ref} already limits every request to {service.name!r}; "
                        "the oldest is used",
                        WARNING,
                    )
                whole_service.setdefault(service.name, rl)

    def _telemetries(self) -> None:
        scopes: dict[str, Policy[Any]] = {}
        for tm in sorted(self.policies.telemetries, key=_order):
            spec = tm.spec
            if spec.service is not None:
                service = self.service(spec.service, tm.namespace)
                if service is None:
                    self.report(
                        tm,
                        "spec.service",
                        f"{spec.service!r} names no registered service (yet)",
                        WARNING,
                    )
                    continue
                scope = f"service {service.name!r}"
            elif spec.selector is not None:
                self._selector(tm, spec.selector, "spec.selector.matchLabels")
                continue
            else:
                scope = "the whole mesh"
            earlier = scopes.get(scope)
            if earlier is not None:
                self.report(
                    tm,
                    "spec",
                    f"{earlier.ref} already configures telemetry for {scope}; the oldest is used",
                    WARNING,
                )
            scopes.setdefault(scope, tm)


def _order(policy: Policy[Any]) -> tuple[int, str, str]:
    """Oldest first: by the revision that created it, then by namespace and name."""
    resource = policy.resource
    created = resource.created_revision or 2**62  # not stored yet (a dry run): newest
    return created, resource.namespace, resource.name
