"""Services and their instances: what the registry holds."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from interlock.model.health import HEALTHY, Health


class ServiceProtocol(enum.StrEnum):
    """How a service speaks. ``http2`` and ``grpc`` use HTTP/2 to the upstream."""

    HTTP = "http"
    HTTP2 = "http2"
    GRPC = "grpc"
    TCP = "tcp"

    @property
    def is_http(self) -> bool:
        return self is not ServiceProtocol.TCP

    @property
    def is_http2(self) -> bool:
        return self in (ServiceProtocol.HTTP2, ServiceProtocol.GRPC)


def frozen_labels(labels: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """An immutable, key-sorted copy of ``labels``."""
    return MappingProxyType(dict(sorted((labels or {}).items())))


@dataclass(frozen=True)
class HealthCheck:
    """Envoy's active health check of a service's endpoints, run by every proxy that has the
    service's cluster: ``GET path`` (any status from 200 to 399 passes; HTTP/2 for ``http2``
    and ``grpc`` services), or without ``path`` a TCP connection, every ``interval`` seconds,
    each within ``timeout``; ``unhealthy_threshold`` failures in a row take an endpoint out of
    that proxy's load balancing, ``healthy_threshold`` successes bring it back."""

    path: str | None = None
    interval: float = 5.0
    timeout: float = 1.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2


MIN_CHECK_INTERVAL = 0.1
MAX_CHECK_INTERVAL = 3600.0


def health_check_errors(check: HealthCheck, protocol: ServiceProtocol) -> list[tuple[str, str]]:
    """(field, message) for each rule ``check`` breaks on a ``protocol`` service."""
    errors: list[tuple[str, str]] = []
    if check.path is not None:
        if not protocol.is_http:
            errors.append(("path", "a tcp service is checked by connecting: leave path out"))
        elif not check.path.startswith("/") or len(check.path) > 1024:
            errors.append(("path", "a path starts with '/' and is at most 1024 characters"))
        elif any(ord(c) <= 32 or ord(c) == 127 for c in check.path):
            errors.append(("path", "a path has no spaces or control characters"))
    for name, value in (("interval", check.interval), ("timeout", check.timeout)):
        if not MIN_CHECK_INTERVAL <= value <= MAX_CHECK_INTERVAL:
            errors.append((name, f"{name} must be from 100ms to 1h"))
    if check.timeout > check.interval:
        errors.append(("timeout", "timeout must not be longer than interval"))
    for name, count in (
        ("unhealthy_threshold", check.unhealthy_threshold),
        ("healthy_threshold", check.healthy_threshold),
    ):
        if not 1 <= count <= 100:
            errors.append((name, f"{name} must be from 1 to 100"))
    return errors


@dataclass(frozen=True)
class Service:
    """A named service. ``port`` is the port callers address it by (``b:8080``);
    ``health_check``, if any, is checked by its callers' Envoys (see :class:`HealthCheck`);
    ``export_to`` names the namespaces whose proxies may call it (Istio's ``exportTo``, see
    :mod:`interlock.model.export`; empty: every namespace)."""

    name: str
    namespace: str = "default"
    protocol: ServiceProtocol = ServiceProtocol.HTTP
    port: int = 8080
    health_check: HealthCheck | None = None
    export_to: tuple[str, ...] = ()

    @property
    def fqdn(self) -> str:
        """``name.namespace.svc.cluster.local``, the host Istio users write."""
        return f"{self.name}.{self.namespace}.svc.cluster.local"


@dataclass(frozen=True)
class Instance:
    """One running copy of a service: where mesh traffic enters it (its sidecar's inbound port,
    or the app itself when no sidecar fronts it).

    ``healthy`` and ``ttl`` are registered (``healthy=False`` takes the instance out of traffic
    by hand; ``ttl``, in seconds, asks for heartbeats within it); ``health`` is what the
    registry's checks found (see :mod:`interlock.model.health`), runtime state that no
    registration sets. The instance receives traffic while it is :attr:`routable`.

    ``sidecar`` says whether an Interlock sidecar fronts the instance, so that it takes mutual
    TLS (Istio's ``tlsMode: istio`` endpoint label): callers send mTLS only to such instances,
    plain text to the others (a database, a legacy service, another fleet). It is true here
    because an instance in the mesh is a sidecar's unless it says otherwise (rows stored before
    the field existed were sidecars'); a REST registration that does not say is *not* one.
    """

    service: str
    instance_id: str
    address: str
    port: int
    labels: Mapping[str, str] = field(default_factory=frozen_labels)
    locality: str = ""
    healthy: bool = True
    ttl: float | None = None
    health: Health = HEALTHY
    sidecar: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.labels, MappingProxyType):
            object.__setattr__(self, "labels", frozen_labels(self.labels))

    @property
    def routable(self) -> bool:
        """True when the instance receives traffic: registered healthy and no check fails."""
        return self.healthy and self.health.passing

    def same_as(self, other: Instance) -> bool:
        """True when ``other`` stores exactly the same registration (health is not part of
        one)."""
        return (
            self.service == other.service
            and self.instance_id == other.instance_id
            and self.address == other.address
            and self.port == other.port
            and dict(self.labels) == dict(other.labels)
            and self.locality == other.locality
            and self.healthy == other.healthy
            and self.ttl == other.ttl
            and self.sidecar == other.sidecar
        )
