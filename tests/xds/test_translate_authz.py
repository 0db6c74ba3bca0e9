"""AuthorizationPolicy and RequestAuthentication in the translator: the matchers (principals,
namespaces, request principals, hosts), which policies apply to which proxy, and what cannot
be enforced being reported. (What each field becomes is in the golden scenarios
authorization-policies and request-authentication; real Envoys enforce it in
tests/e2e/test_authorization.py.)"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

import pytest
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from interlock.model import Instance, MeshState, Proxy, ProxyKind, Service, ServiceProtocol
from interlock.model.identity import MeshIdentity
from interlock.model.policy import read_resources
from interlock.xds.translate import Resources, translate
from interlock.xds.translate.authz_match import (
    Kind,
    Pattern,
    namespace_matcher,
    pattern,
    principal_matcher,
    request_principal_alternatives,
)
from tests.model.specs import RSA_JWKS

SEC = "security.istio.io/v1"
JWKS = RSA_JWKS
SERVICES = [Service("backend"), Service("db", protocol=ServiceProtocol.TCP, port=5432)]
INSTANCES = [
    Instance("backend", "backend-1", "10.0.0.1", 15006, {"version": "v1"}),
    Instance("db", "db-1", "10.0.0.2", 15006),
]
BACKEND = Proxy(
    "backend-1", "backend", inbound_port=15006, app_port=8080, outbound_port=15001
).with_labels({"version": "v1"})
DB = Proxy("db-1", "db", inbound_port=15006, app_port=5432)
GATEWAY = Proxy("gw-1", "gw", kind=ProxyKind.GATEWAY, outbound_port=15001)


def state(*documents: dict[str, Any]) -> MeshState:
    resources = [
        dataclasses.replace(r, created_revision=i + 1, revision=i + 1)
        for i, r in enumerate(read_resources(list(documents), batch=True))
    ]
    return MeshState.build(3, SERVICES, INSTANCES, resources)


def doc(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": SEC,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def rbac_of(resources: Resources) -> dict[str, rbac_pb2.RBACPerRoute]:
    """filter name → the RBACPerRoute of the inbound virtual host."""
    config = next(r for r in resources.routes if r.name == "inbound|8080")
    found = {}
    for name, any_config in config.virtual_hosts[0].typed_per_filter_config.items():
        if name.startswith("interlock.authz."):
            per_route = rbac_pb2.RBACPerRoute()
            any_config.Unpack(per_route)
            found[name] = per_route
    return found


def inbound_filters(resources: Resources) -> list[hcm_pb2.HttpFilter]:
    listener = next(li for li in resources.listeners if li.name == "inbound")
    manager = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return list(manager.http_filters)


# --- Istio's string values ----------------------------------------------------------------


def istio_matches(value: str, text: str) -> bool:
    """Istio's rule, directly: exact, ``abc*`` prefix, ``*abc`` suffix, ``*`` presence."""
    if value == "*":
        return True
    if value.endswith("*"):
        return text.startswith(value[:-1])
    if value.startswith("*"):
        return text.endswith(value[1:])
    return text == value


def pattern_matches(p: Pattern, text: str | None) -> bool:
    if text is None:
        return False
    return {
        Kind.PRESENT: True,
        Kind.EXACT: text == p.text,
        Kind.PREFIX: text.startswith(p.text),
        Kind.SUFFIX: text.endswith(p.text),
    }[p.kind]


def alternatives_match(value: str, iss: str, sub: str) -> bool:
    claims = {"iss": iss, "sub": sub}
    return any(
        all(pattern_matches(p, claims.get(claim)) for claim, p in alternative)
        for alternative in request_principal_alternatives(value)
    )


ISSUERS = ["https://auth.example.com", "auth", "https://auth.example.com/tenant/a", ""]
SUBJECTS = ["alice", "team/bob", "/x", ""]
VALUES = [
    "*",
    "https://auth.example.com/*",
    "https://auth.example.com/alice",
    "https://auth.example.com/tenant/a/alice",
    "https://auth.example.com/team/*",
    "https://auth.ex*",
    "*/alice",
    "*/bob",
    "*a/alice",
    "*com/team/bob",
    "auth/team/bob",
    "auth/",
    "noslash",
    "*//x",
    "https:*",
]


@pytest.mark.parametrize("value", VALUES)
def test_request_principal_alternatives_match_exactly_what_istio_matches(value: str) -> None:
    for iss, sub in itertools.product(ISSUERS, SUBJECTS):
        expected = istio_matches(value, f"{iss}/{sub}")
        assert alternatives_match(value, iss, sub) == expected, (value, iss, sub)


def test_request_principal_alternatives_are_few_and_readable() -> None:
    present = Pattern(Kind.PRESENT)
    assert request_principal_alternatives("*") == [(("iss", present),)]
    assert request_principal_alternatives("noslash") == []  # never matches
    assert request_principal_alternatives("iss/*") == [
        (("iss", Pattern(Kind.PREFIX, "iss/")),),
        (("iss", Pattern(Kind.EXACT, "iss")), ("sub", present)),
    ]


def test_principals_match_the_peer_uri_san_with_the_mesh_trust_domain() -> None:
    def full(value: str, uri: str, trust_domain: str = "interlock.local") -> bool:
        m = principal_matcher(value, trust_domain)
        kind = m.WhichOneof("match_pattern")
        if kind == "safe_regex":
            return re.fullmatch(m.safe_regex.regex, uri) is not None
        return pattern_matches(Pattern(Kind(kind), getattr(m, kind)), uri)

    uri = "spiffe://interlock.local/ns/default/sa/frontend"
    assert full("interlock.local/ns/default/sa/frontend", uri)
    assert full("cluster.local/ns/default/sa/frontend", uri)  # Istio's default domain
    assert full("spiffe://cluster.local/ns/default/sa/frontend", uri)
    assert not full("cluster.local/ns/default/sa/frontend", uri, "other.domain")
    assert full("cluster.local/ns/default/*", uri)
    assert full("*/sa/frontend", uri)
    assert not full("*/sa/front", uri)
    assert full("*", uri)
    assert not full("*", "")


@pytest.mark.parametrize(
    ("value", "uri", "matches"),
    [
        ("default", "spiffe://interlock.local/ns/default/sa/a", True),
        ("default", "spiffe://interlock.local/ns/default-x/sa/a", False),
        ("default", "spiffe://interlock.local/ns/x/sa/default", False),
        ("team-*", "spiffe://interlock.local/ns/team-a/sa/a", True),
        ("*-prod", "spiffe://interlock.local/ns/shop-prod/sa/a", True),
        ("*-prod", "spiffe://interlock.local/ns/shop-prod/sa/a/extra", False),
        ("*", "spiffe://interlock.local/ns/any/sa/a", True),
        ("a.b", "spiffe://interlock.local/ns/axb/sa/a", False),  # '.' is literal
    ],
)
def test_namespaces_match_the_uri_san_segment(value: str, uri: str, matches: bool) -> None:
    regex = namespace_matcher(value).safe_regex.regex
    assert (re.fullmatch(regex, uri) is not None) == matches


def test_pattern_reads_istio_values() -> None:
    assert pattern("*") == Pattern(Kind.PRESENT)
    assert pattern("/api/*") == Pattern(Kind.PREFIX, "/api/")
    assert pattern("*.css") == Pattern(Kind.SUFFIX, ".css")
    assert pattern("/x") == Pattern(Kind.EXACT, "/x")


# --- scoping and filters ------------------------------------------------------------------

ALLOW_ALL = {"rules": [{}]}


def test_without_policies_the_rbac_filters_are_present_and_off() -> None:
    resources = translate(state(), BACKEND)
    names = [f.name for f in inbound_filters(resources)]
    assert names == [
        "interlock.authz.audit",
        "interlock.authz.deny",
        "interlock.authz.allow",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.router",
    ]
    assert rbac_of(resources) == {}


def test_a_policy_changes_routes_only_never_the_listener() -> None:
    plain = translate(state(), BACKEND)
    with_policy = translate(state(doc("AuthorizationPolicy", "a", ALLOW_ALL)), BACKEND)
    assert [li.SerializeToString(deterministic=True) for li in plain.listeners] == [
        li.SerializeToString(deterministic=True) for li in with_policy.listeners
    ]
    assert rbac_of(with_policy).keys() == {"interlock.authz.allow"}


@pytest.mark.parametrize(
    ("namespace", "selector", "applies"),
    [
        ("interlock-system", None, True),  # mesh-wide
        ("interlock-system", {"app": "backend"}, True),
        ("interlock-system", {"app": "other"}, False),
        ("default", None, True),  # the workload's namespace
        ("default", {"version": "v1"}, True),  # registered labels
        ("default", {"version": "v2"}, False),
        ("shop", None, False),  # another namespace
    ],
)
def test_which_policies_apply(
    namespace: str, selector: dict[str, str] | None, applies: bool
) -> None:
    spec: dict[str, Any] = dict(ALLOW_ALL)
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    resources = translate(state(doc("AuthorizationPolicy", "p", spec, namespace)), BACKEND)
    assert bool(rbac_of(resources)) == applies


def test_an_allow_policy_without_rules_allows_nothing_and_deny_goes_to_its_own_filter() -> None:
    resources = translate(
        state(
            doc("AuthorizationPolicy", "nothing", {}),
            doc("AuthorizationPolicy", "deny", {"action": "DENY", "rules": [{}]}),
            doc("AuthorizationPolicy", "audit", {"action": "AUDIT", "rules": [{}]}),
        ),
        BACKEND,
    )
    configs = rbac_of(resources)
    allow = configs["interlock.authz.allow"].rbac.rules
    assert allow.action == allow.ALLOW and len(allow.policies) == 0  # denies every request
    deny = configs["interlock.authz.deny"].rbac.rules
    assert deny.action == deny.DENY and list(deny.policies) == ["default/deny/rules[0]"]
    assert configs["interlock.authz.audit"].rbac.rules.action == deny.LOG


def network_rbac(resources: Resources) -> list[network_rbac_pb2.RBAC]:
    """The RBAC network filters of the inbound listener's first filter chain, in order."""
    (listener,) = [lis for lis in resources.listeners if lis.name == "inbound"]
    chain = listener.filter_chains[0]
    assert chain.filters[-1].name == "envoy.filters.network.tcp_proxy"
    out = []
    for f in chain.filters[:-1]:
        assert f.name == "envoy.filters.network.rbac"
        config = network_rbac_pb2.RBAC()
        f.typed_config.Unpack(config)
        out.append(config)
    return out


def test_policies_on_a_tcp_workload_become_network_rbac_with_istios_tcp_semantics() -> None:
    peer = {"from": [{"source": {"principals": ["cluster.local/ns/default/sa/a"]}}]}
    by_method = {"to": [{"operation": {"methods": ["GET"], "ports": ["5432"]}}]}
    documents = (
        doc("AuthorizationPolicy", "deny", {"action": "DENY", "rules": [peer, by_method]}),
        doc("AuthorizationPolicy", "allow", {"rules": [peer, by_method]}),
        doc("RequestAuthentication", "jwt", {"jwtRules": [{"issuer": "i", "jwks": JWKS}]}),
    )
    tcp = translate(state(*documents), DB, MeshIdentity())
    deny, allow = network_rbac(tcp)
    assert deny.rules.action == deny.rules.DENY and allow.rules.action == allow.rules.ALLOW
    # DENY: the HTTP-only field (methods) is dropped, the port is kept: fail closed.
    assert set(deny.rules.policies) == {"default/deny/rules[0]", "default/deny/rules[1]"}
    kept = deny.rules.policies["default/deny/rules[1]"].permissions[0]
    assert kept.WhichOneof("rule") == "destination_port" and kept.destination_port == 5432
    # ALLOW: a rule with an HTTP-only field matches nothing, so it is left out.
    assert set(allow.rules.policies) == {"default/allow/rules[0]"}
    assert deny.stat_prefix == "inbound_15006.deny." and allow.stat_prefix == "inbound_15006.allow."
    messages = {(p.resource, p.field, p.severity.value): p.message for p in tcp.problems}
    assert (
        "refuses every connection"
        in messages[("AuthorizationPolicy/default/deny", "spec.rules[1]", "warning")]
    )
    assert (
        "to[0].operation.methods"
        in messages[("AuthorizationPolicy/default/allow", "spec.rules[1]", "warning")]
    )
    assert (
        "matches nothing"
        in messages[("AuthorizationPolicy/default/allow", "spec.rules[1]", "warning")]
    )
    assert (
        "nothing is authenticated"
        in messages[("RequestAuthentication/default/jwt", "spec", "warning")]
    )
    # A dry-run policy on tcp: shadow rules only.
    dry = doc("AuthorizationPolicy", "dry", {"action": "DENY", "rules": [{}]})
    dry["metadata"]["annotations"] = {"istio.io/dry-run": "true"}
    (shadow,) = network_rbac(translate(state(dry), DB, MeshIdentity()))
    assert not shadow.HasField("rules") and set(shadow.shadow_rules.policies) == {
        "default/dry/rules[0]"
    }


def test_policies_that_apply_are_enforced_quietly_where_nothing_changes_their_meaning() -> None:
    mesh_wide = doc("AuthorizationPolicy", "all", ALLOW_ALL, "interlock-system")
    assert translate(state(mesh_wide), GATEWAY).problems == ()
    documents = (
        doc("AuthorizationPolicy", "deny", {"action": "DENY", "rules": [{}]}),
        doc("RequestAuthentication", "jwt", {"jwtRules": [{"issuer": "i", "jwks": JWKS}]}),
    )
    assert translate(state(*documents), BACKEND).problems == ()


def test_request_authentication_adds_the_jwt_filter_first() -> None:
    ra = doc(
        "RequestAuthentication",
        "jwt",
        {
            "selector": {"matchLabels": {"app": "backend"}},
            "jwtRules": [{"issuer": "i", "jwks": JWKS, "audiences": ["backend"]}],
        },
    )
    filters = inbound_filters(translate(state(ra), BACKEND))
    assert filters[0].name == "envoy.filters.http.jwt_authn"
    config = jwt_pb2.JwtAuthentication()
    filters[0].typed_config.Unpack(config)
    provider = config.providers["default/jwt/jwtRules[0]"]
    assert (provider.issuer, list(provider.audiences)) == ("i", ["backend"])
    assert provider.payload_in_metadata == "payload" and not provider.forward
    requirements = config.rules[0].requires.requires_any.requirements
    assert [r.WhichOneof("requires_type") for r in requirements] == [
        "provider_name",
        "allow_missing",  # no token passes; an invalid one is refused
    ]
    # An empty RequestAuthentication adds nothing.
    empty = doc("RequestAuthentication", "none", {})
    assert inbound_filters(translate(state(empty), BACKEND))[0].name == "interlock.authz.audit"
