"""Which policies apply to a host: the lookups the problem checks use, and translators can.

Every function takes the host as a policy writes it and the namespace of that policy (short
names are read in it; see :mod:`interlock.model.policy.hosts`). The indexes behind them are
built once per :class:`~interlock.model.MeshState` (states are immutable), so a lookup costs
about the same with 10 or 10,000 services.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from interlock.model.policy.destination_rule import DestinationRule
from interlock.model.policy.hosts import canonical_host, host_matches, service_name_parts
from interlock.model.policy.policies import Policy
from interlock.model.policy.service_entry import ServiceEntry
from interlock.model.service import Service

if TYPE_CHECKING:
    from interlock.model.state import MeshState


@dataclass(frozen=True)
class _Index:
    services: dict[tuple[str, str], Service]
    #: DestinationRules whose host names a registered service, by that service's FQDN.
    rules_by_service: dict[str, list[Policy[DestinationRule]]]
    #: The others (external hosts, wildcards), with their canonical host.
    other_rules: list[tuple[str, Policy[DestinationRule]]]
    entry_hosts: list[tuple[str, Policy[ServiceEntry]]]


_INDEXES: weakref.WeakKeyDictionary[MeshState, _Index] = weakref.WeakKeyDictionary()


def _index(state: MeshState) -> _Index:
    index = _INDEXES.get(state)
    if index is None:
        services = {(s.name, s.namespace): s for s in state.services.values()}
        by_service: dict[str, list[Policy[DestinationRule]]] = defaultdict(list)
        others: list[tuple[str, Policy[DestinationRule]]] = []
        for dr in state.policies.destination_rules:
            target = _lookup(services, dr.spec.host, dr.namespace)
            if target is not None:
                by_service[target.fqdn].append(dr)
            else:
                others.append((canonical_host(dr.spec.host, dr.namespace), dr))
        entries = [
            (canonical_host(h, se.namespace), se)
            for se in state.policies.service_entries
            for h in se.spec.hosts
        ]
        index = _Index(services, dict(by_service), others, entries)
        _INDEXES[state] = index
    return index


def _lookup(services: dict[tuple[str, str], Service], host: str, namespace: str) -> Service | None:
    parts = service_name_parts(host, namespace)
    return None if parts is None else services.get(parts)


def service_for_host(state: MeshState, host: str, namespace: str) -> Service | None:
    """The registered service ``host`` names, if any."""
    return _lookup(_index(state).services, host, namespace)


def service_entries_for_host(
    state: MeshState, host: str, namespace: str
) -> list[Policy[ServiceEntry]]:
    """The ServiceEntries with a host that matches ``host`` (either may be a wildcard)."""
    wanted = canonical_host(host, namespace)
    found: list[Policy[ServiceEntry]] = []
    for entry_host, se in _index(state).entry_hosts:
        if (
            host_matches(entry_host, wanted) or host_matches(wanted, entry_host)
        ) and se not in found:
            found.append(se)
    return found


def host_is_known(state: MeshState, host: str, namespace: str) -> bool:
    """True when ``host`` names a registered service or a ServiceEntry host — or, for a
    wildcard, covers some registered service."""
    if service_for_host(state, host, namespace) is not None:
        return True
    if service_entries_for_host(state, host, namespace):
        return True
    if host.startswith("*"):
        pattern = canonical_host(host, namespace)
        return any(host_matches(pattern, s.fqdn) for s in _index(state).services.values())
    return False


def destination_rules_for_host(
    state: MeshState, host: str, namespace: str
) -> list[Policy[DestinationRule]]:
    """The DestinationRules that configure what ``host`` names: for a service, every rule
    whose host names the same service (in any of its forms) or covers its FQDN with a
    wildcard; for an external host, every rule whose host matches it. Sorted by namespace and
    name (``resource.created_revision`` tells the oldest, which wins a conflict in Istio)."""
    index = _index(state)
    target = service_for_host(state, host, namespace)
    wanted = target.fqdn if target else canonical_host(host, namespace)
    found = list(index.rules_by_service.get(target.fqdn, [])) if target else []
    found += [dr for rule_host, dr in index.other_rules if host_matches(rule_host, wanted)]
    return sorted(found, key=lambda dr: (dr.namespace, dr.name))
