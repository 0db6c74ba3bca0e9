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

Without any Sidecar that applies and any exportTo that hides something, :func:`scope` returns
the state itself, so the common path costs one lookup. Restricted states are cached per state
(states are immutable) and per (namespace, own service, Sidecar), so proxies that see the same
thing share one object.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from interlock.model import MeshState, Proxy, ProxyKind
from interlock.model.export import exported_to, restricts
from interlock.model.policy.hosts import canonical_host
from interlock.model.policy.policies import Policy
from interlock.model.policy.sidecar import Sidecar, egress_allows_host, egress_allows_service
from interlock.xds.translate.virtual_service import proxy_labels

_Key = tuple[str, str, Any]
_SCOPED: weakref.WeakKeyDictionary[MeshState, dict[_Key, MeshState]] = weakref.WeakKeyDictionary()
_RESTRICTS: weakref.WeakKeyDictionary[MeshState, bool] = weakref.WeakKeyDictionary()


def applicable_sidecar(
    state: MeshState, proxy: Proxy, root_namespace: str
) -> Policy[Sidecar] | None:
    """The Sidecar that applies to ``proxy``, if any (see the module's rules)."""
    if proxy.kind is ProxyKind.GATEWAY or not state.policies.sidecars:
        return None
    labels = proxy_labels(proxy)

    def oldest(found: list[Policy[Sidecar]]) -> Policy[Sidecar] | None:
        return min(found, key=_age, default=None)

    own = [s for s in state.policies.sidecars if s.namespace == proxy.namespace]
    selecting = [
        s
        for s in own
        if s.spec.workload_selector is not None
        and all(labels.get(k) == v for k, v in s.spec.workload_selector.labels.items())
    ]
    return (
        oldest(selecting)
        or oldest([s for s in own if s.spec.workload_selector is None])
        or oldest(
            [
                s
                for s in state.policies.sidecars
                if s.namespace == root_namespace and s.spec.workload_selector is None
            ]
        )
    )


def _age(policy: Policy[Any]) -> tuple[int, str, str]:
    """Oldest first, as the problems that report a losing Sidecar order them."""
    resource = policy.resource
    return resource.created_revision or 2**62, resource.namespace, resource.name


def _exports_restrict(state: MeshState) -> bool:
    """True when some service or exportable policy hides from some namespace."""
    found = _RESTRICTS.get(state)
    if found is None:
        policies = state.policies
        exportable: tuple[Policy[Any], ...] = (
            *policies.virtual_services,
            *policies.destination_rules,
            *policies.service_entries,
        )
        found = any(restricts(s.export_to) for s in state.services.values()) or any(
            restricts(p.spec.export_to) for p in exportable
        )
        _RESTRICTS[state] = found
    return found


def scope(state: MeshState, proxy: Proxy, root_namespace: str) -> MeshState:
    """``state`` restricted to what ``proxy`` may see; ``state`` itself when nothing is
    restricted for it."""
    sidecar = applicable_sidecar(state, proxy, root_namespace)
    if sidecar is None and not _exports_restrict(state):
        return state
    key: _Key = (proxy.namespace, proxy.service, None if sidecar is None else sidecar.key)
    cached = _SCOPED.setdefault(state, {})
    scoped = cached.get(key)
    if scoped is None:
        scoped = _restrict(state, proxy, sidecar)
        cached[key] = scoped
    return scoped


def _restrict(state: MeshState, proxy: Proxy, sidecar: Policy[Sidecar] | None) -> MeshState:
    namespace = proxy.namespace

    def service_visible(name: str) -> bool:
        s = state.services[name]
        if s.name == proxy.service and s.namespace == namespace:
            return True
        if not exported_to(s.export_to, s.namespace, namespace):
            return False
        return sidecar is None or egress_allows_service(sidecar.spec, sidecar.namespace, s)

    services = {name: s for name, s in state.services.items() if service_visible(name)}
    instances = {name: i for name, i in state.instances.items() if name in services}
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
    return replace(
        state,
        services=MappingProxyType(services),
        instances=MappingProxyType(instances),
        policies=replace(
            policies,
            virtual_services=_exported(policies.virtual_services, namespace),
            destination_rules=_exported(policies.destination_rules, namespace),
            service_entries=tuple(entries),
        ),
    )


def _exported(policies: tuple[Policy[Any], ...], namespace: str) -> tuple[Policy[Any], ...]:
    kept = tuple(p for p in policies if exported_to(p.spec.export_to, p.namespace, namespace))
    return policies if len(kept) == len(policies) else kept
