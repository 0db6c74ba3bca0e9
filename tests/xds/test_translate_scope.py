"""Per-proxy scope (Sidecar and exportTo): which services, hosts and policies a proxy gets.

What a user notices is the proxy's resources: the clusters, virtual hosts and endpoints it
holds, and that a change out of its scope leaves them as they were."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from interlock.model import Instance, MeshState, Proxy, ProxyKind, Service, ServiceProtocol
from interlock.model.identity import MeshIdentity
from interlock.model.policy import read_resources
from interlock.xds.translate import Resources, check_consistency, refresh_endpoints, translate
from interlock.xds.translate.scope import applicable_sidecar, scope

ROOT = "interlock-system"
IDENTITY = MeshIdentity("interlock.local")

SERVICES = [
    Service("a", "shop"),
    Service("b", "shop"),
    Service("c", "shop"),
    Service("d", "team"),
    Service("db", "team", ServiceProtocol.TCP, 5432),
]
INSTANCES = [
    Instance(s.name, f"{s.name}-1", "127.0.0.1", 15000 + n) for n, s in enumerate(SERVICES)
]
A = Proxy("a-1", "a", "shop", inbound_port=15000, app_port=16000, outbound_port=15100)


def sidecar(name: str, namespace: str, hosts: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"egress": [{"hosts": hosts}], **spec},
    }


def policy(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def mesh(*documents: dict[str, Any], services: list[Service] = SERVICES) -> MeshState:
    resources = [
        dataclasses.replace(r, created_revision=n + 1, revision=n + 1, generation=1)
        for n, r in enumerate(read_resources(list(documents), batch=True))
    ]
    return MeshState.build(7, services, INSTANCES, resources)


def reached(resources: Resources) -> set[str]:
    """``name.namespace`` of every service the proxy holds a cluster of."""
    return {c.name.split("||")[1] for c in resources.clusters if "||" in c.name}


def virtual_hosts(resources: Resources) -> set[str]:
    outbound = next(r for r in resources.routes if r.name == "outbound|http")
    return {v.name for v in outbound.virtual_hosts}


def test_without_sidecar_or_export_to_the_state_is_not_copied() -> None:
    state = mesh(sidecar("other", "team", ["./*"]))
    assert scope(state, A, ROOT) is state
    assert reached(translate(state, A)) == {"a.shop", "b.shop", "c.shop", "d.team", "db.team"}


def test_a_sidecar_keeps_only_its_egress_hosts_and_the_proxys_own_service() -> None:
    state = mesh(sidecar("a", "shop", ["./b", "team/db.team.svc.cluster.local"]))
    resources = translate(state, A, IDENTITY)
    assert reached(resources) == {"a.shop", "b.shop", "db.team"}
    assert virtual_hosts(resources) == {"a.shop:8080", "b.shop:8080"}
    assert {e.cluster_name for e in resources.endpoints} == {
        "outbound|8080||a.shop",
        "outbound|8080||b.shop",
        "outbound|5432||db.team",
    }
    assert {lis.name for lis in resources.listeners} == {
        "inbound",
        "outbound|http",
        "outbound|tcp|db.team",
    }
    assert check_consistency(translate(state, A)) == []


def test_callers_out_of_scope_are_still_counted_on_the_inbound_side() -> None:
    state = mesh(sidecar("a", "shop", ["~/*"]))
    resources = translate(state, A)
    assert reached(resources) == {"a.shop"}
    inbound = next(r for r in resources.routes if r.name != "outbound|http")
    counted = {v.name for vh in inbound.virtual_hosts for v in vh.virtual_clusters}
    assert {"a", "b", "c", "d", "db"} <= counted


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        (["./*"], {"a.shop", "b.shop", "c.shop"}),
        (["*/*"], {"a.shop", "b.shop", "c.shop", "d.team", "db.team"}),
        (["team/*"], {"a.shop", "d.team", "db.team"}),
        (["~/*"], {"a.shop"}),
        (["*/b"], {"a.shop", "b.shop"}),  # a short name: the service b of any namespace
        (["*/c.shop"], {"a.shop", "c.shop"}),
        (["*/*.team.svc.cluster.local"], {"a.shop", "d.team", "db.team"}),
        (["shop/d.team.svc.cluster.local"], {"a.shop"}),  # d is not in shop
    ],
)
def test_egress_host_forms(hosts: list[str], expected: set[str]) -> None:
    assert reached(translate(mesh(sidecar("a", "shop", hosts)), A)) == expected


def test_which_sidecar_applies() -> None:
    root = sidecar("default", ROOT, ["*/*"])
    namespace_default = sidecar("default", "shop", ["./*"])
    selecting = sidecar("a", "shop", ["./b"], workloadSelector={"labels": {"app": "a"}})
    by_label = sidecar("v2", "shop", ["./c"], workloadSelector={"labels": {"version": "v2"}})
    state = mesh(root, namespace_default, selecting, by_label)

    def name(proxy: Proxy, in_state: MeshState = state) -> str | None:
        found = applicable_sidecar(in_state, proxy, ROOT)
        return None if found is None else f"{found.namespace}/{found.name}"

    assert name(A) == "shop/a"  # by the implicit app label
    other = dataclasses.replace(A, service="b", node_id="b-1")
    assert name(other) == "shop/default"
    assert name(other.with_labels({"version": "v2"})) == "shop/v2"
    elsewhere = dataclasses.replace(A, service="d", namespace="team")
    assert name(elsewhere) == f"{ROOT}/default"
    assert name(elsewhere, mesh(namespace_default)) is None
    gateway = dataclasses.replace(A, kind=ProxyKind.GATEWAY)
    assert name(gateway) is None  # Sidecars never apply to gateways (Istio's rule)
    # The root namespace's default applies where a namespace has none.
    assert reached(translate(state, elsewhere)) == reached(translate(mesh(), elsewhere))


def test_two_proxies_with_different_scopes_never_share_a_view() -> None:
    state = mesh(sidecar("v2", "shop", ["./c"], workloadSelector={"labels": {"version": "v2"}}))
    v1 = A.with_labels({"version": "v1"})
    v2 = A.with_labels({"version": "v2"})
    assert v1.view_key() != v2.view_key()
    assert reached(translate(state, v1)) != reached(translate(state, v2))
    assert dataclasses.replace(A, namespace="team").view_key() != A.view_key()


@pytest.mark.parametrize(
    ("export_to", "seen_from_shop", "seen_from_team"),
    [
        ((), True, True),
        (("*",), True, True),
        ((".",), False, True),
        (("shop",), True, False),
        (("~",), False, False),
    ],
)
def test_a_services_export_to(
    export_to: tuple[str, ...], seen_from_shop: bool, seen_from_team: bool
) -> None:
    services = [*SERVICES[:3], Service("d", "team", export_to=export_to), SERVICES[4]]
    state = mesh(services=services)
    team = Proxy("db-1", "db", "team", outbound_port=15100)
    assert ("d.team" in reached(translate(state, A))) is seen_from_shop
    assert ("d.team" in reached(translate(state, team))) is seen_from_team


def test_a_proxy_always_sees_its_own_service() -> None:
    services = [Service("a", "shop", export_to=("~",)), *SERVICES[1:]]
    resources = translate(mesh(services=services), A)
    assert "a.shop" in reached(resources)
    assert "inbound" in {lis.name for lis in resources.listeners}


def test_policies_apply_only_where_exported() -> None:
    route = {"hosts": ["d.team"], "http": [{"route": [{"destination": {"host": "d.team"}}]}]}
    state = mesh(
        policy("VirtualService", "d", "team", {**route, "exportTo": ["."]}),
        policy(
            "DestinationRule",
            "d",
            "team",
            {
                "host": "d",
                "exportTo": ["shop"],
                "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
            },
        ),
        policy(
            "ServiceEntry",
            "api",
            "team",
            {
                "hosts": ["api.example.com"],
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                "resolution": "DNS",
                "exportTo": ["."],
            },
        ),
    )
    team = Proxy("db-1", "db", "team", outbound_port=15100)
    shop, own = translate(state, A), translate(state, team)

    def routes_of_d(resources: Resources) -> list[str]:
        outbound = next(r for r in resources.routes if r.name == "outbound|http")
        vh = next(v for v in outbound.virtual_hosts if v.name == "d.team:8080")
        return [r.name for r in vh.routes]

    assert routes_of_d(own) != routes_of_d(shop)  # the VirtualService's routes: team only
    lb = {c.name: c.lb_policy for c in shop.clusters}
    lb_team = {c.name: c.lb_policy for c in own.clusters}
    assert lb["outbound|8080||d.team"] != lb_team["outbound|8080||d.team"]  # DR: shop only
    assert "outbound|80||api.example.com" in {c.name for c in own.clusters}
    assert "outbound|80||api.example.com" not in {c.name for c in shop.clusters}


def test_a_service_entry_keeps_only_the_hosts_the_egress_matches() -> None:
    entry = policy(
        "ServiceEntry",
        "ext",
        "shop",
        {
            "hosts": ["api.example.com", "other.example.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "DNS",
        },
    )
    state = mesh(entry, sidecar("a", "shop", ["./api.example.com"]))
    names = {c.name for c in translate(state, A).clusters}
    assert "outbound|80||api.example.com" in names
    assert "outbound|80||other.example.com" not in names


def test_an_instance_change_out_of_scope_leaves_the_resources_as_they_were() -> None:
    state = mesh(sidecar("a", "shop", ["./b"]))
    for identity in (None, IDENTITY):
        before = translate(state, A, identity)
        moved = tuple(dataclasses.replace(i, address="127.0.0.9") for i in state.instances_of("d"))
        after = state.with_instances(8, {"d": moved})
        assert refresh_endpoints(before, after, A, ["d"], identity) is before
        assert translate(after, A, identity) == before
        # ... and one in scope is refreshed like a full translation.
        moved_b = tuple(
            dataclasses.replace(i, address="127.0.0.9") for i in state.instances_of("b")
        )
        after_b = state.with_instances(8, {"b": moved_b})
        refreshed = refresh_endpoints(before, after_b, A, ["b"], identity)
        assert refreshed is not None and refreshed == translate(after_b, A, identity)


def test_an_instance_only_change_reuses_what_the_scope_keeps() -> None:
    """What a scope keeps depends on services and policies only: after an instance change
    (which shares both), the scoped state shares the kept services and policies, so the
    incremental path pays only for the visible services' instances."""
    state = mesh(sidecar("a", "shop", ["./b"]))
    before = scope(state, A, ROOT)
    moved = tuple(dataclasses.replace(i, address="127.0.0.9") for i in state.instances_of("b"))
    after = scope(state.with_instances(8, {"b": moved}), A, ROOT)
    assert after.services is before.services and after.policies is before.policies
    assert after.instances["b"] == moved and set(after.instances) == {"a", "b"}


def test_a_route_to_a_destination_out_of_scope_is_reported_for_that_proxy() -> None:
    route = {
        "hosts": ["b"],
        "http": [{"route": [{"destination": {"host": "c"}}], "mirror": {"host": "d.team"}}],
    }
    state = mesh(policy("VirtualService", "b", "shop", route), sidecar("a", "shop", ["./b"]))
    for proxy in (A, dataclasses.replace(A, kind=ProxyKind.GRPC)):
        found = {(p.resource, p.field) for p in translate(state, proxy).problems}
        assert ("VirtualService/shop/b", "spec.http[0].route[0].destination.host") in found
        assert ("VirtualService/shop/b", "spec.http[0].mirror.host") in found
    team = Proxy("db-1", "db", "team", outbound_port=15100)  # no Sidecar: nothing to report
    assert not [p for p in translate(state, team).problems if "scope" in p.message]
