"""Which resource names which: the one place the rules of Envoy's references between xDS
resources are written, used by the transport (which assignments a cluster update needs) and by
the translator's consistency check (nothing refers to a resource that is not there)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2


def eds_service_name(cluster: cluster_pb2.Cluster) -> str | None:
    """The ClusterLoadAssignment name an EDS cluster subscribes to (its ``service_name``, else
    its own name); None for a cluster that does not take endpoints from EDS."""
    if cluster.WhichOneof("cluster_discovery_type") != "type":
        return None
    if cluster.type != cluster_pb2.Cluster.DiscoveryType.EDS:
        return None
    name: str = cluster.eds_cluster_config.service_name or cluster.name
    return name
