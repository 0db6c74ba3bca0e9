"""Incremental translation: a proxy's resources after a change that moved only instances.

When nothing but the instances of some services changed, a proxy's listeners, routes and
clusters stay as they were; only the load assignments of those services' clusters (and of
their DestinationRule subset clusters) change, and the problems naming their instances
(one a DestinationRule's ``ISTIO_MUTUAL`` left out). :func:`refresh_endpoints` recomputes
exactly those and shares every other message with the previous result, object for object, so
the cache serializes nothing else. Its result is byte-identical to :func:`translate`'s for the
same state (``tests/xds/test_incremental.py`` holds it to that on every golden scenario).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from interlock.model import MeshState, Problem, Proxy, ProxyKind
from interlock.model.identity import MeshIdentity
from interlock.xds.translate.destination_rule import plan_assignment
from interlock.xds.translate.destinations import Destinations
from interlock.xds.translate.grpc import grpc_assignment
from interlock.xds.translate.resources import Resources
from interlock.xds.translate.upstream_tls import instances_resource


def refresh_endpoints(
    previous: Resources,
    state: MeshState,
    proxy: Proxy,
    services: Iterable[str],
    identity: MeshIdentity | None = None,
) -> Resources | None:
    """``previous`` (what ``translate`` gave ``proxy`` for a state that differed from
    ``state`` only in the instances of ``services``) brought up to ``state``; None when that
    cannot be done by replacing load assignments (then translate in full)."""
    fresh: dict[str, endpoint_pb2.ClusterLoadAssignment] = {}
    stale: list[str] = []  # whose instance problems are recomputed
    problems: list[Problem] = []
    assign = grpc_assignment if proxy.kind is ProxyKind.GRPC else plan_assignment
    for name in sorted(set(services)):
        service = state.services.get(name)
        if service is None:
            return None
        stale.append(instances_resource(service))
        for plan in Destinations(state, [service], external=False).plans.values():
            planned = assign(state, identity, proxy, plan)
            if planned is None:
                return None
            fresh[plan.name], left_out = planned
            problems += left_out
    endpoints = list(previous.endpoints)
    position = {e.cluster_name: i for i, e in enumerate(endpoints)}
    clusters: dict[str, cluster_pb2.Cluster] | None = None
    for name, assignment in fresh.items():
        at = position.get(name)
        if at is not None:
            endpoints[at] = assignment
            continue
        if clusters is None:
            clusters = {c.name: c for c in previous.clusters}
        cluster = clusters.get(name)
        if cluster is None or cluster.type == cluster_pb2.Cluster.DiscoveryType.EDS:
            return None  # an EDS cluster without its assignment: not what translate makes
        # A cluster that does not use EDS (e.g. PASSTHROUGH) has no assignment to refresh.
    problems += [p for p in previous.problems if not p.resource.startswith(tuple(stale))]
    return replace(previous, endpoints=tuple(endpoints), problems=tuple(sorted(set(problems))))
