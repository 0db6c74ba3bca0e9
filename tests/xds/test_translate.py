"""The translator: what a proxy's Envoy gets for a given mesh."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from interlock.model import (
    Instance,
    MeshState,
    Proxy,
    ProxyKind,
    Service,
    ServiceProtocol,
    Severity,
)
from interlock.xds.translate import Resources, translate

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def sidecar(service: str = "a", **ports: Any) -> Proxy:
    fields: dict[str, Any] = {
        "inbound_port": 15006,
        "app_port": 9000,
        "outbound_port": 15001,
    }
    fields.update(ports)
    return Proxy(node_id=f"{service}-1", service=service, **fields)


def mesh(services: Iterable[Service], instances: Iterable[Instance] = ()) -> MeshState:
    return MeshState.build(1, services, instances)


def listener(resources: Resources, name: str) -> listener_pb2.Listener:
    found = [item for item in resources.listeners if item.name == name]
    assert len(found) == 1, f"listener {name!r} in {[item.name for item in resources.listeners]}"
    return found[0]


def cluster(resources: Resources, name: str) -> cluster_pb2.Cluster:
    found = [item for item in resources.clusters if item.name == name]
    assert len(found) == 1, f"cluster {name!r} in {[item.name for item in resources.clusters]}"
    return found[0]


def route_config(resources: Resources, name: str) -> route_pb2.RouteConfiguration:
    found = [item for item in resources.routes if item.name == name]
    assert len(found) == 1
    return found[0]


def connection_manager(item: listener_pb2.Listener) -> hcm_pb2.HttpConnectionManager:
    config = item.filter_chains[0].filters[0].typed_config
    assert config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR), config.type_url
    manager = hcm_pb2.HttpConnectionManager()
    config.Unpack(manager)
    return manager


def tcp_proxy(item: listener_pb2.Listener) -> tcp_proxy_pb2.TcpProxy:
    config = item.filter_chains[0].filters[0].typed_config
    assert config.Is(tcp_proxy_pb2.TcpProxy.DESCRIPTOR), config.type_url
    proxy = tcp_proxy_pb2.TcpProxy()
    config.Unpack(proxy)
    return proxy


def speaks_http2(item: cluster_pb2.Cluster) -> bool:
    if HTTP_OPTIONS not in item.typed_extension_protocol_options:
        return False
    options = http_protocol_options_pb2.HttpProtocolOptions()
    item.typed_extension_protocol_options[HTTP_OPTIONS].Unpack(options)
    return bool(options.explicit_http_config.HasField("http2_protocol_options"))


def bound(resources: Resources) -> list[tuple[str, int]]:
    return [
        (item.address.socket_address.address, item.address.socket_address.port_value)
        for item in resources.listeners
    ]


def assert_ads(source: config_source_pb2.ConfigSource) -> None:
    assert source.HasField("ads")
    assert source.resource_api_version == config_source_pb2.ApiVersion.V3
    assert source.HasField("initial_fetch_timeout")
    assert source.initial_fetch_timeout.ToTimedelta().total_seconds() == 0


# --- inbound -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "protocol", [ServiceProtocol.HTTP, ServiceProtocol.HTTP2, ServiceProtocol.GRPC]
)
def test_http_inbound_routes_everything_to_the_app(protocol: ServiceProtocol) -> None:
    resources = translate(
        mesh([Service("a", protocol=protocol)]),
        sidecar(inbound_address="0.0.0.0", inbound_port=15006, app_port=9000),
    )
    inbound = listener(resources, "inbound")
    assert bound(Resources(listeners=(inbound,))) == [("0.0.0.0", 15006)]
    manager = connection_manager(inbound)
    assert manager.codec_type == hcm_pb2.HttpConnectionManager.CodecType.AUTO
    assert manager.stat_prefix == "inbound_15006"
    assert [f.name for f in manager.http_filters][-1] == "envoy.filters.http.router"
    # Routes come over RDS so a new calling service never rebuilds (drains) the listener.
    assert manager.rds.route_config_name == "inbound|9000"
    (vhost,) = route_config(resources, "inbound|9000").virtual_hosts
    assert vhost.name == "a"  # the destination service, as stats tag it
    assert list(vhost.domains) == ["*"]
    (route,) = vhost.routes
    assert route.match.prefix == "/"
    assert route.route.cluster == "inbound|9000"
    # One virtual cluster per possible caller (by the header its sidecar stamps) + unknown.
    assert [
        (vc.name, [h.string_match.exact for h in vc.headers]) for vc in vhost.virtual_clusters
    ] == [
        ("a", ["a.default"]),
        ("unknown", [""]),
    ]

    app = cluster(resources, "inbound|9000")
    assert app.type == cluster_pb2.Cluster.DiscoveryType.STATIC
    (group,) = app.load_assignment.endpoints
    (endpoint,) = group.lb_endpoints
    address = endpoint.endpoint.address.socket_address
    assert (address.address, address.port_value) == ("127.0.0.1", 9000)
    assert speaks_http2(app) == protocol.is_http2


def test_tcp_inbound_forwards_bytes_to_the_app() -> None:
    resources = translate(
        mesh([Service("db", protocol=ServiceProtocol.TCP, port=5432)]), sidecar("db")
    )
    proxy = tcp_proxy(listener(resources, "inbound"))
    assert proxy.cluster == "inbound|9000"
    assert proxy.stat_prefix == "inbound_15006"
    assert not speaks_http2(cluster(resources, "inbound|9000"))


@pytest.mark.parametrize(
    "ports",
    [
        {"inbound_port": None},
        {"app_port": None},
        {"inbound_port": None, "app_port": None},
    ],
)
def test_no_inbound_without_both_inbound_and_app_port(ports: dict[str, Any]) -> None:
    resources = translate(mesh([Service("a")]), sidecar(**ports))
    assert [item.name for item in resources.listeners] == ["outbound|http"]
    assert [item.name for item in resources.clusters] == ["outbound|8080||a.default"]
    assert resources.problems == ()


def test_gateway_gets_no_inbound_listener() -> None:
    proxy = Proxy(
        node_id="gw-1",
        service="ingress",
        kind=ProxyKind.GATEWAY,
        inbound_port=15006,
        app_port=9000,
        outbound_port=8000,
    )
    resources = translate(mesh([Service("web")], [Instance("web", "w", "10.0.0.1", 1)]), proxy)
    assert [item.name for item in resources.listeners] == ["outbound|http"]
    assert [item.name for item in resources.clusters] == ["outbound|8080||web.default"]
    assert resources.problems == ()


def test_unregistered_own_service_leaves_inbound_out_with_a_warning() -> None:
    resources = translate(mesh([Service("b")]), sidecar("newcomer"))
    assert [item.name for item in resources.listeners] == ["outbound|http"]
    (problem,) = resources.problems
    assert problem.resource == "Proxy/default/newcomer"
    assert problem.severity is Severity.WARNING
    assert "not registered" in problem.message


def test_own_service_must_be_in_the_proxys_namespace() -> None:
    resources = translate(mesh([Service("a", namespace="other")]), sidecar("a"))
    assert "inbound" not in [item.name for item in resources.listeners]
    assert [p.resource for p in resources.problems] == ["Proxy/default/a"]


# --- outbound HTTP -------------------------------------------------------------------------


def test_outbound_http_listener_takes_routes_over_ads_and_accepts_proxy_requests() -> None:
    resources = translate(mesh([Service("a")]), sidecar(outbound_address="127.0.0.5"))
    outbound = listener(resources, "outbound|http")
    assert bound(Resources(listeners=(outbound,))) == [("127.0.0.5", 15001)]
    manager = connection_manager(outbound)
    assert manager.stat_prefix == "outbound_http"
    assert manager.codec_type == hcm_pb2.HttpConnectionManager.CodecType.AUTO
    assert manager.rds.route_config_name == "outbound|http"
    assert_ads(manager.rds.config_source)
    assert manager.http_protocol_options.allow_absolute_url.value is True


def test_one_virtual_host_per_http_service_with_every_name_it_answers_to() -> None:
    services = [
        Service("b", "shop", ServiceProtocol.HTTP, 9080),
        Service("api", "default", ServiceProtocol.GRPC, 9090),
        Service("web", "default", ServiceProtocol.HTTP2, 8443),
        Service("db", "default", ServiceProtocol.TCP, 5432),
    ]
    resources = translate(mesh(services), sidecar())
    config = route_config(resources, "outbound|http")
    domains = {vhost.name: list(vhost.domains) for vhost in config.virtual_hosts}
    assert list(domains) == ["api.default:9090", "web.default:8443", "b.shop:9080"]
    assert domains["b.shop:9080"] == [
        "b",
        "b:9080",
        "b.shop",
        "b.shop:9080",
        "b.shop.svc.cluster.local",
        "b.shop.svc.cluster.local:9080",
    ]
    every = [d for names in domains.values() for d in names]
    assert len(every) == len(set(every))
    assert not any(d.startswith("db") for d in every)


def test_service_route_has_no_timeout_and_istio_like_retries_without_503() -> None:
    resources = translate(mesh([Service("b", port=9080)]), sidecar())
    (vhost,) = route_config(resources, "outbound|http").virtual_hosts
    (route,) = vhost.routes
    assert route.match.prefix == "/"
    action = route.route
    assert action.cluster == "outbound|9080||b.default"
    assert action.HasField("timeout") and action.timeout.ToTimedelta().total_seconds() == 0
    policy = action.retry_policy
    assert policy.retry_on.split(",") == [
        "connect-failure",
        "refused-stream",
        "unavailable",
        "cancelled",
        "reset-before-request",
    ]
    assert "503" not in policy.retry_on and "5xx" not in policy.retry_on
    assert not policy.retriable_status_codes
    assert policy.num_retries.value == 2
    assert [p.name for p in policy.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]
    assert policy.host_selection_retry_max_attempts == 5


def test_no_outbound_port_means_no_outbound_listeners_and_no_routes() -> None:
    services = [Service("b"), Service("db", protocol=ServiceProtocol.TCP, port=5432)]
    resources = translate(mesh(services), sidecar("b", outbound_port=None))
    assert [item.name for item in resources.listeners] == ["inbound"]
    assert [r.name for r in resources.routes] == ["inbound|9000"]  # the inbound side only
    assert [item.name for item in resources.clusters] == [
        "inbound|9000",
        "outbound|5432||db.default",
        "outbound|8080||b.default",
    ]


def test_route_configuration_with_no_http_service_is_empty() -> None:
    resources = translate(
        mesh([Service("db", protocol=ServiceProtocol.TCP, port=5432)]), sidecar("db")
    )
    assert list(route_config(resources, "outbound|http").virtual_hosts) == []


# --- clusters and endpoints ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(ServiceProtocol))
def test_every_service_has_an_eds_cluster_over_ads(protocol: ServiceProtocol) -> None:
    resources = translate(mesh([Service("b", protocol=protocol, port=7000)]), sidecar())
    item = cluster(resources, "outbound|7000||b.default")
    assert item.type == cluster_pb2.Cluster.DiscoveryType.EDS
    assert item.eds_cluster_config.service_name == "outbound|7000||b.default"
    assert_ads(item.eds_cluster_config.eds_config)
    assert item.connect_timeout.ToTimedelta().total_seconds() == 5
    assert speaks_http2(item) == protocol.is_http2


def test_load_assignment_holds_healthy_instances_grouped_by_locality() -> None:
    instances = [
        Instance("b", "b-1", "10.0.0.10", 15006, locality="us/z1"),
        Instance("b", "b-2", "10.0.0.9", 15006, locality="us/z1"),
        Instance("b", "b-3", "10.0.0.8", 15006, locality="eu/z2/rack"),
        Instance("b", "b-4", "10.0.0.7", 15006, locality="us/z1", healthy=False),
        Instance("b", "b-5", "10.0.0.6", 15007),
    ]
    resources = translate(mesh([Service("b")], instances), sidecar())
    (assignment,) = resources.endpoints
    assert assignment.cluster_name == "outbound|8080||b.default"
    groups = [
        (
            (g.locality.region, g.locality.zone, g.locality.sub_zone),
            [
                (
                    e.endpoint.address.socket_address.address,
                    e.endpoint.address.socket_address.port_value,
                )
                for e in g.lb_endpoints
            ],
        )
        for g in assignment.endpoints
    ]
    assert groups == [
        (("", "", ""), [("10.0.0.6", 15007)]),
        (("eu", "z2", "rack"), [("10.0.0.8", 15006)]),
        (("us", "z1", ""), [("10.0.0.9", 15006), ("10.0.0.10", 15006)]),
    ]


def test_service_without_healthy_instances_gets_an_empty_assignment() -> None:
    instances = [Instance("sick", "s-1", "10.0.0.1", 15006, healthy=False)]
    resources = translate(mesh([Service("ghost"), Service("sick")], instances), sidecar())
    assert {a.cluster_name: len(a.endpoints) for a in resources.endpoints} == {
        "outbound|8080||ghost.default": 0,
        "outbound|8080||sick.default": 0,
    }


# --- tcp services and port collisions ------------------------------------------------------


def test_tcp_service_gets_a_listener_on_its_port_forwarding_to_its_cluster() -> None:
    services = [Service("db", protocol=ServiceProtocol.TCP, port=5432)]
    resources = translate(mesh(services), sidecar(outbound_address="127.0.0.3"))
    item = listener(resources, "outbound|tcp|db.default")
    assert bound(Resources(listeners=(item,))) == [("127.0.0.3", 5432)]
    proxy = tcp_proxy(item)
    assert proxy.cluster == "outbound|5432||db.default"
    assert proxy.stat_prefix == "outbound_tcp_db_default"


@pytest.mark.parametrize(
    ("port", "collides_with"),
    [
        (15001, "outbound HTTP listener"),
        (15006, "inbound listener"),
        (9000, "app's own port"),
        (6379, "tcp service default/cache"),
    ],
)
def test_tcp_port_collision_is_reported_and_the_listener_left_out(
    port: int, collides_with: str
) -> None:
    services = [
        Service("a"),
        Service("cache", protocol=ServiceProtocol.TCP, port=6379),
        Service("late", protocol=ServiceProtocol.TCP, port=port),
    ]
    resources = translate(mesh(services), sidecar())
    assert "outbound|tcp|late.default" not in [item.name for item in resources.listeners]
    assert f"outbound|{port}||late.default" in [item.name for item in resources.clusters]
    (problem,) = resources.problems
    assert (problem.resource, problem.field) == ("Service/default/late", "port")
    assert collides_with in problem.message
    assert problem.severity is Severity.ERROR
    assert len(set(bound(resources))) == len(resources.listeners)


def test_wildcard_address_collides_with_specific_addresses_on_the_same_port() -> None:
    services = [Service("a"), Service("db", protocol=ServiceProtocol.TCP, port=15006)]
    resources = translate(
        mesh(services), sidecar(inbound_address="0.0.0.0", outbound_address="127.0.0.1")
    )
    assert "outbound|tcp|db.default" not in [item.name for item in resources.listeners]
    assert "inbound listener" in resources.problems[0].message


def test_same_port_on_different_addresses_is_no_collision() -> None:
    services = [Service("a"), Service("db", protocol=ServiceProtocol.TCP, port=15006)]
    resources = translate(
        mesh(services), sidecar(inbound_address="10.0.0.1", outbound_address="127.0.0.1")
    )
    assert bound(resources) == [("10.0.0.1", 15006), ("127.0.0.1", 15001), ("127.0.0.1", 15006)]
    assert resources.problems == ()


def test_outbound_listener_colliding_with_inbound_is_left_out_and_reported() -> None:
    resources = translate(mesh([Service("a")]), sidecar(inbound_port=15001, outbound_port=15001))
    assert [item.name for item in resources.listeners] == ["inbound"]
    assert [r.name for r in resources.routes] == ["inbound|9000"]  # no outbound routes
    (problem,) = resources.problems
    assert (problem.resource, problem.field) == ("Proxy/default/a", "outbound_port")


# --- determinism ---------------------------------------------------------------------------


def serialized(resources: Resources) -> list[bytes]:
    kinds = (resources.listeners, resources.clusters, resources.routes, resources.endpoints)
    return [m.SerializeToString(deterministic=True) for kind in kinds for m in kind]


def test_same_mesh_in_any_order_gives_byte_identical_resources() -> None:
    services = [
        Service("b", "shop", ServiceProtocol.HTTP, 9080),
        Service("api", "default", ServiceProtocol.GRPC, 9090),
        Service("db", "default", ServiceProtocol.TCP, 5432),
        Service("clash", "default", ServiceProtocol.TCP, 5432),
    ]
    instances = [
        Instance(s.name, f"{s.name}-{n}", f"10.0.{n}.{k}", 15006, locality=f"r{n % 2}/z{n % 3}")
        for k, s in enumerate(services, start=1)
        for n in range(5)
    ]
    first = translate(MeshState.build(1, services, instances), sidecar("api"))
    shuffler = random.Random(7)
    for _ in range(5):
        shuffler.shuffle(services)
        shuffler.shuffle(instances)
        again = translate(MeshState.build(1, services, instances), sidecar("api"))
        assert serialized(again) == serialized(first)
        assert again.problems == first.problems


def test_revision_and_node_id_do_not_change_the_resources() -> None:
    services = [Service("b"), Service("db", protocol=ServiceProtocol.TCP, port=5432)]
    one = translate(MeshState.build(1, services, []), sidecar("b"))
    other = translate(MeshState.build(99, services, []), sidecar("b").view())
    assert serialized(one) == serialized(other)


def test_a_domain_is_never_given_to_two_virtual_hosts() -> None:
    # The store keys services by name today; should two namespaces ever share a name, the
    # short host `b` must not reach Envoy twice (it would reject the whole route config).
    first, second = Service("b", "alpha"), Service("b", "beta")
    state = MeshState(revision=1, services={"alpha/b": first, "beta/b": second})
    resources = translate(state, sidecar("b", namespace="alpha"))
    domains = {
        vhost.name: list(vhost.domains)
        for vhost in route_config(resources, "outbound|http").virtual_hosts
    }
    assert domains["b.alpha:8080"][:2] == ["b", "b:8080"]
    assert domains["b.beta:8080"] == [
        "b.beta",
        "b.beta:8080",
        "b.beta.svc.cluster.local",
        "b.beta.svc.cluster.local:8080",
    ]
    assert {(p.resource, p.severity) for p in resources.problems} == {
        ("Service/beta/b", Severity.WARNING)
    }
