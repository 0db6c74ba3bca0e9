"""VirtualService (networking.istio.io): how requests to a set of hosts are routed.

Supported: HTTP and TCP routes with the fields listed in docs/policies.md. TLS routes,
``exportTo``, delegation, direct responses and several newer fields are rejected as not
supported yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from interlock.model.errors import FieldError
from interlock.model.policy.common import (
    DESTINATION,
    HEADERS,
    PERCENT,
    STRING_MATCH,
    Destination,
    Headers,
    Percent,
    StringMatch,
    header_name,
    label_map,
    no_map,
    string_match,
)
from interlock.model.policy.hosts import dns_label_error, host_or_ip_error, hosts_overlap
from interlock.model.schema import (
    Bool,
    Duration,
    Errors,
    Field,
    Int,
    ListOf,
    MapOf,
    Obj,
    Port,
    Str,
    child,
    item,
)
from interlock.model.schema.values import HTTP_METHODS, header_name_error

MESH_GATEWAY = "mesh"

# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies (as Istio accepts them).
RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
REDIRECT_CODES = (301, 302, 303, 307, 308)


# --- HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HTTPMatchRequest:
    uri: StringMatch | None = None
    method: StringMatch | None = None
    headers: Mapping[str, StringMatch] = field(default_factory=no_map)
    query_params: Mapping[str, StringMatch] = field(default_factory=no_map)
    authority: StringMatch | None = None
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=no_map)
    ignore_uri_case: bool = False


@dataclass(frozen=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


@dataclass(frozen=True)
class HTTPRetry:
    attempts: int = 0
    per_try_timeout: dt.timedelta | None = None
    retry_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delay:
    fixed_delay: dt.timedelta
    percentage: Percent | None = None


@dataclass(frozen=True)
class Abort:
    http_status: int
    percentage: Percent | None = None


@dataclass(frozen=True)
class HTTPFaultInjection:
    delay: Delay | None = None
    abort: Abort | None = None


@dataclass(frozen=True)
class HTTPRewrite:
    uri: str | None = None
    authority: str | None = None


@dataclass(frozen=True)
class HTTPRedirect:
    uri: str | None = None
    authority: str | None = None
    redirect_code: int = 301


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: dt.timedelta | None = None
    allow_credentials: bool | None = None


@dataclass(frozen=True)
class HTTPRoute:
    """One HTTP rule: the first rule whose ``match`` (any of them; none means all) fits a
    request decides where it goes (``route``) or answers a ``redirect``."""

    name: str | None = None
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    rewrite: HTTPRewrite | None = None
    timeout: dt.timedelta | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirror_percentage: Percent | None = None
    headers: Headers | None = None
    cors_policy: CorsPolicy | None = None


# --- TCP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class L4MatchAttributes:
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=no_map)


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int | None = None


@dataclass(frozen=True)
class TCPRoute:
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@dataclass(frozen=True)
class VirtualService:
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()

    @property
    def applies_to_mesh(self) -> bool:
        """True when sidecars use it (no ``gateways``, or ``mesh`` among them)."""
        return not self.gateways or MESH_GATEWAY in self.gateways

    @property
    def gateway_refs(self) -> tuple[str, ...]:
        """The named gateways (``ns/name`` or ``name``), without ``mesh``."""
        return tuple(g for g in self.gateways if g != MESH_GATEWAY)


# --- rules that span fields ---------------------------------------------------------------


def check_weights(
    routes: Sequence[HTTPRouteDestination | RouteDestination], path: str, errors: Errors
) -> None:
    """Weights, when given, sum to 100; several destinations need weights."""
    weights = [r.weight for r in routes]
    if all(w is None for w in weights):
        if len(routes) > 1:
            errors.append(
                FieldError(path, "with several destinations, give each a weight (summing to 100)")
            )
        return
    total = sum(w or 0 for w in weights)
    if total != 100:
        errors.append(FieldError(path, f"the weights sum to {total}; they must sum to 100"))


def _check_retry(retry: HTTPRetry, path: str, errors: Errors) -> None:
    if retry.attempts == 0 and (retry.per_try_timeout is not None or retry.retry_on):
        errors.append(
            FieldError(
                child(path, "attempts"),
                "retries are configured but attempts is 0 (retries disabled); set attempts",
            )
        )


def _retry_on_error(value: str) -> str | None:
    for policy in value.split(","):
        policy = policy.strip()
        if policy in RETRY_ON:
            continue
        if policy.isdigit() and 100 <= int(policy) <= 599:
            continue
        return f"{policy!r} is not a retry policy; use HTTP status codes or " + ", ".join(
            sorted(RETRY_ON)
        )
    return None


class _RetryOn(Str):
    """``retryOn``: a comma-separated list, parsed to a tuple."""

    def __init__(self) -> None:
        super().__init__(check=_retry_on_error, non_empty=True, describe="a list of retry policies")

    def parse(self, value: object, path: str, errors: Errors) -> object:
        parsed = super().parse(value, path, errors)
        if isinstance(parsed, str):
            return tuple(p.strip() for p in parsed.split(","))
        return parsed


def _check_rewrite(rewrite: HTTPRewrite, path: str, errors: Errors) -> None:
    if rewrite.uri is None and rewrite.authority is None:
        errors.append(FieldError(path, "must set uri or authority"))


def _check_redirect(redirect: HTTPRedirect, path: str, errors: Errors) -> None:
    if redirect.uri is None and redirect.authority is None:
        errors.append(FieldError(path, "must set uri or authority"))
    if redirect.redirect_code not in REDIRECT_CODES:
        errors.append(
            FieldError(
                child(path, "redirectCode"),
                f"must be one of {', '.join(map(str, REDIRECT_CODES))} (Envoy's redirect codes)",
            )
        )


def _check_fault(fault: HTTPFaultInjection, path: str, errors: Errors) -> None:
    if fault.delay is None and fault.abort is None:
        errors.append(FieldError(path, "must set delay, abort or both"))


def _method_error(value: str) -> str | None:
    if value not in HTTP_METHODS:
        return f"{value!r} is not an HTTP method ({', '.join(sorted(HTTP_METHODS))})"
    return None


def _cors_header_error(value: str) -> str | None:
    return None if value == "*" else header_name_error(value)


def _check_http_route(route: HTTPRoute, path: str, errors: Errors) -> None:
    if route.redirect is not None:
        if route.route:
            errors.append(FieldError(path, "set route or redirect, not both"))
        if route.fault is not None:
            errors.append(FieldError(child(path, "fault"), "cannot be combined with redirect"))
        if route.rewrite is not None:
            errors.append(FieldError(child(path, "rewrite"), "cannot be combined with redirect"))
        # A redirect is answered by the proxy itself: nothing is sent upstream to time out,
        # retry or mirror.
        for name, value in (
            ("timeout", route.timeout),
            ("retries", route.retries),
            ("mirror", route.mirror),
            ("mirrorPercentage", route.mirror_percentage),
        ):
            if value is not None:
                errors.append(
                    FieldError(
                        child(path, name),
                        "has no effect with redirect (the proxy answers it; nothing goes "
                        "upstream); remove it",
                    )
                )
    elif not route.route:
        errors.append(FieldError(child(path, "route"), "is required (or a redirect)"))
    else:
        check_weights(route.route, child(path, "route"), errors)
    authority = route.rewrite.authority if route.rewrite else None
    request = route.headers.request if route.headers else None
    if authority and request and any(k.lower() in (":authority", "host") for k in request.set):
        errors.append(
            FieldError(
                child(path, "headers"),
                "the authority is already rewritten by rewrite.authority; set it once",
            )
        )


def _check_tcp_route(route: TCPRoute, path: str, errors: Errors) -> None:
    check_weights(route.route, child(path, "route"), errors)


def _gateway_ref_error(value: str) -> str | None:
    if value == MESH_GATEWAY:
        return None
    namespace, slash, name = value.rpartition("/")
    if slash and (message := dns_label_error(namespace, "gateway namespace")):
        return message
    return dns_label_error(name, "gateway name")


def _check_virtual_service(vs: VirtualService, path: str, errors: Errors) -> None:
    if not vs.http and not vs.tcp:
        errors.append(FieldError(path, "must have http or tcp routes"))
    for index, host in enumerate(vs.hosts):
        at = item(child(path, "hosts"), index)
        if host == "*" and vs.applies_to_mesh:
            errors.append(
                FieldError(at, "'*' is only allowed for virtual services bound to gateways")
            )
        for earlier in vs.hosts[:index]:
            if hosts_overlap(host, earlier):
                errors.append(FieldError(at, f"duplicates host {earlier!r}"))
                break
    seen: dict[str, int] = {}
    for index, route in enumerate(vs.http):
        if route.name is None:
            continue
        if route.name in seen:
            errors.append(
                FieldError(
                    child(item(child(path, "http"), index), "name"),
                    f"route name {route.name!r} is already used by http[{seen[route.name]}]",
                )
            )
        seen.setdefault(route.name, index)


# --- the schema ---------------------------------------------------------------------------

_HEADER_MATCHES = MapOf(header_name(), string_match(allow_empty=True))

HTTP_MATCH: Obj[HTTPMatchRequest] = Obj(
    HTTPMatchRequest,
    {
        "uri": STRING_MATCH,
        "method": STRING_MATCH,
        "headers": _HEADER_MATCHES,
        "queryParams": MapOf(Str(non_empty=True), string_match(allow_prefix=False)),
        "authority": STRING_MATCH,
        "port": Port(),
        "sourceLabels": label_map(),
        "ignoreUriCase": Bool(),
    },
    unsupported=["name", "scheme", "gateways", "withoutHeaders", "sourceNamespace", "statPrefix"],
)

HTTP_ROUTE_DESTINATION: Obj[HTTPRouteDestination] = Obj(
    HTTPRouteDestination,
    {
        "destination": Field(DESTINATION, required=True),
        "weight": Int(minimum=0, maximum=100),
        "headers": HEADERS,
    },
)

HTTP_RETRY: Obj[HTTPRetry] = Obj(
    HTTPRetry,
    {"attempts": Int(minimum=0), "perTryTimeout": Duration(), "retryOn": _RetryOn()},
    unsupported=["retryRemoteLocalities", "retryIgnorePreviousHosts", "backoff"],
    checks=[_check_retry],
)

DELAY: Obj[Delay] = Obj(
    Delay,
    {"fixedDelay": Field(Duration(), required=True), "percentage": PERCENT},
    unsupported={"exponentialDelay": "", "percent": "use percentage.value"},
)

ABORT: Obj[Abort] = Obj(
    Abort,
    {"httpStatus": Field(Int(minimum=200, maximum=599), required=True), "percentage": PERCENT},
    unsupported={"grpcStatus": "", "http2Error": "", "percent": "use percentage.value"},
)

FAULT: Obj[HTTPFaultInjection] = Obj(
    HTTPFaultInjection, {"delay": DELAY, "abort": ABORT}, checks=[_check_fault]
)

REWRITE: Obj[HTTPRewrite] = Obj(
    HTTPRewrite,
    {"uri": Str(non_empty=True), "authority": Str(non_empty=True)},
    unsupported=["uriRegexRewrite"],
    checks=[_check_rewrite],
)

REDIRECT: Obj[HTTPRedirect] = Obj(
    HTTPRedirect,
    {"uri": Str(non_empty=True), "authority": Str(non_empty=True), "redirectCode": Int()},
    unsupported=["port", "derivePort", "scheme"],
    checks=[_check_redirect],
)

CORS_POLICY: Obj[CorsPolicy] = Obj(
    CorsPolicy,
    {
        "allowOrigins": ListOf(STRING_MATCH),
        "allowMethods": ListOf(Str(check=_method_error)),
        "allowHeaders": ListOf(Str(check=_cors_header_error)),
        "exposeHeaders": ListOf(Str(check=_cors_header_error)),
        "maxAge": Duration(whole_seconds=True),
        "allowCredentials": Bool(),
    },
    unsupported={"allowOrigin": "use allowOrigins", "unmatchedPreflights": ""},
)

HTTP_ROUTE: Obj[HTTPRoute] = Obj(
    HTTPRoute,
    {
        "name": Str(non_empty=True),
        "match": ListOf(HTTP_MATCH),
        "route": ListOf(HTTP_ROUTE_DESTINATION),
        "redirect": REDIRECT,
        "rewrite": REWRITE,
        "timeout": Duration(),
        "retries": HTTP_RETRY,
        "fault": FAULT,
        "mirror": DESTINATION,
        "mirrorPercentage": PERCENT,
        "headers": HEADERS,
        "corsPolicy": CORS_POLICY,
    },
    unsupported={
        "directResponse": "",
        "delegate": "",
        "mirrors": "use mirror and mirrorPercentage",
        "mirrorPercent": "use mirrorPercentage",
        "mirror_percent": "use mirrorPercentage",
    },
    checks=[_check_http_route],
)

TCP_MATCH: Obj[L4MatchAttributes] = Obj(
    L4MatchAttributes,
    {"port": Port(), "sourceLabels": label_map()},
    unsupported=["destinationSubnets", "gateways", "sourceNamespace", "sourceSubnet"],
)

TCP_ROUTE: Obj[TCPRoute] = Obj(
    TCPRoute,
    {
        "match": ListOf(TCP_MATCH),
        "route": Field(
            ListOf(
                Obj(
                    RouteDestination,
                    {
                        "destination": Field(DESTINATION, required=True),
                        "weight": Int(minimum=0, maximum=100),
                    },
                ),
                min_items=1,
                what="destination",
            ),
            required=True,
        ),
    },
    checks=[_check_tcp_route],
)

SPEC: Obj[VirtualService] = Obj(
    VirtualService,
    {
        "hosts": Field(
            ListOf(Str(check=host_or_ip_error), min_items=1, what="host"), required=True
        ),
        "gateways": ListOf(Str(check=_gateway_ref_error)),
        "http": ListOf(HTTP_ROUTE),
        "tcp": ListOf(TCP_ROUTE),
    },
    unsupported={"tls": "TLS routes", "exportTo": ""},
    checks=[_check_virtual_service],
)
