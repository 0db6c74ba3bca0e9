"""Hosts in policies: how they are written and which service they name.

Istio examples write a service as ``reviews``, ``reviews.default`` or
``reviews.default.svc.cluster.local``; all three name the service ``reviews`` of namespace
``default``. A name without dots is read relative to the namespace of the policy that contains
it (Istio's rule), so ``reviews`` in a policy of namespace ``shop`` names ``reviews.shop``.
Anything else is an external host, which a ServiceEntry may define (``api.example.com``,
``*.example.com``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from interlock.model.schema.values import ip_error
from interlock.model.service import Service

CLUSTER_DOMAIN = "svc.cluster.local"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def dns_label_error(value: str, what: str) -> str | None:
    if not _DNS_LABEL.fullmatch(value):
        return (
            f"{what} {value!r} must be a DNS label: 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def _labels_error(domain: str, host: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return f"{host!r} is not a valid host (its top-level domain is all digits)"
    for index, part in enumerate(parts):
        if index == len(parts) - 1 and part == "" and index > 0:
            return None  # a trailing dot: "istio.io."
        if not _DNS_LABEL.fullmatch(part.lower()):
            return f"{host!r} is not a valid host (label {part!r} is not a DNS label)"
    return None


def fqdn_error(host: str) -> str | None:
    """A DNS name without wildcards (``api.example.com``, ``reviews``)."""
    if not host:
        return "a host cannot be empty"
    if len(host) > 255:
        return f"the host {host[:20]!r}... is longer than 255 characters"
    return _labels_error(host, host)


def wildcard_host_error(host: str) -> str | None:
    """A DNS name whose first label may be ``*`` (``*``, ``*.example.com``), as Istio allows in
    hosts."""
    if not host:
        return "a host cannot be empty"
    if len(host) > 255:
        return f"the host {host[:20]!r}... is longer than 255 characters"
    first, dot, rest = host.partition(".")
    if first == "*":
        return _labels_error(rest, host) if dot else None
    if "*" in host:
        return f"{host!r}: a wildcard must be the whole first label ('*' or '*.example.com')"
    return _labels_error(host, host)


def host_or_ip_error(host: str) -> str | None:
    """A wildcard host or an IP address (VirtualService hosts)."""
    if ip_error(host) is None:
        return None
    return wildcard_host_error(host)


def host_matches(pattern: str, host: str) -> bool:
    """True when ``pattern`` (possibly ``*`` or ``*.suffix``) covers ``host``."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]
        if host.startswith("*."):
            return host[1:].endswith(suffix)
        return host.endswith(suffix) and len(host) > len(suffix)
    return pattern == host


def hosts_overlap(a: str, b: str) -> bool:
    """True when some host matches both patterns."""
    return host_matches(a, b) or host_matches(b, a)


def service_hosts(service: Service) -> tuple[str, str, str]:
    """The names Istio users write for ``service``: short, ``name.namespace`` and FQDN."""
    return service.name, f"{service.name}.{service.namespace}", service.fqdn


def service_name_parts(host: str, namespace: str) -> tuple[str, str] | None:
    """``(name, namespace)`` when ``host`` is written in a service's form, else ``None``:
    ``reviews`` (in the policy's ``namespace``), ``reviews.ns``, ``reviews.ns.svc`` or
    ``reviews.ns.svc.cluster.local``."""
    host = host.lower().rstrip(".")
    parts = host.split(".")
    if len(parts) == 1:
        return parts[0], namespace
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc"):
        return parts[0], parts[1]
    if host.endswith("." + CLUSTER_DOMAIN) and len(parts) == 5:
        return parts[0], parts[1]
    return None


def find_service(host: str, namespace: str, services: Iterable[Service]) -> Service | None:
    """The registered service ``host`` names when written in ``namespace``, if any."""
    parts = service_name_parts(host, namespace)
    if parts is None:
        return None
    name, ns = parts
    for service in services:
        if service.name == name and service.namespace == ns:
            return service
    return None


def canonical_host(host: str, namespace: str) -> str:
    """``host`` as Istio reads it: a short name becomes ``name.namespace.svc.cluster.local``
    (as does ``name.ns.svc``); anything else is unchanged but lower-cased. (``name.ns`` is left
    alone: it could be an external host such as ``example.com``; :func:`find_service` tells.)"""
    host = host.lower().rstrip(".")
    parts = host.split(".")
    if len(parts) == 1 and host != "*":
        return f"{host}.{namespace}.{CLUSTER_DOMAIN}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.cluster.local"
    return host
