"""Sidecar (networking.istio.io): which services and hosts a workload's proxy may reach.

A Sidecar of a namespace applies to the workloads its ``workloadSelector.labels`` select, or
without a selector to every workload of the namespace; one without a selector in the root
namespace is the mesh-wide default. ``egress[].hosts`` are ``namespace/host``: ``namespace`` is
a namespace name, ``*`` (any), ``.`` (the Sidecar's own) or ``~`` (none); ``host`` is ``*``
(every host of those namespaces), a host (``b``, ``b.ns``, ``b.ns.svc.cluster.local``,
``api.example.com``) or a wildcard (``*.example.com``). The proxy then gets only the services
and ServiceEntry hosts that some egress host matches and that are exported to its namespace.

``outboundTrafficPolicy.mode`` is ``REGISTRY_ONLY``, what every Interlock sidecar already does:
its outbound listener is an explicit proxy that answers a host it does not know with 404.
``ALLOW_ANY`` (pass unknown destinations through) is refused: an explicit proxy has no
original destination to pass a request on to. Ingress listeners, egress ports, binds and
capture modes are refused as not supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock.model.errors import FieldError
from interlock.model.export import EVERYWHERE, NOWHERE, OWN_NAMESPACE
from interlock.model.names import namespace_error
from interlock.model.policy.common import label_map, no_map
from interlock.model.policy.hosts import host_matches, service_name_parts, wildcard_host_error
from interlock.model.schema import INVALID, Errors, Field, ListOf, Obj, Str, child
from interlock.model.service import Service

REGISTRY_ONLY = "REGISTRY_ONLY"
ALLOW_ANY = "ALLOW_ANY"


@dataclass(frozen=True)
class SidecarSelector:
    """Istio's Sidecar ``workloadSelector``: the workloads whose labels include ``labels``."""

    labels: Mapping[str, str] = field(default_factory=no_map)


@dataclass(frozen=True)
class EgressHost:
    """One ``namespace/host`` of an egress listener, split."""

    namespace: str
    host: str


@dataclass(frozen=True)
class EgressListener:
    hosts: tuple[EgressHost, ...] = ()


@dataclass(frozen=True)
class OutboundTrafficPolicy:
    mode: str = REGISTRY_ONLY


@dataclass(frozen=True)
class Sidecar:
    workload_selector: SidecarSelector | None = None
    egress: tuple[EgressListener, ...] = ()
    outbound_traffic_policy: OutboundTrafficPolicy | None = None

    @property
    def hosts(self) -> tuple[EgressHost, ...]:
        """Every egress host; empty when ``egress`` is (then nothing is restricted)."""
        return tuple(h for listener in self.egress for h in listener.hosts)


def _namespace_matches(pattern: str, sidecar_namespace: str, namespace: str) -> bool:
    if pattern == EVERYWHERE:
        return True
    if pattern == NOWHERE:
        return False
    if pattern == OWN_NAMESPACE:
        return namespace == sidecar_namespace
    return namespace == pattern


def egress_allows_service(sidecar: Sidecar, sidecar_namespace: str, service: Service) -> bool:
    """True when an egress host of ``sidecar`` (of ``sidecar_namespace``) matches ``service``:
    its namespace matches and its host is ``*``, covers the service's FQDN, or names the
    service in one of its short forms."""
    if not sidecar.egress:
        return True
    for h in sidecar.hosts:
        if not _namespace_matches(h.namespace, sidecar_namespace, service.namespace):
            continue
        if h.host == "*" or host_matches(h.host, service.fqdn):
            return True
        if service_name_parts(h.host, service.namespace) == (service.name, service.namespace):
            return True
    return False


def egress_allows_host(sidecar: Sidecar, sidecar_namespace: str, host: str, namespace: str) -> bool:
    """True when an egress host of ``sidecar`` matches ``host``, a ServiceEntry host (possibly a
    wildcard) of ``namespace``."""
    if not sidecar.egress:
        return True
    return any(
        _namespace_matches(h.namespace, sidecar_namespace, namespace)
        and (host_matches(h.host, host) or host_matches(host, h.host))
        for h in sidecar.hosts
    )


class _EgressHostNode(Str):
    def __init__(self) -> None:
        super().__init__(describe="a host as namespace/host ('*/reviews', './*', 'prod/*')")

    def parse(self, value: object, path: str, errors: Errors) -> object:
        text = super().parse(value, path, errors)
        if not isinstance(text, str):
            return text
        namespace, slash, host = text.partition("/")
        message: str | None
        if not slash:
            message = f"{text!r} must be namespace/host ('*/{text}' for any namespace)"
        elif namespace not in (EVERYWHERE, OWN_NAMESPACE, NOWHERE) and namespace_error(namespace):
            message = f"{text!r}: {namespace_error(namespace)}, or '*', '.' or '~'"
        else:
            message = wildcard_host_error(host)
        if message:
            errors.append(FieldError(path, message))
            return INVALID
        return EgressHost(namespace, host.lower().rstrip("."))


def _mode_error(value: str) -> str | None:
    if value == REGISTRY_ONLY:
        return None
    if value == ALLOW_ANY:
        return (
            "ALLOW_ANY is not supported: an Interlock sidecar's outbound listener is an explicit "
            "proxy, with no original destination to pass unknown hosts to; use REGISTRY_ONLY "
            "(what it does anyway: an unknown host gets 404) or a ServiceEntry for the host"
        )
    return f"{value!r} is not valid; use REGISTRY_ONLY"


def _check(sidecar: Sidecar, path: str, errors: Errors) -> None:
    if len(sidecar.egress) > 1:
        errors.append(
            FieldError(
                child(path, "egress"),
                "has one listener at most: egress ports are not supported, and Istio allows "
                "only one listener without a port",
            )
        )


EGRESS_LISTENER: Obj[EgressListener] = Obj(
    EgressListener,
    {"hosts": Field(ListOf(_EgressHostNode(), min_items=1, what="host"), required=True)},
    unsupported={
        "port": "egress listeners per port; list the hosts without a port",
        "bind": "",
        "captureMode": "",
    },
)

SPEC: Obj[Sidecar] = Obj(
    Sidecar,
    {
        "workloadSelector": Obj(SidecarSelector, {"labels": label_map()}, non_empty=True),
        "egress": ListOf(EGRESS_LISTENER),
        "outboundTrafficPolicy": Obj(
            OutboundTrafficPolicy,
            {"mode": Str(check=_mode_error, describe="REGISTRY_ONLY")},
            unsupported=["egressProxy"],
        ),
    },
    unsupported={
        "ingress": "the inbound listener comes from the sidecar's own ports",
        "inboundConnectionPool": "",
    },
    checks=[_check],
)
