"""Resources: what the translator makes for one proxy."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret

from interlock.model import Problem


@dataclass(frozen=True)
class Resources:
    """The Envoy resources of one proxy, each kind sorted by name, and the problems found.

    Listeners, clusters, route configurations, load assignments and secrets are what the xDS
    cache serves for LDS, CDS, RDS, EDS and SDS. ``problems`` are user mistakes the translator
    worked around (a resource was left out); they are shown by the API, never sent to Envoy.
    The messages are owned by this value: callers must not mutate them.
    """

    listeners: tuple[Listener, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    routes: tuple[RouteConfiguration, ...] = ()
    endpoints: tuple[ClusterLoadAssignment, ...] = ()
    secrets: tuple[Secret, ...] = ()
    problems: tuple[Problem, ...] = ()
