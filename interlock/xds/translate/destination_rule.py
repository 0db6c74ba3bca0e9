"""DestinationRules on a proxy's clusters: traffic policies on every service cluster, one EDS
cluster per subset (``outbound|<port>|<subset>|<name>.<namespace>``) whose load assignment
holds the instances the subset's labels select, locality priorities or weights for the
proxy's locality, and the hash policies consistent hashing needs on routes and tcp proxies.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from interlock.model import MeshState, Problem, Proxy
from interlock.model.identity import MeshIdentity
from interlock.model.policy.selectors import selects
from interlock.xds import naming
from interlock.xds.translate.clusters import upstream_alpn
from interlock.xds.translate.destinations import ClusterPlan, Destinations
from interlock.xds.translate.draft import Draft, PassContext
from interlock.xds.translate.endpoints import load_assignment
from interlock.xds.translate.locality import apply_locality
from interlock.xds.translate.traffic_policy import (
    apply_policy,
    route_hash_policies,
    set_tcp_hash,
    tcp_hash_policies,
)
from interlock.xds.translate.upstream_tls import cluster_endpoints, originate

_Cluster = cluster_pb2.Cluster


def finish(
    cluster: cluster_pb2.Cluster,
    assignment: endpoint_pb2.ClusterLoadAssignment | None,
    plan: ClusterPlan,
    proxy: Proxy,
) -> endpoint_pb2.ClusterLoadAssignment | None:
    """Apply ``plan``'s policy to ``cluster`` and ``assignment`` (in place); returns the
    assignment still needed (None for a cluster that no longer uses EDS)."""
    apply_policy(cluster, plan.policy)
    tls = plan.policy.tls
    if tls is not None and tls.originates:
        # The sidecar's own TLS replaces the mesh's mTLS (no endpoint is marked for it).
        del cluster.transport_socket_matches[:]
        alpn = upstream_alpn(plan.service.protocol) if plan.service is not None else ()
        cluster.transport_socket.CopyFrom(originate(tls, alpn))
    if assignment is not None:
        finish_assignment(assignment, plan, proxy)
    if cluster.type != _Cluster.DiscoveryType.EDS:
        return None
    return assignment


def finish_assignment(
    assignment: endpoint_pb2.ClusterLoadAssignment, plan: ClusterPlan, proxy: Proxy
) -> None:
    """Apply ``plan``'s locality policy for ``proxy`` to ``assignment`` (in place)."""
    lb = plan.policy.load_balancer
    apply_locality(
        assignment,
        proxy.locality,
        lb.locality_lb_setting if lb else None,
        plan.policy.locality_aware,
    )


def _assignment(
    state: MeshState, identity: MeshIdentity | None, plan: ClusterPlan
) -> tuple[endpoint_pb2.ClusterLoadAssignment, tuple[Problem, ...]]:
    """The load assignment of a mesh service's cluster or subset cluster ``plan``, before
    locality: the instances it holds (:mod:`.upstream_tls`), and the problems of those left
    out."""
    service = plan.service
    assert service is not None
    instances = state.instances_of(service.name)
    if plan.subset is not None:
        labels = plan.subset.labels
        instances = tuple(i for i in instances if selects(labels, i))
    held = cluster_endpoints(state, identity, plan, instances)
    assignment = load_assignment(service, held.instances, held.mutual_tls)
    assignment.cluster_name = plan.name
    return assignment, held.problems


def plan_assignment(
    state: MeshState, identity: MeshIdentity | None, proxy: Proxy, plan: ClusterPlan
) -> tuple[endpoint_pb2.ClusterLoadAssignment, tuple[Problem, ...]] | None:
    """The finished load assignment of a service's cluster or subset cluster ``plan`` for
    ``proxy``, and the problems of the instances left out of it (None for a plan that is not
    a mesh service's)."""
    if plan.service is None:
        return None
    assignment, problems = _assignment(state, identity, plan)
    finish_assignment(assignment, plan, proxy)
    return assignment, problems


def _copy(cluster: cluster_pb2.Cluster) -> cluster_pb2.Cluster:
    copy = _Cluster()
    copy.CopyFrom(cluster)
    return copy


def _subset_cluster(base: cluster_pb2.Cluster, plan: ClusterPlan) -> cluster_pb2.Cluster:
    cluster = _copy(base)
    cluster.name = plan.name
    if cluster.HasField("eds_cluster_config"):
        cluster.eds_cluster_config.service_name = plan.name
    if plan.subset is not None:
        cluster.metadata.filter_metadata[naming.METADATA_NAMESPACE].update(
            {"subset": plan.subset.name}
        )
    return cluster


class DestinationRules:
    """The DestinationRules pass: every service cluster and assignment gets its rule's
    policies, and every subset a cluster and assignment of its own; a ``tls`` mode decides
    which instances each holds and how they are reached (:mod:`.upstream_tls`). Other
    clusters (inbound, tracing) pass through; ServiceEntry clusters are the ServiceEntries
    pass's."""

    def apply(self, ctx: PassContext, draft: Draft) -> list[Problem]:
        destinations = ctx.destinations
        problems: list[Problem] = []
        by_name = {c.name: c for c in draft.clusters}
        # Subsets start from their service's cluster as it was before its own policy.
        with_subsets = {destinations.base_name(p) for p in destinations.plans.values() if p.subset}
        pristine = {name: _copy(by_name[name]) for name in with_subsets if name in by_name}
        assignments = {e.cluster_name: e for e in draft.endpoints}
        out_clusters = [c for c in draft.clusters if c.name not in destinations.plans]
        out_endpoints = [e for e in draft.endpoints if e.cluster_name not in destinations.plans]
        for plan in destinations.plans.values():
            if plan.service is None:
                continue
            if plan.subset is None:
                cluster = by_name.get(plan.name)
                if cluster is None:
                    continue
                # The base draft's assignment is the default (auto-mTLS) one.
                assignment = assignments.get(plan.name) if plan.policy.tls is None else None
            else:
                base = pristine.get(destinations.base_name(plan))
                if base is None:
                    continue
                cluster, assignment = _subset_cluster(base, plan), None
            if assignment is None:
                assignment, left_out = _assignment(ctx.state, ctx.identity, plan)
                problems += left_out
            kept = finish(cluster, assignment, plan, ctx.proxy)
            out_clusters.append(cluster)
            if kept is not None:
                out_endpoints.append(kept)
        draft.clusters, draft.endpoints = out_clusters, out_endpoints
        return problems


def _action_clusters(action: route_components_pb2.RouteAction) -> list[str]:
    names = [action.cluster] if action.cluster else []
    names += [w.name for w in action.weighted_clusters.clusters]
    names += [m.cluster for m in action.request_mirror_policies if m.cluster]
    return names


def attach_route_hash_policies(
    configs: Iterable[route_pb2.RouteConfiguration], destinations: Destinations
) -> None:
    """Give every route the hash policies of the consistent-hash clusters it sends to."""
    for config in configs:
        for vhost in config.virtual_hosts:
            for route in vhost.routes:
                if not route.HasField("route"):
                    continue
                policies: list[route_components_pb2.RouteAction.HashPolicy] = []
                for name in _action_clusters(route.route):
                    policy = destinations.policy(name)
                    for hashing in route_hash_policies(policy) if policy else []:
                        if hashing not in policies:
                            policies.append(hashing)
                del route.route.hash_policy[:]
                route.route.hash_policy.extend(policies)


def attach_tcp_hash_policies(
    listeners: Iterable[listener_pb2.Listener], destinations: Destinations
) -> None:
    """Give every tcp_proxy to a cluster hashing on the source IP its hash policy."""
    for listener in listeners:
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                config = network_filter.typed_config
                if not config.Is(tcp_proxy_pb2.TcpProxy.DESCRIPTOR):
                    continue
                proxy = tcp_proxy_pb2.TcpProxy()
                config.Unpack(proxy)
                names = [proxy.cluster] if proxy.cluster else []
                names += [w.name for w in proxy.weighted_clusters.clusters]
                policies = []
                for name in names:
                    policy = destinations.policy(name)
                    policies += tcp_hash_policies(policy) if policy else []
                if list(proxy.hash_policy) == policies[:1]:
                    continue
                set_tcp_hash(proxy, policies[:1])
                config.Pack(proxy, deterministic=True)


class HashPolicies:
    """The last pass: every route and tcp proxy to a consistent-hash cluster gets its hash
    policy (whichever pass made the route or pointed it at the cluster)."""

    def apply(self, ctx: PassContext, draft: Draft) -> list[Problem]:
        attach_route_hash_policies(draft.routes, ctx.destinations)
        attach_tcp_hash_policies(draft.listeners, ctx.destinations)
        return []
