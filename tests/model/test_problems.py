"""Cross-resource problems: a policy that points at nothing is reported, never silent."""

from __future__ import annotations

import dataclasses
from typing import Any

from interlock.model import Instance, MeshState, Problem, Service
from interlock.model.policy import (
    destination_rules_for_host,
    host_is_known,
    policy_problems,
    problems_by_resource,
    read_resources,
    service_for_host,
)
from interlock.model.problem import Severity
from tests.model.specs import NET, OWN, SEC, doc

REVIEWS = Service("reviews", "default", port=9080)
INSTANCES = [
    Instance("reviews", "reviews-1", "10.0.0.1", 15006, {"version": "v1"}),
    Instance("reviews", "reviews-2", "10.0.0.2", 15006, {"version": "v2"}),
]


def state(*documents: dict[str, Any], services: list[Service] | None = None) -> MeshState:
    resources = read_resources(list(documents), batch=True)
    stored = [
        dataclasses.replace(r, generation=1, created_revision=i + 1, revision=i + 1)
        for i, r in enumerate(resources)
    ]
    return MeshState.build(7, services if services is not None else [REVIEWS], INSTANCES, stored)


def route_to(
    host: str, subset: str | None = None, name: str = "reviews", **spec: Any
) -> dict[str, Any]:
    destination = {"host": host, **({"subset": subset} if subset else {})}
    return doc(
        NET,
        "VirtualService",
        name,
        {"hosts": ["reviews"], "http": [{"route": [{"destination": destination}]}], **spec},
    )


def subsets(*names: str, host: str = "reviews", name: str = "reviews") -> dict[str, Any]:
    return doc(
        NET,
        "DestinationRule",
        name,
        {"host": host, "subsets": [{"name": n, "labels": {"version": n}} for n in names]},
    )


def problems(current: MeshState) -> list[tuple[str, str, Severity]]:
    return [(p.resource, p.field, p.severity) for p in policy_problems(current)]


def test_a_route_to_a_defined_subset_has_no_problem() -> None:
    for host in ("reviews", "reviews.default", "reviews.default.svc.cluster.local"):
        assert problems(state(route_to(host, "v1"), subsets("v1", "v2"))) == []


def test_a_route_to_a_subset_no_destination_rule_defines_is_an_error() -> None:
    found = policy_problems(state(route_to("reviews", "v3"), subsets("v1", "v2")))
    assert found == (
        Problem(
            "VirtualService/default/reviews",
            "spec.http[0].route[0].destination.subset",
            "subset 'v3' of 'reviews' is not defined: the DestinationRule(s) for it "
            "(DestinationRule/default/reviews)",
            Severity.ERROR,
        ),
    )
    alone = policy_problems(state(route_to("reviews", "v1")))
    assert [p.message for p in alone] == [
        "subset 'v1' of 'reviews' is not defined: no DestinationRule for it exists"
    ]


def test_the_destination_rule_may_name_the_host_in_another_form() -> None:
    assert (
        problems(
            state(
                route_to("reviews.default", "v2"),
                subsets("v2", host="reviews.default.svc.cluster.local"),
            )
        )
        == []
    )


def test_a_route_to_an_unknown_host_is_an_error_and_the_host_a_warning() -> None:
    found = problems(state(route_to("ratings")))
    assert found == [
        ("VirtualService/default/reviews", "spec.http[0].route[0].destination.host", Severity.ERROR)
    ]
    unregistered = problems(state(route_to("reviews"), services=[]))
    assert ("VirtualService/default/reviews", "spec.hosts[0]", Severity.WARNING) in unregistered


def test_a_service_entry_makes_an_external_host_known() -> None:
    entry = doc(
        NET,
        "ServiceEntry",
        "payments",
        {
            "hosts": ["*.payments.example.com"],
            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "192.0.2.1"}],
        },
    )
    external = doc(
        NET,
        "VirtualService",
        "payments",
        {
            "hosts": ["api.payments.example.com"],
            "tcp": [{"route": [{"destination": {"host": "api.payments.example.com"}}]}],
        },
    )
    assert problems(state(entry, external)) == []
    assert (
        "VirtualService/default/payments",
        "spec.tcp[0].route[0].destination.host",
        Severity.ERROR,
    ) in problems(state(external))


def test_subset_labels_that_select_no_instance_are_a_warning() -> None:
    found = problems(state(subsets("v1", "v9")))
    assert found == [
        ("DestinationRule/default/reviews", "spec.subsets[1].labels", Severity.WARNING)
    ]


def test_missing_gateway_and_mirror_subset() -> None:
    vs = route_to("reviews", "v1", gateways=["mesh", "default/public"])
    vs["spec"]["http"][0]["mirror"] = {"host": "reviews", "subset": "shadow"}
    found = problems(state(vs, subsets("v1")))
    assert found == [
        ("VirtualService/default/reviews", "spec.gateways[1]", Severity.ERROR),
        ("VirtualService/default/reviews", "spec.http[0].mirror.subset", Severity.ERROR),
    ]


def test_istio_mutual_names_each_instance_no_sidecar_fronts() -> None:
    plain = [
        *INSTANCES,  # sidecars'
        Instance("reviews", "legacy", "10.0.0.9", 9080, {"version": "v1"}, sidecar=False),
        Instance("reviews", "old-v2", "10.0.0.8", 9080, {"version": "v2"}, sidecar=False),
    ]
    rule = doc(
        NET,
        "DestinationRule",
        "reviews",
        {
            "host": "reviews",
            "subsets": [
                {
                    "name": "v2",
                    "labels": {"version": "v2"},
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                }
            ],
        },
    )
    (found,) = policy_problems(_with_instances(state(rule), plain))
    assert (found.resource, found.field, found.severity) == (
        "DestinationRule/default/reviews",
        "spec.subsets[0].trafficPolicy.tls.mode",
        Severity.ERROR,
    )
    assert "'old-v2'" in found.message  # only the plain instance the subset covers
    whole = doc(NET, "DestinationRule", "reviews", {"host": "reviews", "trafficPolicy": RULE_TLS})
    found_all = policy_problems(_with_instances(state(whole), plain))
    assert sorted(p.message.split("'")[1] for p in found_all) == [
        "legacy",
        "old-v2",
    ]


RULE_TLS = {"tls": {"mode": "ISTIO_MUTUAL"}}


def _with_instances(current: MeshState, instances: list[Instance]) -> MeshState:
    return current.with_instances(current.revision, {"reviews": tuple(instances)})


def test_two_virtual_services_for_one_host_warn_on_the_newer() -> None:
    found = problems(state(route_to("reviews", name="first"), route_to("reviews", name="second")))
    assert found == [("VirtualService/default/second", "spec.hosts[0]", Severity.WARNING)]


def test_rate_limit_routes_must_exist() -> None:
    limit = doc(
        OWN,
        "RateLimit",
        "reviews",
        {
            "target": {
                "service": "reviews",
                "routes": [{"name": "canary"}, {"name": "nope"}, {"pathPrefix": "/x"}],
            },
            "tokenBucket": {"maxTokens": 5, "fillInterval": "1s"},
        },
    )
    vs = route_to("reviews")
    vs["spec"]["http"][0]["name"] = "canary"
    assert problems(state(vs, limit)) == [
        ("RateLimit/default/reviews", "spec.target.routes[1].name", Severity.ERROR)
    ]
    limit["spec"]["target"]["service"] = "ratings"
    assert problems(state(limit)) == [
        ("RateLimit/default/reviews", "spec.target.service", Severity.ERROR)
    ]


def test_selectors_see_the_implicit_app_label() -> None:
    selected = doc(
        SEC,
        "PeerAuthentication",
        "strict",
        {
            "selector": {"matchLabels": {"app": "reviews", "version": "v2"}},
            "mtls": {"mode": "STRICT"},
        },
    )
    nobody = doc(
        SEC, "PeerAuthentication", "nobody", {"selector": {"matchLabels": {"app": "ratings"}}}
    )
    assert problems(state(selected, nobody)) == [
        ("PeerAuthentication/default/nobody", "spec.selector.matchLabels", Severity.WARNING)
    ]


def test_telemetry_scopes() -> None:
    mesh_wide = doc(OWN, "Telemetry", "a", {"accessLogging": {"format": "json"}})
    again = doc(
        OWN, "Telemetry", "b", {"tracing": {"provider": "zipkin", "address": "zipkin:9411"}}
    )
    unknown = doc(OWN, "Telemetry", "c", {"service": "ratings", "accessLogging": {}})
    found = problems(state(mesh_wide, again, unknown))
    assert found == [
        ("Telemetry/default/b", "spec", Severity.WARNING),
        ("Telemetry/default/c", "spec.service", Severity.WARNING),
    ]


def test_problems_are_grouped_by_resource_and_change_with_the_mesh() -> None:
    current = state(route_to("reviews", "v1"))
    assert list(problems_by_resource(current)) == ["VirtualService/default/reviews"]
    fixed = current.with_resources(put=read_resources([subsets("v1")], batch=False))
    assert problems_by_resource(fixed) == {}
    assert current.revision == fixed.revision == 7


def test_lookups_by_host() -> None:
    other = subsets("v1", host="reviews.default", name="other")
    wildcard = subsets("v2", host="*.default.svc.cluster.local", name="everyone")
    current = state(subsets("v1"), other, wildcard, route_to("reviews"))
    found = destination_rules_for_host(current, "reviews.default.svc.cluster.local", "default")
    assert [p.name for p in found] == ["everyone", "other", "reviews"]
    assert service_for_host(current, "reviews", "default") == REVIEWS
    assert host_is_known(current, "*.default.svc.cluster.local", "default")
    assert not host_is_known(current, "api.example.com", "default")


def test_a_root_namespace_authorization_policy_selects_across_namespaces() -> None:
    """Istio applies a selector policy of the root namespace to matching workloads of every
    namespace, so it warns only when no namespace has a match (and the root is configurable)."""
    rules = [{"to": [{"operation": {"methods": ["DELETE"]}}]}]
    selects_reviews = {"selector": {"matchLabels": {"app": "reviews"}}, "rules": rules}
    selects_nothing = {"selector": {"matchLabels": {"app": "ratings"}}, "rules": rules}
    mesh = state(
        doc(SEC, "AuthorizationPolicy", "reviews", selects_reviews, namespace="interlock-system"),
        doc(SEC, "AuthorizationPolicy", "nothing", selects_nothing, namespace="interlock-system"),
    )
    problems = problems_by_resource(mesh)
    assert "AuthorizationPolicy/interlock-system/reviews" not in problems
    [nothing] = problems["AuthorizationPolicy/interlock-system/nothing"]
    assert nothing.message == "selects no instance in any namespace (yet)"
    # With another root namespace, interlock-system is an ordinary namespace again.
    elsewhere = problems_by_resource(mesh, "mesh-root")
    assert "AuthorizationPolicy/interlock-system/reviews" in elsewhere


def test_a_sidecar_that_loses_somewhere_or_selects_nothing_says_so() -> None:
    def sidecar(name: str, **spec: Any) -> dict[str, Any]:
        return doc(NET, "Sidecar", name, {"egress": [{"hosts": ["./*"]}], **spec})

    found = problems(
        state(
            sidecar("default"),
            sidecar("second-default"),
            sidecar("v1", workloadSelector={"labels": {"version": "v1"}}),
            sidecar("all-reviews", workloadSelector={"labels": {"app": "reviews"}}),
            sidecar("nobody", workloadSelector={"labels": {"app": "ratings"}}),
        )
    )
    assert found == [
        ("Sidecar/default/all-reviews", "spec.workloadSelector.labels", Severity.WARNING),
        ("Sidecar/default/nobody", "spec.workloadSelector.labels", Severity.WARNING),
        ("Sidecar/default/second-default", "spec", Severity.WARNING),
    ]
