"""Per-proxy scope: what a proxy may see of the mesh (Istio's ``Sidecar`` and ``exportTo``).

:func:`scope` restricts a :class:`MeshState` to what one proxy may reach, and the translator
then builds that proxy's clusters, routes, endpoints and tcp listeners from the restricted
state, so a proxy holds only what it can call and a change elsewhere changes none of its
resources (the cache then pushes it nothing).

- A service is visible when its ``export_to`` includes the proxy's namespace and, when a
  Sidecar applies to the proxy, some egress host matches it. The proxy's own service is always
  kept: its inbound listener, rate limits and telemetry are translated from it.
- A ServiceEntry is visible when exported to the proxy's namespace and, under a Sidecar, some
  egress host matches one of its hosts (only the matching hosts are kept).
- VirtualServices and DestinationRules apply only where they are exported.
- The Sidecar of a proxy is the oldest in its namespace whose ``workloadSelector`` selects its
  labels (and the implicit ``app``), else the namespace's oldest without a selector, else the
  root namespace's oldest without one. Gateways have none (Istio's rule); exportTo applies to
  them. Policies about the proxy's own inbound side (PeerAuthentication, RequestAuthentication,
  AuthorizationPolicy, RateLimit, Telemetry) are never scoped away.

Cost. Without any Sidecar that applies and any exportTo that hides something, :func:`scope`
returns the state itself. What a scope keeps depends only on the services and the policies,
never on instances, so it is worked out once per (services, policies) — which an
instance-only change shares, object for object — and per (namespace, own service, Sidecar):
the incremental path then pays only for the visible services' instances.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from interlock.model import MeshState, Problem, Proxy, ProxyKind, Service
from interlock.model.export import exported_to, restricts
from interlock.model.policy.hosts import canonical_host, service_name_parts
from interlock.model.policy.lookup import service_for_host
from interlock.model.policy.policies import Policies, Policy
from interlock.model.policy.sidecar import Sidecar, egress_allows_host, egress_allows_service
from interlock.model.problem import Severity
from interlock.model.service import Instance
from interlock.xds.translate.virtual_service import proxy_labels

_Key = tuple[str, str, Any]


@dataclass(eq=False)
class _Visible:
    """What one scope keeps of one (services, policies): service names and policies."""

    names: tuple[str, ...]
    services: Mapping[str, Service]
    policies: Policies


@dataclass(eq=False)
class _Memo:
    """Everything worked out for one :class:`Policies` object (states share it until a
    policy changes). ``services`` is the services mapping the service-dependent parts were
    computed for; another one clears them."""

    sidecars_by_namespace: dict[str, list[Policy[Sidecar]]]
    sidecar_of: dict[tuple[Any, ...], Policy[Sidecar] | None] = field(default_factory=dict)
    services: Mapping[str, Service] | None = None
    restricts: bool = False
    visible: dict[_Key, _Visible] = field(default_factory=dict)


_MEMOS: dict[int, tuple[weakref.ref[Policies], _Memo]] = {}
_SCOPED: weakref.WeakKeyDictionary[MeshState, dict[_Key, MeshState]] = weakref.WeakKeyDictionary()


def _memo(policies: Policies) -> _Memo:
    key = id(policies)
    found = _MEMOS.get(key)
    if found is not None and found[0]() is policies:
        return found[1]
    by_namespace: dict[str, list[Policy[Sidecar]]] = {}
    for sc in policies.sidecars:
        by_namespace.setdefault(sc.namespace, []).append(sc)
    memo = _Memo(by_namespace)

    def forget(ref: weakref.ref[Policies], key: int = key) -> None:
        entry = _MEMOS.get(key)
        if entry is not None and entry[0] is ref:
            del _MEMOS[key]

    _MEMOS[key] = (weakref.ref(policies, forget), memo)
    return memo


def _age(policy: Policy[Any]) -> tuple[int, str, str]:
    """Oldest first, as the problems that report a losing Sidecar order them."""
    resource = policy.resource
    return resource.created_revision or 2**62, resource.namespace, resource.name


def applicable_sidecar(
    state: MeshState, proxy: Proxy, root_namespace: str
) -> Policy[Sidecar] | None:
    """The Sidecar that applies to ``proxy``, if any (see the module's rules)."""
    if proxy.kind is ProxyKind.GATEWAY or not state.policies.sidecars:
        return None
    memo = _memo(state.policies)
    key = (proxy.namespace, proxy.service, tuple(sorted(proxy.labels.items())), root_namespace)
    if key in memo.sidecar_of:
        return memo.sidecar_of[key]
    labels = proxy_labels(proxy)
    own = memo.sidecars_by_namespace.get(proxy.namespace, [])
    selecting = [
        s
        for s in own
        if s.spec.workload_selector is not None
        and all(labels.get(k) == v for k, v in s.spec.workload_selector.labels.items())
    ]
    defaults = [s for s in own if s.spec.workload_selector is None]
    root = [
        s
        for s in memo.sidecars_by_namespace.get(root_namespace, [])
        if s.spec.workload_selector is None
    ]
    found = next((min(group, key=_age) for group in (selecting, defaults, root) if group), None)
    memo.sidecar_of[key] = found
    return found


def scope(state: MeshState, proxy: Proxy, root_namespace: str) -> MeshState:
    """``state`` restricted to what ``proxy`` may see; ``state`` itself when nothing is
    restricted for it."""
    sidecar = applicable_sidecar(state, proxy, root_namespace)
    memo = _memo(state.policies)
    if memo.services is not state.services:
        memo.services = state.services
        memo.visible = {}
        memo.restricts = _exports_restrict(state)
    if sidecar is None and not memo.restricts:
        return state
    key: _Key = (proxy.namespace, proxy.service, None if sidecar is None else sidecar.key)
    per_state = _SCOPED.setdefault(state, {})
    scoped = per_state.get(key)
    if scoped is None:
        visible = memo.visible.get(key)
        if visible is None:
            visible = _visible(state, proxy, sidecar)
            memo.visible[key] = visible
        instances: dict[str, tuple[Instance, ...]] = {}
        for name in visible.names:
            found = state.instances.get(name)
            if found is not None:
                instances[name] = found
        scoped = replace(
            state,
            services=visible.services,
            instances=MappingProxyType(instances),
            policies=visible.policies,
        )
        per_state[key] = scoped
    return scoped


def _exports_restrict(state: MeshState) -> bool:
    """True when some service or exportable policy hides from some namespace."""
    policies = state.policies
    exportable: tuple[Policy[Any], ...] = (
        *policies.virtual_services,
        *policies.destination_rules,
        *policies.service_entries,
    )
    return any(restricts(s.export_to) for s in state.services.values()) or any(
        restricts(p.spec.export_to) for p in exportable
    )


def _candidates(state: MeshState, sidecar: Policy[Sidecar] | None) -> list[str]:
    """The names of the services that may be visible: every one, or, when every egress host
    of ``sidecar`` names one service of one namespace, just those (a lookup, not a scan)."""
    if sidecar is None or not sidecar.spec.egress:
        return list(state.services)
    by_key = _services_by_key(state)
    found: list[str] = []
    for h in sidecar.spec.hosts:
        namespace = sidecar.namespace if h.namespace == "." else h.namespace
        if namespace == "~":
            continue
        if namespace == "*" or "*" in h.host:
            return list(state.services)
        parts = service_name_parts(h.host, namespace)
        if parts is None or parts[1] != namespace:
            continue  # an external host, or a service of another namespace: no service here
        service = by_key.get(parts)
        if service is not None:
            found.append(service.name)
    return found


_BY_KEY: weakref.WeakKeyDictionary[MeshState, dict[tuple[str, str], Service]] = (
    weakref.WeakKeyDictionary()
)


def _services_by_key(state: MeshState) -> dict[tuple[str, str], Service]:
    found = _BY_KEY.get(state)
    if found is None:
        found = {(s.name, s.namespace): s for s in state.services.values()}
        _BY_KEY[state] = found
    return found


def _visible(state: MeshState, proxy: Proxy, sidecar: Policy[Sidecar] | None) -> _Visible:
    namespace = proxy.namespace

    def service_visible(s: Service) -> bool:
        if s.name == proxy.service and s.namespace == namespace:
            return True
        if not exported_to(s.export_to, s.namespace, namespace):
            return False
        return sidecar is None or egress_allows_service(sidecar.spec, sidecar.namespace, s)

    wanted = set(_candidates(state, sidecar))
    own = state.services.get(proxy.service)
    if own is not None:
        wanted.add(own.name)
    names = tuple(n for n in state.services if n in wanted and service_visible(state.services[n]))
    entries = []
    for entry in state.policies.service_entries:
        if not exported_to(entry.spec.export_to, entry.namespace, namespace):
            continue
        if sidecar is not None:
            hosts = tuple(
                h
                for h in entry.spec.hosts
                if egress_allows_host(
                    sidecar.spec,
                    sidecar.namespace,
                    canonical_host(h, entry.namespace),
                    entry.namespace,
                )
            )
            if not hosts:
                continue
            if hosts != entry.spec.hosts:
                entry = replace(entry, spec=replace(entry.spec, hosts=hosts))
        entries.append(entry)
    policies = state.policies
    return _Visible(
        names,
        MappingProxyType({n: state.services[n] for n in names}),
        replace(
            policies,
            virtual_services=_exported(policies.virtual_services, namespace),
            destination_rules=_exported(policies.destination_rules, namespace),
            service_entries=tuple(entries),
        ),
    )


def _exported(policies: tuple[Policy[Any], ...], namespace: str) -> tuple[Policy[Any], ...]:
    kept = tuple(p for p in policies if exported_to(p.spec.export_to, p.namespace, namespace))
    return policies if len(kept) == len(policies) else kept


def out_of_scope_problems(
    everything: MeshState, scoped: MeshState, proxy: Proxy, root_namespace: str
) -> list[Problem]:
    """A warning on every route destination (or mirror) of a VirtualService ``proxy`` uses
    that names a registered service out of its scope: there the route answers 503 (HTTP) or
    has no cluster (TCP), which is what the Sidecar or exportTo asked for, and a user should
    see that it does."""
    if scoped is everything:
        return []
    sidecar = applicable_sidecar(everything, proxy, root_namespace)
    why = f"Sidecar {sidecar.namespace}/{sidecar.name}" if sidecar else "exportTo"
    where = f"{proxy.namespace}/{proxy.service}"
    found: list[Problem] = []
    for vs in scoped.policies.virtual_services:
        targets: list[tuple[str, str]] = []
        for i, http in enumerate(vs.spec.http):
            at = f"spec.http[{i}]"
            targets += [
                (f"{at}.route[{j}].destination.host", r.destination.host)
                for j, r in enumerate(http.route)
            ]
            if http.mirror is not None:
                targets.append((f"{at}.mirror.host", http.mirror.host))
        for i, tcp in enumerate(vs.spec.tcp):
            targets += [
                (f"spec.tcp[{i}].route[{j}].destination.host", r.destination.host)
                for j, r in enumerate(tcp.route)
            ]
        for field_path, host in targets:
            target = service_for_host(everything, host, vs.namespace)
            if target is not None and target.name not in scoped.services:
                found.append(
                    Problem(
                        vs.ref,
                        field_path,
                        f"{host} is out of the scope of the proxies of {where} ({why}): "
                        "this destination is left out of their routes",
                        Severity.WARNING,
                    )
                )
    return found
