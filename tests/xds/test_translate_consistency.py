"""check_consistency: a snapshot must not refer to resources it does not contain."""

from __future__ import annotations

from dataclasses import replace

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from interlock.model import MeshState, Proxy, Service, ServiceProtocol
from interlock.xds.translate import Resources, check_consistency, translate
from tests.support.envoy_validate import validate


def full() -> Resources:
    """A sidecar of `a` with an inbound HTTP listener, an HTTP service and a tcp service."""
    state = MeshState.build(
        1, [Service("a"), Service("b"), Service("db", protocol=ServiceProtocol.TCP, port=5432)], []
    )
    proxy = Proxy("a-1", "a", inbound_port=15006, app_port=9000, outbound_port=15001)
    return translate(state, proxy)


def without_cluster(resources: Resources, name: str) -> Resources:
    clusters = tuple(c for c in resources.clusters if c.name != name)
    assert len(clusters) == len(resources.clusters) - 1
    return replace(resources, clusters=clusters)


def test_translated_resources_are_consistent() -> None:
    assert check_consistency(full()) == []


def test_missing_load_assignment_is_reported() -> None:
    resources = full()
    endpoints = tuple(
        e for e in resources.endpoints if e.cluster_name != "outbound|8080||b.default"
    )
    assert check_consistency(replace(resources, endpoints=endpoints)) == [
        "cluster 'outbound|8080||b.default' takes its endpoints from EDS name "
        "'outbound|8080||b.default', which has no ClusterLoadAssignment"
    ]


def test_missing_route_configuration_is_reported() -> None:
    assert check_consistency(replace(full(), routes=())) == [
        "listener 'inbound' uses route configuration 'inbound|9000', which is missing",
        "listener 'outbound|http' uses route configuration 'outbound|http', which is missing",
    ]


def test_route_to_missing_cluster_is_reported() -> None:
    resources = without_cluster(full(), "outbound|8080||b.default")
    assert check_consistency(resources) == [
        "route configuration 'outbound|http' routes to cluster 'outbound|8080||b.default', "
        "which is missing"
    ]


def test_inbound_route_to_missing_cluster_is_reported() -> None:
    assert check_consistency(without_cluster(full(), "inbound|9000")) == [
        "route configuration 'inbound|9000' routes to cluster 'inbound|9000', which is missing"
    ]


def test_tcp_proxy_to_missing_cluster_is_reported() -> None:
    assert check_consistency(without_cluster(full(), "outbound|5432||db.default")) == [
        "listener 'outbound|tcp|db.default' forwards to cluster 'outbound|5432||db.default', "
        "which is missing"
    ]


def test_duplicate_names_are_reported() -> None:
    resources = full()
    doubled = replace(resources, clusters=resources.clusters + resources.clusters[:1])
    assert check_consistency(doubled) == [f"cluster {resources.clusters[0].name!r} appears 2 times"]


def tls_cluster(secret_name: str) -> cluster_pb2.Cluster:
    """A static cluster whose upstream TLS certificate comes from SDS as ``secret_name``."""
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[secret_pb2.SdsSecretConfig(name=secret_name)]
        )
    )
    socket = base_pb2.TransportSocket(name="envoy.transport_sockets.tls")
    socket.typed_config.Pack(context)
    return cluster_pb2.Cluster(
        name="tls-upstream",
        type=cluster_pb2.Cluster.DiscoveryType.STATIC,
        transport_socket=socket,
    )


def test_missing_secret_is_reported_and_a_present_one_is_accepted() -> None:
    resources = replace(full(), clusters=(*full().clusters, tls_cluster("default")))
    assert check_consistency(resources) == [
        "cluster 'tls-upstream' refers to secret 'default', which is missing"
    ]
    secret = secret_pb2.Secret(name="default")
    assert check_consistency(replace(resources, secrets=(secret,))) == []


def test_several_problems_are_all_reported_sorted() -> None:
    resources = replace(without_cluster(full(), "inbound|9000"), routes=(), endpoints=())
    messages = check_consistency(resources)
    assert messages == sorted(messages)
    # three clusters without endpoints, a missing route config, an inline route to nowhere
    assert len(messages) == 5


def test_consistent_resources_pass_real_envoy_validation() -> None:
    validate(full())
