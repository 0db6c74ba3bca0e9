"""Valid fields that change nothing where they are: each is a warning of its resource, so a user
who wrote one learns that the mesh does not do what it says (Istio would, or would for
another kind of workload).

- ServiceEntry ``addresses`` (Interlock's sidecars are explicit proxies: nothing intercepts
  traffic by destination address) and ``location: MESH_INTERNAL`` (no mesh mTLS to an entry's
  endpoints; a DestinationRule's ``tls`` decides);
- VirtualService IP hosts (sidecars route by service name), ``http`` rules for a tcp service
  and ``tcp`` rules for an HTTP one;
- PeerAuthentication ``portLevelMtls`` for a port no selected instance has;
- DestinationRule ``portLevelSettings`` for a port the host does not serve, and consistent-hash
  keys from HTTP requests (header, cookie, query parameter) for a tcp service.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from interlock.model.policy.destination_rule import TrafficPolicy
from interlock.model.policy.lookup import service_entries_for_host, service_for_host
from interlock.model.policy.selectors import selected_instances
from interlock.model.policy.service_entry import Location
from interlock.model.problem import Problem, Severity
from interlock.model.schema.values import ip_error

if TYPE_CHECKING:
    from interlock.model.service import Service
    from interlock.model.state import MeshState

WARNING = Severity.WARNING


def no_effect(state: MeshState) -> Iterator[Problem]:
    """A warning for every valid field that changes no proxy's configuration, and why."""
    yield from _service_entries(state)
    yield from _virtual_services(state)
    yield from _peer_authentications(state)
    yield from _destination_rules(state)


def _service_entries(state: MeshState) -> Iterator[Problem]:
    for entry in state.policies.service_entries:
        if entry.spec.addresses:
            yield Problem(
                entry.ref,
                "spec.addresses",
                "has no effect: Interlock's sidecars are explicit proxies (apps call them by "
                "host name), so no traffic is matched by destination address; the entry is "
                "reached through its hosts",
                WARNING,
            )
        if entry.spec.location is Location.MESH_INTERNAL:
            yield Problem(
                entry.ref,
                "spec.location",
                "MESH_INTERNAL sends no mesh mTLS to the entry's endpoints here (Interlock "
                "issues no identity to them); it is treated as MESH_EXTERNAL — use a "
                "DestinationRule tls (SIMPLE or MUTUAL) to encrypt",
                WARNING,
            )


def _virtual_services(state: MeshState) -> Iterator[Problem]:
    for vs in state.policies.virtual_services:
        if not vs.spec.applies_to_mesh:
            continue
        for index, host in enumerate(vs.spec.hosts):
            if ip_error(host) is None:
                yield Problem(
                    vs.ref,
                    f"spec.hosts[{index}]",
                    f"{host!r} is an IP address: sidecars route by service name (the Host "
                    "header, or the tcp service's listener), never by destination address, so "
                    "this host routes nothing",
                    WARNING,
                )
                continue
            service = service_for_host(state, host, vs.namespace)
            if service is None:
                continue
            if service.protocol.is_http and vs.spec.tcp:
                yield Problem(
                    vs.ref,
                    "spec.tcp",
                    f"{service.name!r} is an {service.protocol.value} service: its callers use "
                    "the http rules, so the tcp rules do nothing for it",
                    WARNING,
                )
            if not service.protocol.is_http and vs.spec.http:
                yield Problem(
                    vs.ref,
                    "spec.http",
                    f"{service.name!r} is a tcp service: its callers use the tcp rules, so "
                    "the http rules do nothing for it",
                    WARNING,
                )


def _peer_authentications(state: MeshState) -> Iterator[Problem]:
    for pa in state.policies.peer_authentications:
        if not pa.spec.port_level_mtls or pa.spec.selector is None:
            continue
        selected = selected_instances(state, pa.namespace, pa.spec.selector.match_labels)
        if not selected:
            continue  # the selector's own warning says so
        ports = sorted({i.port for i in selected})
        for port in pa.spec.port_level_mtls:
            if port not in ports:
                yield Problem(
                    pa.ref,
                    f"spec.portLevelMtls.{port}",
                    f"no instance the selector selects has port {port} (their ports: "
                    f"{', '.join(map(str, ports))}); this setting applies to nothing",
                    WARNING,
                )


def _ports_of(state: MeshState, host: str, namespace: str, service: Service | None) -> list[int]:
    if service is not None:
        return [service.port]
    entries = service_entries_for_host(state, host, namespace)
    return sorted({p.number for e in entries for p in e.spec.ports})


def _destination_rules(state: MeshState) -> Iterator[Problem]:
    for dr in state.policies.destination_rules:
        service = service_for_host(state, dr.spec.host, dr.namespace)
        ports = _ports_of(state, dr.spec.host, dr.namespace, service)
        policies: list[tuple[str, TrafficPolicy | None]] = [
            ("spec.trafficPolicy", dr.spec.traffic_policy)
        ] + [
            (f"spec.subsets[{i}].trafficPolicy", s.traffic_policy)
            for i, s in enumerate(dr.spec.subsets)
        ]
        for field, policy in policies:
            if policy is None:
                continue
            for index, setting in enumerate(policy.port_level_settings):
                number = setting.port.number
                if ports and number not in ports:
                    yield Problem(
                        dr.ref,
                        f"{field}.portLevelSettings[{index}].port.number",
                        f"{dr.spec.host} serves port {', '.join(map(str, ports))}, not "
                        f"{number}; this setting applies to nothing",
                        WARNING,
                    )
            lbs = [("loadBalancer", policy.load_balancer)] + [
                (f"portLevelSettings[{i}].loadBalancer", s.load_balancer)
                for i, s in enumerate(policy.port_level_settings)
            ]
            for where, lb in lbs:
                hashing = lb.consistent_hash if lb is not None else None
                if hashing is None or service is None or service.protocol.is_http:
                    continue
                key = next(
                    (
                        name
                        for name, value in (
                            ("httpHeaderName", hashing.http_header_name),
                            ("httpCookie", hashing.http_cookie),
                            ("httpQueryParameterName", hashing.http_query_parameter_name),
                        )
                        if value is not None
                    ),
                    None,
                )
                if key is not None:
                    yield Problem(
                        dr.ref,
                        f"{field}.{where}.consistentHash.{key}",
                        f"{service.name!r} is a tcp service: connections carry no HTTP "
                        "request to hash, so its callers spread connections without affinity; "
                        "use useSourceIp",
                        WARNING,
                    )
