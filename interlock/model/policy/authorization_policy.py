"""AuthorizationPolicy (security.istio.io): who may call which operations of a workload.

With action ALLOW a request must match some rule; with DENY a matching request is refused
(DENY is evaluated first); AUDIT only marks matching requests. A rule matches when every one
of its ``from``, ``to`` and ``when`` parts matches (each part: any of its entries).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from interlock.model.errors import FieldError
from interlock.model.policy.common import WORKLOAD_SELECTOR, WorkloadSelector
from interlock.model.schema import INVALID, Enum, Errors, Field, ListOf, Obj, Str, child
from interlock.model.schema.re2 import built_regex_error, literal
from interlock.model.schema.values import ip_or_cidr_error


class Action(enum.StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"


@dataclass(frozen=True)
class Source:
    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class From:
    source: Source


@dataclass(frozen=True)
class To:
    operation: Operation


@dataclass(frozen=True)
class Condition:
    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    from_: tuple[From, ...] = ()
    to: tuple[To, ...] = ()
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class AuthorizationPolicy:
    """No ``rules`` with ALLOW: nothing is allowed; ``rules: [{}]``: everything is."""

    selector: WorkloadSelector | None = None
    action: Action = Action.ALLOW
    rules: tuple[Rule, ...] = ()
    #: Whether ``rules`` was given at all (Istio tells "absent" from "empty" for DENY).
    has_rules: bool = False


#: Istio's annotation for a policy that is evaluated and reported but not enforced.
DRY_RUN_ANNOTATION = "istio.io/dry-run"


def is_dry_run(annotations: Mapping[str, str]) -> bool:
    """Whether a policy with these annotations is a dry run (see :func:`annotation_errors`)."""
    return annotations.get(DRY_RUN_ANNOTATION) == "true"


def annotation_errors(annotations: Mapping[str, str], spec: object, path: str) -> list[FieldError]:
    """``istio.io/dry-run`` is ``"true"`` or ``"false"``, and only on ALLOW and DENY policies
    (as in Istio: an AUDIT policy enforces nothing to begin with)."""
    value = annotations.get(DRY_RUN_ANNOTATION)
    if value is None:
        return []
    at = f'{path}["{DRY_RUN_ANNOTATION}"]'
    if value not in ("true", "false"):
        return [FieldError(at, f'{value!r}: write "true" or "false"')]
    action = spec.get("action", "ALLOW") if isinstance(spec, Mapping) else "ALLOW"
    if value == "true" and action == Action.AUDIT.value:
        return [FieldError(at, "a dry run applies to ALLOW and DENY policies, not AUDIT")]
    return []


# --- condition keys -----------------------------------------------------------------------

_BRACKETED = re.compile(r"^(request\.headers|request\.auth\.claims)((\[[^\[\]]+\])+)$")
_PLAIN_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "destination.ip",
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.port",
        "connection.sni",
    }
)
_IP_KEYS = frozenset({"source.ip", "remote.ip", "destination.ip"})
CONDITION_KEYS = (
    "request.headers[<name>]",
    "request.auth.claims[<claim>] (nested: [a][b])",
    *sorted(_PLAIN_KEYS),
)


def condition_key_error(key: str) -> str | None:
    if key in _PLAIN_KEYS:
        return None
    m = _BRACKETED.match(key)
    if m is not None:
        if m.group(1) == "request.headers" and m.group(2).count("[") > 1:
            return f"{key!r}: request.headers takes one header name"
        return None
    if key.startswith("experimental."):
        return f"{key!r}: experimental keys are not supported by Interlock yet"
    if key.startswith(("request.headers", "request.auth.claims")):
        return f"{key!r}: write the name in brackets, e.g. request.headers[x-token]"
    return f"{key!r} is not a condition key Interlock knows; use one of: " + ", ".join(
        CONDITION_KEYS
    )


def _port_value_error(value: str) -> str | None:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        return f"{value!r} is not a port number from 1 to 65535"
    return None


def _path_error(value: str) -> str | None:
    if "{" in value or "}" in value:
        return f"{value!r}: path templates ({{*}}, {{**}}) are not supported by Interlock yet"
    return _match_value_error(value)


def _match_value_error(value: str) -> str | None:
    """Istio's string values match exactly, by prefix (``abc*``), suffix (``*abc``) or
    presence (``*``)."""
    if "*" in value[1:-1]:
        return f"{value!r}: '*' may only start or end a value (prefix, suffix or presence)"
    return None


def _host_error(value: str) -> str | None:
    """A host is matched (case-insensitively, any port) by a regex: the longest form of it
    must stay within Envoy's RE2 program size."""
    text = value.strip("*")
    return _match_value_error(value) or built_regex_error(
        f"(?i).*{literal(text)}(:[0-9]+)?", f"host {value!r}"
    )


def _namespace_error(value: str) -> str | None:
    """A namespace is matched in the peer's SPIFFE ID by a regex (see translate/authz)."""
    text = value.strip("*")
    return _match_value_error(value) or built_regex_error(
        f"spiffe://[^/]+/ns/[^/]*{literal(text)}[^/]*/sa/[^/]+", f"namespace {value!r}"
    )


def _check_condition(condition: Condition, path: str, errors: Errors) -> None:
    if not condition.values and not condition.not_values:
        errors.append(FieldError(path, f"set values or notValues for key {condition.key!r}"))
        return
    if condition.key in _IP_KEYS:
        check = ip_or_cidr_error
    elif condition.key == "destination.port":
        check = _port_value_error
    else:
        check = _match_value_error
    for name in ("values", "notValues"):
        attr = "values" if name == "values" else "not_values"
        for index, value in enumerate(getattr(condition, attr)):
            if message := check(value):
                errors.append(FieldError(f"{child(path, name)}[{index}]", message))


def _values(check: object = _match_value_error) -> ListOf:
    return ListOf(Str(non_empty=True, check=check))  # type: ignore[arg-type]


SOURCE: Obj[Source] = Obj(
    Source,
    {
        "principals": _values(),
        "notPrincipals": _values(),
        "requestPrincipals": _values(),
        "notRequestPrincipals": _values(),
        "namespaces": _values(_namespace_error),
        "notNamespaces": _values(_namespace_error),
    },
    unsupported=[
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
        "serviceAccounts",
        "notServiceAccounts",
    ],
    non_empty=True,
)

OPERATION: Obj[Operation] = Obj(
    Operation,
    {
        "hosts": _values(_host_error),
        "notHosts": _values(_host_error),
        "ports": _values(_port_value_error),
        "notPorts": _values(_port_value_error),
        "methods": _values(),
        "notMethods": _values(),
        "paths": _values(_path_error),
        "notPaths": _values(_path_error),
    },
    non_empty=True,
)

CONDITION: Obj[Condition] = Obj(
    Condition,
    {
        "key": Field(Str(check=condition_key_error, non_empty=True), required=True),
        "values": ListOf(Str(non_empty=True)),
        "notValues": ListOf(Str(non_empty=True)),
    },
    checks=[_check_condition],
)

RULE: Obj[Rule] = Obj(
    Rule,
    {
        "from": Field(
            ListOf(Obj(From, {"source": Field(SOURCE, required=True)}), min_items=1, what="source"),
            attr="from_",
        ),
        "to": ListOf(
            Obj(To, {"operation": Field(OPERATION, required=True)}), min_items=1, what="operation"
        ),
        "when": ListOf(CONDITION, min_items=1, what="condition"),
    },
)


class _PolicyObj(Obj[AuthorizationPolicy]):
    """Records whether ``rules`` was present, and applies Istio's rule that a DENY policy
    without rules is a mistake."""

    def parse(self, value: object, path: str, errors: Errors) -> object:
        parsed = super().parse(value, path, errors)
        if not isinstance(parsed, AuthorizationPolicy) or not isinstance(value, Mapping):
            return parsed
        has_rules = value.get("rules") is not None
        if parsed.action is Action.DENY and not has_rules:
            errors.append(
                FieldError(
                    child(path, "rules"),
                    "a DENY policy without rules never matches; add rules "
                    "(an empty rule {} matches every request)",
                )
            )
            return INVALID
        return replace(parsed, has_rules=has_rules)


SPEC: Obj[AuthorizationPolicy] = _PolicyObj(
    AuthorizationPolicy,
    {
        "selector": WORKLOAD_SELECTOR,
        "action": Enum(Action, unsupported=["CUSTOM"]),
        "rules": ListOf(RULE),
    },
    unsupported={"provider": "CUSTOM actions are not supported", "targetRef": "", "targetRefs": ""},
)
