"""Services and their instances: what the registry holds."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Protocol(enum.StrEnum):
    """How a service speaks. ``http2`` and ``grpc`` use HTTP/2 to the upstream."""

    HTTP = "http"
    HTTP2 = "http2"
    GRPC = "grpc"
    TCP = "tcp"

    @property
    def is_http(self) -> bool:
        return self is not Protocol.TCP

    @property
    def is_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC)


def frozen_labels(labels: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """An immutable, key-sorted copy of ``labels``."""
    return MappingProxyType(dict(sorted((labels or {}).items())))


@dataclass(frozen=True)
class Service:
    """A named service. ``port`` is the port callers address it by (``b:8080``)."""

    name: str
    namespace: str = "default"
    protocol: Protocol = Protocol.HTTP
    port: int = 8080

    @property
    def fqdn(self) -> str:
        """``name.namespace.svc.cluster.local``, the host Istio users write."""
        return f"{self.name}.{self.namespace}.svc.cluster.local"


@dataclass(frozen=True)
class Instance:
    """One running copy of a service: where mesh traffic enters it (its sidecar's inbound port,
    or the app itself when no sidecar fronts it).

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
    sidecar: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.labels, MappingProxyType):
            object.__setattr__(self, "labels", frozen_labels(self.labels))

    def same_as(self, other: Instance) -> bool:
        """True when ``other`` stores exactly the same registration."""
        return (
            self.service == other.service
            and self.instance_id == other.instance_id
            and self.address == other.address
            and self.port == other.port
            and dict(self.labels) == dict(other.labels)
            and self.locality == other.locality
            and self.healthy == other.healthy
            and self.sidecar == other.sidecar
        )
