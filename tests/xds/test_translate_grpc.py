"""The proxyless gRPC target: API listeners named after every host a sidecar accepts, and of
each policy only what gRPC's xDS client implements — the rest reported on the policy, never
dropped silently. (That gRPC takes these resources and routes by them is
tests/e2e/test_proxyless_grpc.py, with grpcio's own client.)"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from interlock.model import Instance, MeshState, Problem, Proxy, ProxyKind, Service, Severity
from interlock.model.identity import MeshIdentity
from interlock.model.policy import read_resources
from interlock.model.service import HealthCheck, ServiceProtocol
from interlock.xds.translate import Resources, check_consistency, translate
from tests.golden.scenario import GOLDEN_DIR, load_scenario, scenario_names

IDENTITY = MeshIdentity("interlock.local")
CLIENT = Proxy("c1", "caller", kind=ProxyKind.GRPC)
SERVICES = [
    Service("caller"),
    Service("greeter", protocol=ServiceProtocol.GRPC, port=50051),
    Service("db", protocol=ServiceProtocol.TCP, port=5432),
]
INSTANCES = [
    Instance("greeter", "g1", "10.0.0.1", 50051, {"version": "v1"}, sidecar=False),
    Instance("greeter", "g2", "10.0.0.2", 15006, {"version": "v2"}, locality="eu/west"),
    Instance("db", "d1", "10.0.0.3", 5432),
]


def state(*documents: dict[str, Any], services: list[Service] = SERVICES) -> MeshState:
    resources = [
        dataclasses.replace(r, created_revision=i + 1, revision=i + 1)
        for i, r in enumerate(read_resources(list(documents), batch=True))
    ]
    return MeshState.build(3, services, INSTANCES, resources)


def doc(kind: str, spec: dict[str, Any], api: str = "networking.istio.io/v1") -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "greeter"}, "spec": spec}


def greeter_routes(resources: Resources) -> list[Any]:
    (config,) = resources.routes
    vhost = next(v for v in config.virtual_hosts if v.name == "greeter.default:50051")
    return list(vhost.routes)


def problems_of(resources: Resources, resource: str) -> dict[str, Problem]:
    return {p.field: p for p in resources.problems if p.resource == resource}


def test_every_host_a_sidecar_accepts_is_an_api_listener_with_routes_over_rds() -> None:
    resources = translate(state(), CLIENT, IDENTITY)
    assert check_consistency(resources) == []
    names = {listener.name for listener in resources.listeners}
    greeter = {"greeter", "greeter.default", "greeter.default.svc.cluster.local"}
    assert {f"{h}{p}" for h in greeter for p in ("", ":50051")} <= names
    assert not any(name.startswith("db") for name in names)  # tcp: no gRPC target
    listener = next(x for x in resources.listeners if x.name == "greeter")
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.api_listener.api_listener.Unpack(manager)
    assert manager.rds.route_config_name == "outbound|http"
    assert manager.rds.config_source.HasField("ads")
    assert [f.name for f in manager.http_filters] == [
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]
    assert resources.secrets == () and resources.problems == ()


def test_clusters_are_eds_without_mtls_and_every_locality_is_weighted() -> None:
    resources = translate(state(), CLIENT, IDENTITY)
    cluster = next(c for c in resources.clusters if c.name == "outbound|50051||greeter.default")
    assert cluster.type == cluster_pb2.Cluster.DiscoveryType.EDS
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert not cluster.transport_socket_matches and not cluster.HasField("transport_socket")
    (assignment,) = [e for e in resources.endpoints if e.cluster_name == cluster.name]
    groups = list(assignment.endpoints)
    assert all(g.HasField("locality") and g.load_balancing_weight.value >= 1 for g in groups)
    ports = sorted(
        e.endpoint.address.socket_address.port_value for g in groups for e in g.lb_endpoints
    )
    assert ports == [15006, 50051]


def test_an_instance_that_requires_mutual_tls_is_left_out_and_named() -> None:
    strict = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "interlock-system"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    resources = translate(state(strict), CLIENT, IDENTITY)
    (assignment,) = [
        e for e in resources.endpoints if e.cluster_name == "outbound|50051||greeter.default"
    ]
    held = [
        e.endpoint.address.socket_address.address
        for g in assignment.endpoints
        for e in g.lb_endpoints
    ]
    assert held == ["10.0.0.1"]  # g1 has no sidecar: plain text is what it takes
    assert "mtls" in problems_of(resources, "Instance/default/greeter/g2")


def test_what_grpc_implements_of_a_virtual_service_is_kept_and_the_rest_reported() -> None:
    route = {
        "name": "main",
        "match": [
            {
                "uri": {"prefix": "/interlock.demo.Greeter/"},
                "headers": {"x-canary": {"exact": "yes"}},
            }
        ],
        "route": [{"destination": {"host": "greeter"}}],
        "timeout": "2s",
        "retries": {"attempts": 3, "retryOn": "5xx,unavailable", "perTryTimeout": "1s"},
        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 10}}},
        "mirror": {"host": "caller"},
        "headers": {"request": {"set": {"x-extra": "1"}}},
        "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}]},
    }
    resources = translate(
        state(doc("VirtualService", {"hosts": ["greeter"], "http": [route]})), CLIENT, IDENTITY
    )
    assert check_consistency(resources) == []
    (made,) = greeter_routes(resources)
    assert made.match.prefix == "/interlock.demo.Greeter/"
    assert made.match.headers[0].name == "x-canary"
    action = made.route
    assert action.max_stream_duration.max_stream_duration.seconds == 2  # gRFC A31
    assert action.retry_policy.retry_on == "unavailable"  # gRFC A44
    assert action.retry_policy.num_retries.value == 3
    assert not action.retry_policy.HasField("per_try_timeout")
    assert list(made.typed_per_filter_config) == ["envoy.filters.http.fault"]  # gRFC A33
    assert not action.request_mirror_policies and not made.request_headers_to_add
    reported = problems_of(resources, "VirtualService/default/greeter")
    assert set(reported) == {
        "http[main].retries.retryOn",
        "http[main].retries.perTryTimeout",
        "http[main].mirror",
        "http[main].headers.request",
        "http[main].corsPolicy",
    }
    assert "5xx" in reported["http[main].retries.retryOn"].message


def test_weighted_subsets_and_ring_hash_on_a_header_are_kept() -> None:
    rule = doc(
        "DestinationRule",
        {
            "host": "greeter",
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    )
    split = doc(
        "VirtualService",
        {
            "hosts": ["greeter"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "greeter", "subset": "v1"}, "weight": 80},
                        {"destination": {"host": "greeter", "subset": "v2"}, "weight": 20},
                    ]
                }
            ],
        },
    )
    resources = translate(state(rule, split), CLIENT, IDENTITY)
    assert check_consistency(resources) == [] and resources.problems == ()
    (made,) = greeter_routes(resources)
    weights = {w.name: w.weight.value for w in made.route.weighted_clusters.clusters}
    assert weights == {
        "outbound|50051|v1|greeter.default": 80,
        "outbound|50051|v2|greeter.default": 20,
    }
    assert [h.header.header_name for h in made.route.hash_policy] == ["x-user"]
    by_name = {c.name: c for c in resources.clusters}
    assert (
        by_name["outbound|50051|v1|greeter.default"].lb_policy
        == cluster_pb2.Cluster.LbPolicy.RING_HASH
    )
    v1 = next(
        e for e in resources.endpoints if e.cluster_name == "outbound|50051|v1|greeter.default"
    )
    assert [
        e.endpoint.address.socket_address.address for g in v1.endpoints for e in g.lb_endpoints
    ] == ["10.0.0.1"]


def test_destination_rule_features_grpc_lacks_are_reported_on_the_service() -> None:
    rule = doc(
        "DestinationRule",
        {
            "host": "greeter",
            "trafficPolicy": {
                "loadBalancer": {
                    "consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 65537}}
                },
                "outlierDetection": {"consecutive5xxErrors": 3},
                "connectionPool": {
                    "tcp": {"maxConnections": 10},
                    "http": {"http2MaxRequests": 100},
                },
            },
        },
    )
    services = [
        *SERVICES[:1],
        dataclasses.replace(SERVICES[1], health_check=HealthCheck(path="/healthz")),
    ]
    mesh = state(rule, services=services)
    resources = translate(mesh, CLIENT, IDENTITY)
    assert check_consistency(resources) == []
    cluster = next(c for c in resources.clusters if c.name == "outbound|50051||greeter.default")
    assert cluster.lb_policy == cluster_pb2.Cluster.LbPolicy.ROUND_ROBIN
    assert not cluster.HasField("outlier_detection") and not cluster.health_checks
    assert [t.max_requests.value for t in cluster.circuit_breakers.thresholds] == [100]  # A32
    reported = problems_of(resources, "Service/default/greeter")
    assert {
        "DestinationRule.trafficPolicy.loadBalancer",
        "DestinationRule.trafficPolicy.outlierDetection",
        "DestinationRule.trafficPolicy.connectionPool.tcp.maxConnections",
        "health_check",
    } <= set(reported)
    assert "DestinationRule.trafficPolicy.loadBalancer.consistentHash.useSourceIp" in reported
    (route,) = greeter_routes(resources)
    assert not route.route.hash_policy


@pytest.mark.parametrize("name", scenario_names())
def test_every_golden_scenario_translates_consistently_for_a_grpc_client(name: str) -> None:
    mesh, proxy = load_scenario(GOLDEN_DIR / name)
    client = dataclasses.replace(
        Proxy(proxy.node_id, proxy.service, proxy.namespace, kind=ProxyKind.GRPC),
        labels=proxy.labels,
    )
    for identity in (None, IDENTITY):
        resources = translate(mesh, client, identity)
        assert check_consistency(resources) == []
        assert all(listener.HasField("api_listener") for listener in resources.listeners)
        assert all(c.type == cluster_pb2.Cluster.DiscoveryType.EDS for c in resources.clusters)


def test_a_node_says_it_is_a_grpc_client() -> None:
    proxy = Proxy.from_node("c1", "caller", {"kind": "grpc", "namespace": "default"})
    assert proxy.kind is ProxyKind.GRPC and proxy.view_key() != CLIENT.view().view_key().replace(
        "grpc", "sidecar"
    )


def test_an_authorization_policy_on_a_grpc_workload_is_reported_not_enforced() -> None:
    policy = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "caller", "namespace": "default"},
        "spec": {"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["x"]}}]}]},
    }
    resources = translate(state(policy), CLIENT, IDENTITY)
    (problem,) = problems_of(resources, "AuthorizationPolicy/default/caller").values()
    assert "not enforced on proxyless gRPC workloads" in problem.message
    assert problem.severity is Severity.ERROR


def test_one_address_twice_is_sent_once_and_the_second_instance_named() -> None:
    twin = Instance("greeter", "g3", "10.0.0.1", 50051, sidecar=False)
    mesh = MeshState.build(3, SERVICES, [*INSTANCES, twin], [])
    resources = translate(mesh, CLIENT, IDENTITY)
    (assignment,) = [
        e for e in resources.endpoints if e.cluster_name == "outbound|50051||greeter.default"
    ]
    addresses = [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for g in assignment.endpoints
        for e in g.lb_endpoints
    ]
    assert len(addresses) == len(set(addresses)) == 2
    assert "address" in problems_of(resources, "Instance/default/greeter/g3")


def test_localities_distribute_weighs_are_kept_and_unweighted_ones_get_nothing() -> None:
    rule = doc(
        "DestinationRule",
        {
            "host": "greeter",
            "trafficPolicy": {
                "loadBalancer": {
                    "localityLbSetting": {"distribute": [{"from": "us/*", "to": {"eu/*": 100}}]}
                }
            },
        },
    )
    client = dataclasses.replace(CLIENT, locality="us/east")
    resources = translate(state(rule), client, IDENTITY)
    (assignment,) = [
        e for e in resources.endpoints if e.cluster_name == "outbound|50051||greeter.default"
    ]
    weights = {g.locality.region: g.load_balancing_weight.value for g in assignment.endpoints}
    assert weights["eu"] > 0 and weights[""] == 0  # as in Envoy: no share, no traffic
