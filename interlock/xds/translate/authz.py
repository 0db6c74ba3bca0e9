"""AuthorizationPolicy → Envoy's RBAC HTTP filter, on the inbound side of a sidecar.

The inbound connection manager always holds three RBAC filters, in this order, each doing
nothing by itself (see :mod:`.route_filters`): ``audit`` (action LOG), ``deny`` and ``allow``.
The policies that apply to a workload (:mod:`.workload_policies`) switch them on in the inbound
virtual host's ``typed_per_filter_config`` (``RBACPerRoute``, served over RDS), so applying or
removing a policy never replaces the listener. Istio's semantics follow from the order:

- a request matching a DENY policy's rule is refused (403) before anything else;
- if any ALLOW policy applies, a request must match one of their rules (ALLOW policies
  without rules contribute none, so they alone allow nothing);
- AUDIT policies mark matching requests (RBAC's LOG action sets the dynamic metadata
  ``envoy.common: access_log_hint``) and allow everything.

Each rule becomes one RBAC policy (``<namespace>/<name>/rules[<i>]``): its principals are the
rule's ``from`` and caller-side ``when`` conditions, its permissions the rule's ``to`` and
destination-side ``when`` conditions. Peer identities (``principals``, ``namespaces``,
``source.principal``, ``source.namespace``) match the URI SAN of the peer certificate: a
plain-text caller has none, so they never match it (and their ``not...`` forms always do).
Request principals and claims match what ``jwt_authn`` wrote into dynamic metadata
(:mod:`.jwt`); without a valid token they never match.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.rbac.v3.rbac_pb2 import RBAC as _RBAC
from envoy.config.rbac.v3.rbac_pb2 import Permission as _Permission
from envoy.config.rbac.v3.rbac_pb2 import Principal as _Principal
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, string_pb2, value_pb2

from interlock.model import MeshState, Proxy
from interlock.model.policy.authorization_policy import (
    Action,
    AuthorizationPolicy,
    Condition,
    Operation,
    Rule,
    Source,
    is_dry_run,
)
from interlock.model.policy.policies import Policy
from interlock.xds.translate import route_filters
from interlock.xds.translate.authz_match import (
    Kind,
    Pattern,
    namespace_matcher,
    pattern,
    principal_matcher,
    re2_escape,
    regex_matcher,
    request_principal_alternatives,
    string_matcher,
)
from interlock.xds.translate.common import uint32
from interlock.xds.translate.jwt import JWT_AUTHN, PAYLOAD_KEY
from interlock.xds.translate.workload_policies import applicable

#: The RBAC filter each action goes to (see :mod:`.route_filters`).
FILTER_OF_ACTION = {
    Action.AUDIT: route_filters.RBAC_AUDIT,
    Action.DENY: route_filters.RBAC_DENY,
    Action.ALLOW: route_filters.RBAC_ALLOW,
}
_ENVOY_ACTION = {Action.AUDIT: _RBAC.LOG, Action.DENY: _RBAC.DENY, Action.ALLOW: _RBAC.ALLOW}

_CLAIMS = re.compile(r"\[([^\[\]]+)\]")
_PRINCIPAL_KEYS = {
    "source.principal",
    "source.namespace",
    "source.ip",
    "remote.ip",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
}
_PERMISSION_KEYS = {"destination.ip", "destination.port", "connection.sni"}

M = TypeVar("M", _Principal, _Permission)


# --- combinators --------------------------------------------------------------------------


def _any_principal() -> _Principal:
    return _Principal(any=True)


def _or_ids(ids: Sequence[_Principal]) -> _Principal:
    if not ids:  # nothing can match
        return _Principal(not_id=_any_principal())
    if len(ids) == 1:
        return ids[0]
    return _Principal(or_ids=_Principal.Set(ids=list(ids)))


def _and_ids(ids: Sequence[_Principal]) -> _Principal:
    if not ids:
        return _any_principal()
    if len(ids) == 1:
        return ids[0]
    return _Principal(and_ids=_Principal.Set(ids=list(ids)))


def _or_rules(rules: Sequence[_Permission]) -> _Permission:
    if not rules:
        return _Permission(not_rule=_Permission(any=True))
    if len(rules) == 1:
        return rules[0]
    return _Permission(or_rules=_Permission.Set(rules=list(rules)))


def _and_rules(rules: Sequence[_Permission]) -> _Permission:
    if not rules:
        return _Permission(any=True)
    if len(rules) == 1:
        return rules[0]
    return _Permission(and_rules=_Permission.Set(rules=list(rules)))


def _values_and_not(
    values: Iterable[str],
    not_values: Iterable[str],
    one: Callable[[str], M],
    either: Callable[[Sequence[M]], M],
    negate: Callable[[M], M],
) -> list[M]:
    """``values`` (any of them) and not any of ``not_values``: zero, one or two matchers."""
    parts: list[M] = []
    values, not_values = list(values), list(not_values)
    if values:
        parts.append(either([one(v) for v in values]))
    if not_values:
        parts.append(negate(either([one(v) for v in not_values])))
    return parts


def _principals(
    values: Iterable[str], not_values: Iterable[str], one: Callable[[str], _Principal]
) -> list[_Principal]:
    return _values_and_not(values, not_values, one, _or_ids, lambda p: _Principal(not_id=p))


def _permissions(
    values: Iterable[str], not_values: Iterable[str], one: Callable[[str], _Permission]
) -> list[_Permission]:
    return _values_and_not(values, not_values, one, _or_rules, lambda p: _Permission(not_rule=p))


# --- leaves -------------------------------------------------------------------------------


def _authenticated(matcher: string_pb2.StringMatcher) -> _Principal:
    return _Principal(authenticated=_Principal.Authenticated(principal_name=matcher))


def _claim_matcher(path: Sequence[str], p: Pattern) -> metadata_pb2.MetadataMatcher:
    """A claim of the validated JWT (``jwt_authn``'s dynamic metadata) matching ``p``: as a
    string, or as one element of a list (``aud``, ``groups``, ...)."""
    if p.kind is Kind.PRESENT:
        value = value_pb2.ValueMatcher(present_match=True)
    else:
        text = value_pb2.ValueMatcher(string_match=string_matcher(p))
        value = value_pb2.ValueMatcher(
            or_match=value_pb2.OrMatcher(
                value_matchers=[
                    text,
                    value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=text)),
                ]
            )
        )
    return metadata_pb2.MetadataMatcher(
        filter=JWT_AUTHN,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in (PAYLOAD_KEY, *path)],
        value=value,
    )


def _jwt_claim(matcher: metadata_pb2.MetadataMatcher) -> _Principal:
    """The request's dynamic metadata matches ``matcher`` (``Principal.metadata`` is
    deprecated in favour of this)."""
    return _Principal(
        sourced_metadata=rbac_pb2.SourcedMetadata(
            metadata_matcher=matcher, metadata_source=rbac_pb2.MetadataSource.DYNAMIC
        )
    )


def _claim(path: Sequence[str], value: str) -> _Principal:
    return _jwt_claim(_claim_matcher(path, pattern(value)))


def _request_principal(value: str) -> _Principal:
    alternatives = request_principal_alternatives(value)
    return _or_ids(
        [
            _and_ids([_jwt_claim(_claim_matcher([claim], p)) for claim, p in alt])
            for alt in alternatives
        ]
    )


def _cidr(value: str) -> address_pb2.CidrRange:
    network = ipaddress.ip_network(value, strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address), prefix_len=uint32(network.prefixlen)
    )


def _header(name: str, value: str) -> rc.HeaderMatcher:
    p = pattern(value)
    if p.kind is Kind.PRESENT:
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=string_matcher(p))


def _host(value: str) -> rc.HeaderMatcher:
    """``:authority`` matching an Istio host value, ignoring case and any ``:port``."""
    p = pattern(value)
    if p.kind is Kind.PRESENT:
        return rc.HeaderMatcher(name=":authority", present_match=True)
    text = re2_escape(p.text)
    port = "(:[0-9]+)?"
    expression = {
        Kind.EXACT: f"(?i){text}{port}",
        Kind.PREFIX: f"(?i){text}.*",
        Kind.SUFFIX: f"(?i).*{text}{port}",
    }[p.kind]
    return rc.HeaderMatcher(name=":authority", string_match=regex_matcher(expression))


def _path(value: str) -> _Permission:
    p = pattern(value)
    if p.kind is Kind.PRESENT:
        return _Permission(any=True)
    return _Permission(url_path=path_pb2.PathMatcher(path=string_matcher(p)))


def _method(value: str) -> _Permission:
    p = pattern(value)
    if p.kind is Kind.PRESENT:
        return _Permission(any=True)
    return _Permission(header=rc.HeaderMatcher(name=":method", string_match=string_matcher(p)))


# --- rules --------------------------------------------------------------------------------


def _source(source: Source, trust_domain: str) -> _Principal:
    parts = [
        *_principals(
            source.principals,
            source.not_principals,
            lambda v: _authenticated(principal_matcher(v, trust_domain)),
        ),
        *_principals(source.request_principals, source.not_request_principals, _request_principal),
        *_principals(
            source.namespaces,
            source.not_namespaces,
            lambda v: _authenticated(namespace_matcher(v)),
        ),
    ]
    return _and_ids(parts)


def _operation(operation: Operation) -> _Permission:
    parts = [
        *_permissions(operation.hosts, operation.not_hosts, lambda v: _Permission(header=_host(v))),
        *_permissions(
            operation.ports,
            operation.not_ports,
            lambda v: _Permission(destination_port=int(v)),
        ),
        *_permissions(operation.methods, operation.not_methods, _method),
        *_permissions(operation.paths, operation.not_paths, _path),
    ]
    return _and_rules(parts)


def _claim_path(key: str) -> list[str]:
    return _CLAIMS.findall(key[len("request.auth.claims") :])


def _condition_principal(key: str, trust_domain: str) -> Callable[[str], _Principal]:
    if key.startswith("request.headers["):
        name = key[len("request.headers[") : -1]
        return lambda v: _Principal(header=_header(name, v))
    if key.startswith("request.auth.claims["):
        path = _claim_path(key)
        return lambda v: _claim(path, v)
    return {
        "source.principal": lambda v: _authenticated(principal_matcher(v, trust_domain)),
        "source.namespace": lambda v: _authenticated(namespace_matcher(v)),
        "source.ip": lambda v: _Principal(direct_remote_ip=_cidr(v)),
        "remote.ip": lambda v: _Principal(remote_ip=_cidr(v)),
        "request.auth.principal": _request_principal,
        "request.auth.audiences": lambda v: _claim(["aud"], v),
        "request.auth.presenter": lambda v: _claim(["azp"], v),
    }[key]


def _condition_permission(key: str) -> Callable[[str], _Permission]:
    return {
        "destination.ip": lambda v: _Permission(destination_ip=_cidr(v)),
        "destination.port": lambda v: _Permission(destination_port=int(v)),
        "connection.sni": lambda v: _Permission(requested_server_name=string_matcher(pattern(v))),
    }[key]


def _is_principal_key(key: str) -> bool:
    return key in _PRINCIPAL_KEYS or key.startswith(("request.headers[", "request.auth.claims["))


def _when(
    conditions: Sequence[Condition], trust_domain: str
) -> tuple[list[_Principal], list[_Permission]]:
    principals: list[_Principal] = []
    permissions: list[_Permission] = []
    for c in conditions:
        if _is_principal_key(c.key):
            principals += _principals(
                c.values, c.not_values, _condition_principal(c.key, trust_domain)
            )
        else:
            permissions += _permissions(c.values, c.not_values, _condition_permission(c.key))
    return principals, permissions


def rule_policy(rule: Rule, trust_domain: str) -> rbac_pb2.Policy:
    """One Istio rule as one RBAC policy: each of ``from``, ``to`` and ``when`` must match (each
    by any of its entries; every ``when`` condition must hold)."""
    when_principals, when_permissions = _when(rule.when, trust_domain)
    principals = list(when_principals)
    if rule.from_:
        principals.insert(0, _or_ids([_source(f.source, trust_domain) for f in rule.from_]))
    permissions = list(when_permissions)
    if rule.to:
        permissions.insert(0, _or_rules([_operation(t.operation) for t in rule.to]))
    return rbac_pb2.Policy(principals=[_and_ids(principals)], permissions=[_and_rules(permissions)])


def _rbac(
    action: Action, policies: Sequence[Policy[AuthorizationPolicy]], trust_domain: str
) -> _RBAC:
    rbac = _RBAC(action=_ENVOY_ACTION[action])
    for policy in policies:
        for index, rule in enumerate(policy.spec.rules):
            name = f"{policy.namespace}/{policy.name}/rules[{index}]"
            rbac.policies[name].CopyFrom(rule_policy(rule, trust_domain))
    return rbac


def per_route_configs(
    policies: Sequence[Policy[AuthorizationPolicy]], trust_domain: str
) -> dict[str, http_rbac_pb2.RBACPerRoute]:
    """filter name → its per-route configuration, for the actions ``policies`` use.

    A dry-run policy (``istio.io/dry-run: "true"``) goes to its action's ``shadow_rules``, as
    Istio does: Envoy evaluates it, counts and records the result (see
    :data:`~.route_filters.SHADOW_STAT_PREFIX`), and enforces nothing. An action with only
    dry-run policies has no ``rules``, so its filter lets everything through."""
    configs: dict[str, http_rbac_pb2.RBACPerRoute] = {}
    for action in (Action.AUDIT, Action.DENY, Action.ALLOW):
        of_action = [p for p in policies if p.spec.action is action]
        if not of_action:
            continue
        enforced = [p for p in of_action if not is_dry_run(p.resource.annotations)]
        dry_run = [p for p in of_action if is_dry_run(p.resource.annotations)]
        rbac = http_rbac_pb2.RBAC()
        if enforced:
            rbac.rules.CopyFrom(_rbac(action, enforced, trust_domain))
        if dry_run:
            rbac.shadow_rules.CopyFrom(_rbac(action, dry_run, trust_domain))
        configs[FILTER_OF_ACTION[action]] = http_rbac_pb2.RBACPerRoute(rbac=rbac)
    return configs


def applicable_policies(
    state: MeshState, proxy: Proxy, root_namespace: str
) -> list[Policy[AuthorizationPolicy]]:
    """The AuthorizationPolicies that apply to ``proxy``'s workload, oldest first."""
    return applicable(state.policies.authorization_policies, proxy, root_namespace)
