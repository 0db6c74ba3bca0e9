"""AuthorizationPolicy on tcp workloads → Envoy's RBAC *network* filter, with Istio's semantics.

A tcp connection has a peer identity, addresses, a port and an SNI, but no HTTP request. The
inbound listener of a tcp sidecar gets up to three RBAC network filters before its tcp proxy,
in the HTTP side's order — ``audit`` (LOG), ``deny``, ``allow`` — holding the applicable
policies' rules (and the dry-run ones as ``shadow_rules``). Network filters have no per-route
configuration, so applying a policy there changes the listener (as it does in Istio).

Rules that use fields only an HTTP request has (``requestPrincipals``, ``hosts``, ``methods``,
``paths``, ``request.*`` conditions) follow Istio's rule for tcp workloads, failing closed:

- in an ALLOW (or AUDIT) policy such a rule matches nothing (an ALLOW policy whose rules all
  do so allows nothing);
- in a DENY policy those fields are dropped, so the rule refuses every connection the rest of it
  matches.

Each such rule is reported as a warning of its policy, so the change of meaning is never quiet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from interlock.model import Problem, Severity
from interlock.model.policy.authorization_policy import (
    Action,
    AuthorizationPolicy,
    Condition,
    Rule,
    is_dry_run,
)
from interlock.model.policy.policies import Policy
from interlock.xds.translate.authz import rule_policy
from interlock.xds.translate.common import typed

NETWORK_RBAC = "envoy.filters.network.rbac"
_ENVOY_ACTION = {
    Action.AUDIT: rbac_pb2.RBAC.LOG,
    Action.DENY: rbac_pb2.RBAC.DENY,
    Action.ALLOW: rbac_pb2.RBAC.ALLOW,
}
_HTTP_SOURCE = (
    ("requestPrincipals", "request_principals"),
    ("notRequestPrincipals", "not_request_principals"),
)
_HTTP_OPERATION = (
    ("hosts", "hosts"),
    ("notHosts", "not_hosts"),
    ("methods", "methods"),
    ("notMethods", "not_methods"),
    ("paths", "paths"),
    ("notPaths", "not_paths"),
)


def _http_condition(condition: Condition) -> bool:
    return condition.key.startswith(("request.", "request["))


def http_only_fields(rule: Rule) -> list[str]:
    """The fields of ``rule`` only an HTTP request has, as paths under the rule."""
    found: list[str] = []
    for i, f in enumerate(rule.from_):
        found += [f"from[{i}].source.{n}" for n, attr in _HTTP_SOURCE if getattr(f.source, attr)]
    for i, t in enumerate(rule.to):
        found += [
            f"to[{i}].operation.{n}" for n, attr in _HTTP_OPERATION if getattr(t.operation, attr)
        ]
    found += [f"when[{i}] ({c.key})" for i, c in enumerate(rule.when) if _http_condition(c)]
    return found


def _without_http(rule: Rule) -> Rule:
    """``rule`` with its HTTP-only fields dropped (what a DENY rule means on tcp)."""
    return replace(
        rule,
        from_=tuple(
            replace(f, source=replace(f.source, request_principals=(), not_request_principals=()))
            for f in rule.from_
        ),
        to=tuple(
            replace(t, operation=replace(t.operation, **{attr: () for _, attr in _HTTP_OPERATION}))
            for t in rule.to
        ),
        when=tuple(c for c in rule.when if not _http_condition(c)),
    )


def _tcp_rules(
    policy: Policy[AuthorizationPolicy], where: str
) -> tuple[list[tuple[int, Rule]], list[Problem]]:
    """The rules of ``policy`` as a tcp workload reads them (with their index), and a warning
    for each rule whose meaning changed."""
    rules: list[tuple[int, Rule]] = []
    problems: list[Problem] = []
    deny = policy.spec.action is Action.DENY
    for index, rule in enumerate(policy.spec.rules):
        fields = http_only_fields(rule)
        if not fields:
            rules.append((index, rule))
            continue
        if deny:
            rules.append((index, _without_http(rule)))
            meaning = "they are ignored, so the rule refuses every connection the rest matches"
        else:
            meaning = "the rule matches nothing"
        problems.append(
            Problem(
                policy.ref,
                f"spec.rules[{index}]",
                f"{', '.join(fields)}: only HTTP requests have these, and {where} is tcp; "
                f"{meaning} (Istio's rule for tcp workloads)",
                Severity.WARNING,
            )
        )
    return rules, problems


def _rbac(
    action: Action,
    policies: Sequence[tuple[Policy[AuthorizationPolicy], list[tuple[int, Rule]]]],
    trust_domain: str,
) -> rbac_pb2.RBAC:
    rbac = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    for policy, rules in policies:
        for index, rule in rules:
            name = f"{policy.namespace}/{policy.name}/rules[{index}]"
            rbac.policies[name].CopyFrom(rule_policy(rule, trust_domain))
    return rbac


def network_filters(
    policies: Sequence[Policy[AuthorizationPolicy]],
    trust_domain: str,
    stat_prefix: str,
    where: str,
) -> tuple[list[listener_components_pb2.Filter], list[Problem]]:
    """The RBAC network filters (audit, deny, allow; only the actions ``policies`` use) for a
    tcp workload, and the warnings of rules whose meaning tcp changes."""
    problems: list[Problem] = []
    read: list[tuple[Policy[AuthorizationPolicy], list[tuple[int, Rule]]]] = []
    for policy in policies:
        rules, found = _tcp_rules(policy, where)
        read.append((policy, rules))
        problems += found
    out: list[listener_components_pb2.Filter] = []
    for action in (Action.AUDIT, Action.DENY, Action.ALLOW):
        of_action = [(p, r) for p, r in read if p.spec.action is action]
        if not of_action:
            continue
        enforced = [(p, r) for p, r in of_action if not is_dry_run(p.resource.annotations)]
        dry_run = [(p, r) for p, r in of_action if is_dry_run(p.resource.annotations)]
        name = action.value.lower()
        config = network_rbac_pb2.RBAC(
            stat_prefix=f"{stat_prefix}.{name}.", shadow_rules_stat_prefix=f"{name}."
        )
        if enforced:
            config.rules.CopyFrom(_rbac(action, enforced, trust_domain))
        if dry_run:
            config.shadow_rules.CopyFrom(_rbac(action, dry_run, trust_domain))
        out.append(listener_components_pb2.Filter(name=NETWORK_RBAC, typed_config=typed(config)))
    return out, problems


def guard_listener(
    listener: listener_pb2.Listener, rbac_filters: Sequence[listener_components_pb2.Filter]
) -> None:
    """Put ``rbac_filters`` first in every filter chain of ``listener`` (before the tcp proxy)."""
    for chain in listener.filter_chains:
        existing = list(chain.filters)
        del chain.filters[:]
        chain.filters.extend([*rbac_filters, *existing])
