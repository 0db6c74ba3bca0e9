"""VirtualService HTTP rules as Envoy routes: matches, destinations and weights, timeouts,
retries, faults, mirroring, rewrites, redirects, header changes and CORS.

One rule becomes one route per ``match`` (Envoy routes have one match each), in order, so the
first rule that matches wins as in Istio. A match that cannot hold for this proxy (its
``sourceLabels`` are not the proxy's, its ``port`` is not the one the routes serve) is left
out; a rule left without matches is left out. Destinations that name nothing with a cluster
are left out (the policy's problems say why); a rule left without destinations answers 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2

from interlock.model.policy.common import HeaderOperations, Percent, StringMatch
from interlock.model.policy.policies import Policy
from interlock.model.policy.virtual_service import (
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
    VirtualService,
)
from interlock.xds import naming
from interlock.xds.translate import route_filters
from interlock.xds.translate.common import boolean, disabled, typed, uint32
from interlock.xds.translate.destinations import Destinations
from interlock.xds.translate.routes import HOST_SELECTION_ATTEMPTS, default_retry_policy
from interlock.xds.translate.traffic_policy import duration

ISTIO_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled")
"""Istio's retry conditions when ``retries.retryOn`` is not given (plus status 503)."""
RETRIABLE_STATUS_CODES = "retriable-status-codes"
NO_DESTINATION_STATUS = 503

_HVO = base_pb2.HeaderValueOption
_REDIRECT_CODES = {
    301: rc.RedirectAction.RedirectResponseCode.MOVED_PERMANENTLY,
    302: rc.RedirectAction.RedirectResponseCode.FOUND,
    303: rc.RedirectAction.RedirectResponseCode.SEE_OTHER,
    307: rc.RedirectAction.RedirectResponseCode.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.RedirectResponseCode.PERMANENT_REDIRECT,
}


@dataclass(frozen=True)
class RouteScope:
    """What the routes are made for: the port requests arrive for (``match.port``) and the
    labels of the proxy that makes them (``match.sourceLabels``)."""

    port: int | None
    labels: Mapping[str, str]


# --- matches ------------------------------------------------------------------------------


def applicable(match: HTTPMatchRequest, scope: RouteScope) -> bool:
    """True when ``match`` can hold for requests through this proxy on ``scope.port``."""
    if match.port is not None and scope.port is not None and match.port != scope.port:
        return False
    return all(scope.labels.get(k) == v for k, v in match.source_labels.items())


def string_matcher(match: StringMatch, ignore_case: bool = False) -> string_pb2.StringMatcher:
    if match.exact is not None:
        return string_pb2.StringMatcher(exact=match.exact, ignore_case=ignore_case)
    if match.prefix is not None:
        return string_pb2.StringMatcher(prefix=match.prefix, ignore_case=ignore_case)
    regex = f"(?i){match.regex}" if ignore_case else str(match.regex)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex))


def _header(name: str, match: StringMatch) -> rc.HeaderMatcher:
    if match.exact is None and match.prefix is None and match.regex is None:
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=string_matcher(match))


def route_match(match: HTTPMatchRequest | None) -> rc.RouteMatch:
    """``match`` as an Envoy route match (``None``: every request)."""
    result = rc.RouteMatch()
    uri = match.uri if match is not None else None
    if uri is None or match is None:
        result.prefix = "/"
    elif uri.exact is not None:
        result.path = uri.exact
    elif uri.prefix is not None:
        result.prefix = uri.prefix
    else:
        regex = f"(?i){uri.regex}" if match.ignore_uri_case else str(uri.regex)
        result.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=regex))
    if match is None:
        return result
    if match.ignore_uri_case and uri is not None and uri.regex is None:
        result.case_sensitive.CopyFrom(boolean(False))
    if match.method is not None:
        result.headers.append(_header(":method", match.method))
    if match.authority is not None:
        result.headers.append(_header(":authority", match.authority))
    for name, header in sorted(match.headers.items()):
        result.headers.append(_header(name.lower(), header))
    for name, param in sorted(match.query_params.items()):
        result.query_parameters.append(
            rc.QueryParameterMatcher(name=name, string_match=string_matcher(param))
        )
    return result


# --- actions ------------------------------------------------------------------------------


def fraction(percent: Percent | float | None) -> percent_pb2.FractionalPercent:
    """A percentage as a fraction per million (``None``: all of them)."""
    value = 100.0 if percent is None else percent if isinstance(percent, float) else percent.value
    return percent_pb2.FractionalPercent(
        numerator=round(value * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


@dataclass
class HeaderChanges:
    add: list[base_pb2.HeaderValueOption]
    remove: list[str]
    authority: str | None = None


def header_changes(ops: HeaderOperations | None, *, request: bool) -> HeaderChanges:
    """``set`` overwrites, ``add`` appends, ``remove`` removes; a request's ``host`` set is an
    authority rewrite."""
    changes = HeaderChanges([], [])
    if ops is None:
        return changes
    for name, value in sorted(ops.set.items()):
        if request and name.lower() in ("host", ":authority"):
            changes.authority = value
            continue
        changes.add.append(
            _HVO(
                header=base_pb2.HeaderValue(key=name, value=value),
                append_action=_HVO.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        )
    for name, value in sorted(ops.add.items()):
        changes.add.append(
            _HVO(
                header=base_pb2.HeaderValue(key=name, value=value),
                append_action=_HVO.HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD,
            )
        )
    changes.remove.extend(ops.remove)
    return changes


def retry_policy(retry: HTTPRetry | None) -> rc.RetryPolicy | None:
    """Istio's retries: without ``retries``, the mesh default (connection failures only, see
    :func:`default_retry_policy`); ``attempts: 0`` none; otherwise ``attempts`` retries on
    ``retryOn`` (default: connection failures and 503), each on another host when there is
    one."""
    if retry is None:
        return default_retry_policy()
    if retry.attempts == 0:
        return None
    conditions = list(retry.retry_on) or [*ISTIO_RETRY_ON, RETRIABLE_STATUS_CODES, "503"]
    codes = [int(c) for c in conditions if c.isdigit()]
    names = [c for c in conditions if not c.isdigit()]
    if codes and RETRIABLE_STATUS_CODES not in names:
        names.append(RETRIABLE_STATUS_CODES)
    policy = rc.RetryPolicy(
        retry_on=",".join(names),
        num_retries=uint32(retry.attempts),
        retriable_status_codes=codes,
        host_selection_retry_max_attempts=HOST_SELECTION_ATTEMPTS,
    )
    # Retry on another host when there is one (Envoy's previous_hosts predicate).
    policy.retry_host_predicate.extend(default_retry_policy().retry_host_predicate)
    if retry.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(retry.per_try_timeout))
    return policy


def fault_config(fault: HTTPFaultInjection) -> fault_pb2.HTTPFault:
    """The fault filter's per-route configuration (a missing percentage means 100%)."""
    config = fault_pb2.HTTPFault()
    if fault.delay is not None:
        config.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=duration(fault.delay.fixed_delay),
                percentage=fraction(fault.delay.percentage),
            )
        )
    if fault.abort is not None:
        config.abort.CopyFrom(
            fault_pb2.FaultAbort(
                http_status=fault.abort.http_status, percentage=fraction(fault.abort.percentage)
            )
        )
    return config


def cors_policy(route: HTTPRoute) -> cors_pb2.CorsPolicy:
    cors = route.cors_policy
    assert cors is not None
    policy = cors_pb2.CorsPolicy(
        allow_origin_string_match=[string_matcher(o) for o in cors.allow_origins],
        allow_methods=",".join(cors.allow_methods),
        allow_headers=",".join(cors.allow_headers),
        expose_headers=",".join(cors.expose_headers),
    )
    if cors.max_age is not None:
        policy.max_age = str(int(cors.max_age.total_seconds()))
    if cors.allow_credentials is not None:
        policy.allow_credentials.CopyFrom(boolean(cors.allow_credentials))
    return policy


class Target(NamedTuple):
    """A resolved destination of an HTTP rule."""

    cluster: str
    weight: int
    request: HeaderChanges
    response: HeaderChanges


def _weighted(
    vs: Policy[VirtualService], http: HTTPRoute, scope: RouteScope, destinations: Destinations
) -> list[Target]:
    found: list[Target] = []
    for target in http.route:
        weight = 100 if target.weight is None else target.weight
        cluster = destinations.resolve(target.destination, vs.namespace, scope.port)
        if weight == 0 or cluster is None:
            continue
        headers = target.headers
        found.append(
            Target(
                cluster,
                weight,
                header_changes(headers.request if headers else None, request=True),
                header_changes(headers.response if headers else None, request=False),
            )
        )
    return found


def _route_action(
    vs: Policy[VirtualService],
    http: HTTPRoute,
    scope: RouteScope,
    destinations: Destinations,
    targets: list[Target],
) -> rc.RouteAction:
    action = rc.RouteAction(timeout=disabled())
    if len(targets) == 1:
        action.cluster = targets[0].cluster
    else:
        for cluster, weight, request, response in targets:
            weighted = rc.WeightedCluster.ClusterWeight(
                name=cluster,
                weight=uint32(weight),
                request_headers_to_add=request.add,
                request_headers_to_remove=request.remove,
                response_headers_to_add=response.add,
                response_headers_to_remove=response.remove,
            )
            if request.authority:
                weighted.host_rewrite_literal = request.authority
            action.weighted_clusters.clusters.append(weighted)
    if http.timeout is not None:
        # The route timeout starts at the router; the stream's maximum duration also covers
        # what happens before it (a fault delay), so "timeout" bounds the whole request.
        action.timeout.CopyFrom(duration(http.timeout))
        action.max_stream_duration.max_stream_duration.CopyFrom(duration(http.timeout))
    retries = retry_policy(http.retries)
    if retries is not None:
        action.retry_policy.CopyFrom(retries)
    if http.mirror is not None:
        mirror = destinations.resolve(http.mirror, vs.namespace, scope.port)
        if mirror is not None:
            policy = rc.RouteAction.RequestMirrorPolicy(cluster=mirror)
            if http.mirror_percentage is not None:
                policy.runtime_fraction.default_value.CopyFrom(fraction(http.mirror_percentage))
            action.request_mirror_policies.append(policy)
    authority = http.rewrite.authority if http.rewrite else None
    if authority:
        action.host_rewrite_literal = authority
    return action


def _uri_rewrite(route: rc.Route, uri: str) -> None:
    """Replace the matched prefix (or the whole path, for exact and regex matches)."""
    if route.match.HasField("safe_regex"):
        route.route.regex_rewrite.pattern.regex = "^.*$"
        route.route.regex_rewrite.substitution = uri
    else:
        route.route.prefix_rewrite = uri


def _template(
    vs: Policy[VirtualService],
    index: int,
    http: HTTPRoute,
    scope: RouteScope,
    destinations: Destinations,
) -> rc.Route:
    route = rc.Route(name=naming.http_route(vs.namespace, vs.name, index, http.name))
    targets: list[Target] = []
    if http.redirect is not None:
        redirect = rc.RedirectAction(response_code=_REDIRECT_CODES[http.redirect.redirect_code])
        if http.redirect.uri:
            redirect.path_redirect = http.redirect.uri
        if http.redirect.authority:
            redirect.host_redirect = http.redirect.authority
        route.redirect.CopyFrom(redirect)
    else:
        targets = _weighted(vs, http, scope, destinations)
        if targets:
            route.route.CopyFrom(_route_action(vs, http, scope, destinations, targets))
        else:
            route.direct_response.status = NO_DESTINATION_STATUS
    request = header_changes(http.headers.request if http.headers else None, request=True)
    response = header_changes(http.headers.response if http.headers else None, request=False)
    route.request_headers_to_add.extend(request.add)
    route.request_headers_to_remove.extend(request.remove)
    route.response_headers_to_add.extend(response.add)
    route.response_headers_to_remove.extend(response.remove)
    if request.authority and route.HasField("route"):
        route.route.host_rewrite_literal = request.authority
    if route.HasField("route") and len(route.route.weighted_clusters.clusters) == 0:
        # One destination: its own header changes apply to the route.
        target = targets[0]
        route.request_headers_to_add.extend(target.request.add)
        route.request_headers_to_remove.extend(target.request.remove)
        route.response_headers_to_add.extend(target.response.add)
        route.response_headers_to_remove.extend(target.response.remove)
        if target.request.authority:
            route.route.host_rewrite_literal = target.request.authority
    if http.fault is not None and not route.HasField("redirect"):
        route.typed_per_filter_config[route_filters.FAULT].CopyFrom(typed(fault_config(http.fault)))
    if http.cors_policy is not None:
        route.typed_per_filter_config[route_filters.CORS].CopyFrom(typed(cors_policy(http)))
    return route


def http_routes(
    vs: Policy[VirtualService], scope: RouteScope, destinations: Destinations
) -> list[rc.Route]:
    """The routes of ``vs``'s HTTP rules for a proxy in ``scope``, in order."""
    routes: list[rc.Route] = []
    for index, http in enumerate(vs.spec.http):
        matches = [m for m in http.match if applicable(m, scope)] if http.match else [None]
        if not matches:
            continue
        template = _template(vs, index, http, scope, destinations)
        for match in matches:
            route = rc.Route()
            route.CopyFrom(template)
            route.match.CopyFrom(route_match(match))
            rewrite = http.rewrite.uri if http.rewrite else None
            if rewrite and route.HasField("route"):
                _uri_rewrite(route, rewrite)
            routes.append(route)
    return routes
