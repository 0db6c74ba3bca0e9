"""Traffic policies in the translator: what varies by proxy (labels, locality, gateway ports),
determinism, and leaving out what cannot work instead of publishing it. (What each field
becomes is in the golden scenarios, tests/golden/.)"""

from __future__ import annotations

import dataclasses
from typing import Any

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from interlock.model import Instance, MeshState, Proxy, ProxyKind, Service
from interlock.model.policy import read_resources
from interlock.xds.translate import Resources, check_consistency, translate

NET = "networking.istio.io/v1"
SERVICES = [Service("a"), Service("b")]
INSTANCES = [
    Instance("a", "a-1", "10.0.0.1", 15006),
    Instance("b", "b-1", "10.0.1.1", 15006, {"version": "v1"}, locality="us/east"),
    Instance("b", "b-2", "10.0.1.2", 15006, {"version": "v2"}, locality="eu/west"),
]
SIDECAR = Proxy("a-1", "a", inbound_port=15006, app_port=8080, outbound_port=15001)


def state(*documents: dict[str, Any]) -> MeshState:
    resources = [
        dataclasses.replace(r, created_revision=i + 1, revision=i + 1)
        for i, r in enumerate(read_resources(list(documents), batch=True))
    ]
    return MeshState.build(3, SERVICES, INSTANCES, resources)


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": NET, "kind": kind, "metadata": {"name": name}, "spec": spec}


SUBSETS = doc(
    "DestinationRule",
    "b",
    {
        "host": "b",
        "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 3}},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
    },
)


def routes_of(resources: Resources, vhost: str) -> list[Any]:
    config = next(r for r in resources.routes if r.name == "outbound|http")
    return list(next(v for v in config.virtual_hosts if v.name == vhost).routes)


def serialized(resources: Resources) -> list[bytes]:
    kinds = (resources.listeners, resources.clusters, resources.routes, resources.endpoints)
    return [m.SerializeToString(deterministic=True) for kind in kinds for m in kind]


def test_no_policy_adds_no_cluster_and_equal_input_gives_equal_bytes() -> None:
    plain = translate(state(), SIDECAR)
    assert [c.name for c in plain.clusters] == [
        "inbound|8080",
        "outbound|8080||a.default",
        "outbound|8080||b.default",
    ]
    mesh = state(SUBSETS)
    assert serialized(translate(mesh, SIDECAR)) == serialized(translate(mesh, SIDECAR))


def test_a_subset_holds_the_instances_its_labels_select() -> None:
    resources = translate(state(SUBSETS), SIDECAR)
    subset = next(e for e in resources.endpoints if e.cluster_name == "outbound|8080|v1|b.default")
    addresses = [
        lb.endpoint.address.socket_address.address
        for group in subset.endpoints
        for lb in group.lb_endpoints
    ]
    assert addresses == ["10.0.1.1"]
    assert check_consistency(resources) == []


def test_priorities_follow_the_proxys_locality() -> None:
    def priorities(proxy: Proxy) -> dict[str, int]:
        resources = translate(state(SUBSETS), proxy)
        base = next(e for e in resources.endpoints if e.cluster_name == "outbound|8080||b.default")
        return {g.locality.region: g.priority for g in base.endpoints}

    assert priorities(dataclasses.replace(SIDECAR, locality="eu/west")) == {"eu": 0, "us": 1}
    assert priorities(dataclasses.replace(SIDECAR, locality="us/east")) == {"eu": 1, "us": 0}
    assert priorities(SIDECAR) == {"eu": 0, "us": 0}  # no locality: no preference


def test_source_labels_decide_per_proxy_which_matches_exist() -> None:
    vs = doc(
        "VirtualService",
        "b",
        {
            "hosts": ["b"],
            "http": [
                {
                    "match": [{"sourceLabels": {"track": "beta"}}],
                    "route": [{"destination": {"host": "b", "subset": "v1"}}],
                },
                {"route": [{"destination": {"host": "b"}}]},
            ],
        },
    )
    mesh = state(SUBSETS, vs)
    stable = routes_of(translate(mesh, SIDECAR), "b.default:8080")
    beta = routes_of(translate(mesh, SIDECAR.with_labels({"track": "beta"})), "b.default:8080")
    assert [r.route.cluster for r in stable] == ["outbound|8080||b.default"]
    assert [r.route.cluster for r in beta] == [
        "outbound|8080|v1|b.default",
        "outbound|8080||b.default",
    ]


def test_a_route_to_nothing_answers_503_instead_of_naming_a_missing_cluster() -> None:
    vs = doc(
        "VirtualService",
        "b",
        {"hosts": ["b"], "http": [{"route": [{"destination": {"host": "b", "subset": "v9"}}]}]},
    )
    resources = translate(state(SUBSETS, vs), SIDECAR)
    (route,) = routes_of(resources, "b.default:8080")
    assert route.direct_response.status == 503
    assert check_consistency(resources) == []


def test_a_gateway_serves_only_its_ports_and_reports_the_others() -> None:
    gateway = doc(
        "Gateway",
        "edge",
        {
            "selector": {"gateway": "edge"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
                {"port": {"number": 81, "name": "other", "protocol": "HTTP"}, "hosts": ["*"]},
            ],
        },
    )
    proxy = Proxy("edge", "edge", kind=ProxyKind.GATEWAY, gateway_ports=((80, 18080),)).with_labels(
        {"gateway": "edge"}
    )
    resources = translate(state(gateway), proxy)
    assert [(x.name, x.address.socket_address.port_value) for x in resources.listeners] == [
        ("gateway|80", 18080)
    ]
    assert [(p.resource, p.field) for p in resources.problems] == [
        ("Gateway/default/edge", "spec.servers[1].port.number")
    ]
    unselected = translate(state(gateway), dataclasses.replace(proxy, labels={}))
    assert unselected.listeners == ()


def test_a_gateway_tcp_server_forwards_as_the_virtual_service_its_hosts_bind() -> None:
    """As in Istio, a VirtualService binds to a Gateway's TCP server only where their hosts meet:
    the oldest bound one with a tcp rule and a shared host decides, others are not used."""
    gateway = doc(
        "Gateway",
        "edge",
        {
            "selector": {"gateway": "edge"},
            "servers": [
                {"port": {"number": 9000, "name": "db", "protocol": "TCP"}, "hosts": ["db.x"]}
            ],
        },
    )

    def tcp_vs(name: str, host: str, to: str) -> dict[str, Any]:
        return doc(
            "VirtualService",
            name,
            {
                "hosts": [host],
                "gateways": ["edge"],
                "tcp": [{"route": [{"destination": {"host": to}}]}],
            },
        )

    proxy = Proxy(
        "edge", "edge", kind=ProxyKind.GATEWAY, gateway_ports=((9000, 19000),)
    ).with_labels({"gateway": "edge"})
    # The older VirtualService names another host: it does not bind; the newer one does.
    resources = translate(
        state(gateway, tcp_vs("other", "web.x", "a"), tcp_vs("db", "db.x", "b")), proxy
    )
    (listener,) = resources.listeners
    tcp = tcp_proxy_pb2.TcpProxy()
    listener.filter_chains[0].filters[-1].typed_config.Unpack(tcp)
    assert tcp.cluster == "outbound|8080||b.default"
    # With no VirtualService naming its hosts, the port is left out, and a warning says so.
    alone = translate(state(gateway, tcp_vs("other", "web.x", "a")), proxy)
    assert alone.listeners == ()
    assert [(p.resource, p.field) for p in alone.problems] == [
        ("Gateway/default/edge", "spec.servers[0].port")
    ]
