"""The xDS resource types Interlock serves: type URLs, push order and how they depend on each other.

Everything here is about Envoy's configuration graph in general (a listener points at route
configurations and secrets, a route at clusters, a cluster at its endpoints and secrets); nothing
is about services or policies.

Push order (``PUSH_ORDER``): CDS → EDS → LDS → RDS → SDS, as the xDS protocol's make-before-break
rule asks (clusters and their endpoints before the listeners and routes that use them). SDS goes
last: Envoy only asks for a secret once a cluster or listener that names it has arrived (it pauses
SDS while it applies CDS and LDS and then subscribes to the new names in one request), so for a
new secret the order within one push does not matter, and for a rotated secret the last position
changes nothing either. What does matter is that a secret is not *withdrawn* while an old cluster
or listener still uses it; that is what ``RETAINED_UNTIL`` says.

Make-before-break, *make* (``HELD_UNTIL``): listeners and routes change only once the new or
changed clusters and endpoints of the same snapshot are ACKed (Envoy warms a cluster before it
ACKs the endpoints that complete it, and does not warm routes).

Make-before-break, *break* (``RETAINED_UNTIL``): a resource of these types that the proxy holds
but the new snapshot no longer contains is kept, at the version the proxy has, until every type
that may reference it has settled on the new snapshot (sent and ACKed). Listeners are the roots
of the graph and are removed at once. A child type also waits for its parents (endpoints for
clusters, routes for listeners, secrets for both): Envoy unsubscribes a child while it applies
its parent's update, before it ACKs, so the child's removal is then never sent at all.
"""

from __future__ import annotations

import weakref
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from envoy.config.cluster.v3 import cluster_pb2

from interlock.xds.references import eds_service_name

if TYPE_CHECKING:
    from interlock.xds.transport.content import Content, Entry

_PREFIX: Final = "type.googleapis.com/"

CLUSTER: Final = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER: Final = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE: Final = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET: Final = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

#: The order in which one push sends the types that changed.
PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

#: Types for which an empty subscription (or ``*``) means "everything for this proxy".
#: For every other type an empty subscription means "nothing".
WILDCARD_TYPES: Final[frozenset[str]] = frozenset({CLUSTER, LISTENER})

#: type → the types whose settling releases its removed resources (make-before-break).
RETAINED_UNTIL: Final = MappingProxyType(
    {
        CLUSTER: (LISTENER, ROUTE),
        ENDPOINT: (CLUSTER, LISTENER, ROUTE),
        ROUTE: (LISTENER,),
        SECRET: (CLUSTER, LISTENER),
    }
)

#: type → the types whose new resources must be ACKed before it changes (make-before-break):
#: Envoy warms clusters but not routes, so a route or listener naming a new cluster must wait.
HELD_UNTIL: Final = MappingProxyType(
    {
        LISTENER: (CLUSTER, ENDPOINT),
        ROUTE: (CLUSTER, ENDPOINT),
    }
)

#: Short names used in logs, status and metrics.
SHORT_NAMES: Final = MappingProxyType(
    {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds", SECRET: "sds"}
)


def eds_name(cluster: Entry) -> str | None:
    """The ClusterLoadAssignment name an EDS cluster subscribes to (None for other clusters).

    Decoded once per entry and remembered.
    """
    try:
        return _EDS_NAMES[cluster]
    except KeyError:
        pass
    name = eds_service_name(cluster_pb2.Cluster.FromString(cluster.to_any().value))
    _EDS_NAMES[cluster] = name
    return name


_EDS_NAMES: weakref.WeakKeyDictionary[Entry, str | None] = weakref.WeakKeyDictionary()


def eds_names(clusters: Content) -> frozenset[str]:
    """The ClusterLoadAssignment names the EDS clusters of ``clusters`` subscribe to."""
    found = _CONTENT_EDS_NAMES.get(clusters)
    if found is None:
        found = frozenset(
            name
            for entry in clusters.entries.values()
            if not entry.placeholder and (name := eds_name(entry)) is not None
        )
        _CONTENT_EDS_NAMES[clusters] = found
    return found


_CONTENT_EDS_NAMES: weakref.WeakKeyDictionary[Content, frozenset[str]] = weakref.WeakKeyDictionary()


def message_name(type_url: str) -> str:
    """The protobuf full name a type URL designates (the part after the last ``/``)."""
    return type_url.rsplit("/", 1)[-1]


def push_rank(type_url: str) -> tuple[int, str]:
    """Sort key that puts types in ``PUSH_ORDER``; unknown types follow, by URL."""
    try:
        return (PUSH_ORDER.index(type_url), "")
    except ValueError:
        return (len(PUSH_ORDER), type_url)
