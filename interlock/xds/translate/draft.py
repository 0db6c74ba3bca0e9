"""The contract of the translator's policy passes: a :class:`Draft` of one proxy's resources,
the :class:`PassContext` every pass reads, and the :class:`Pass` protocol.

A pass is one policy concern (DestinationRules, ServiceEntries, ...) applied to a draft:

- it reads only ``ctx`` (the mesh state, the proxy, the planned destinations, the identity)
  and the draft; it writes only the draft (its protos and lists are the pass's to change);
- it returns the user mistakes it worked around as problems, never raises for them;
- it decides by itself whether it has anything to do for this proxy (a gateway pass leaves a
  sidecar alone), so every target runs the passes it needs in one fixed order
  (:data:`interlock.xds.translate.passes.PASSES`) without knowing their insides.

The same passes serve every output that speaks Envoy's protos (sidecars and gateways today,
gRPC's view of routes and clusters next): a target builds its base draft, then runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from interlock.model import MeshState, Problem, Proxy, Service
from interlock.model.identity import MeshIdentity
from interlock.xds import naming
from interlock.xds.translate import mtls
from interlock.xds.translate.destinations import Destinations, ExternalPort
from interlock.xds.translate.listeners import Inbound
from interlock.xds.translate.telemetry import TelemetryPlan


@dataclass
class Draft:
    """A proxy's resources while passes are applied to them (the protos are owned here).

    Besides the resources, it records which of them serve a ServiceEntry's ports (the
    ServiceEntries pass makes them; VirtualServices route them): ``external_hosts`` maps an
    outbound virtual host's name to its port, ``external_listeners`` a listener's name to the
    ports behind it (several hosts of one TLS port share a listener, told apart by SNI).
    """

    listeners: list[listener_pb2.Listener]
    clusters: list[cluster_pb2.Cluster]
    routes: list[route_pb2.RouteConfiguration]
    endpoints: list[endpoint_pb2.ClusterLoadAssignment]
    problems: list[Problem] = field(default_factory=list)
    external_hosts: dict[str, ExternalPort] = field(default_factory=dict)
    external_listeners: dict[str, list[ExternalPort]] = field(default_factory=dict)

    def route(self, name: str | None) -> route_pb2.RouteConfiguration | None:
        """The route configuration called ``name`` (None when there is none)."""
        if name is None:
            return None
        return next((r for r in self.routes if r.name == name), None)


@dataclass(frozen=True)
class PassContext:
    """What every pass may read about one translation.

    ``services`` are every registered service, by namespace and name; ``destinations`` the
    clusters planned for them (and for ServiceEntry ports, and every DestinationRule subset);
    ``identity`` the mesh's identity when mutual TLS is on (None: plain text); ``source``
    where the proxy fetches RDS/EDS/SDS; ``telemetry`` its access-log and tracing plan;
    ``inbound`` the sidecar's inbound listener, when it was made.
    """

    state: MeshState
    proxy: Proxy
    services: Sequence[Service]
    destinations: Destinations
    identity: MeshIdentity | None
    source: config_source_pb2.ConfigSource
    telemetry: TelemetryPlan
    inbound: Inbound | None = None

    @property
    def security(self) -> MeshIdentity:
        """The identity workload policies are read with: the mesh's, or the defaults (trust
        domain, root namespace) when translating without one."""
        return self.identity or MeshIdentity()

    @property
    def inbound_route(self) -> str | None:
        """The name of the inbound route configuration (None without an inbound listener)."""
        return naming.inbound_route(self.inbound.app_port) if self.inbound else None

    def mutual_tls(self, service: str) -> set[str]:
        """The ids of ``service``'s instances that are sent mutual TLS."""
        return mtls.mutual_tls_instances(self.state, service, self.identity)


class Pass(Protocol):
    """One policy concern applied to a proxy's draft (see the module's contract)."""

    def apply(self, ctx: PassContext, draft: Draft) -> list[Problem]:
        """Change ``draft`` in place as this pass's policies say; the problems met."""
        ...
