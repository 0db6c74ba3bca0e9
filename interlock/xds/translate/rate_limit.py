"""RateLimit: local token buckets on the requests a service's sidecars receive.

The inbound connection manager always has Envoy's local rate limit filter, off by itself
(see :mod:`.route_filters`); a RateLimit turns it on in the inbound route configuration:

- one without ``target.routes`` on the inbound virtual host (every request; the oldest such
  RateLimit of the service is used);
- one with routes gets an inbound route per selector, before the catch-all, carrying its
  bucket: ``pathPrefix`` matches the path; ``name`` matches what the named http rule of the
  service's VirtualService matches (its uri, method, headers, query parameters, authority —
  ``sourceLabels`` and ``port`` are the caller's business and are not seen here). A selected
  route's bucket replaces the service-wide one for the requests it matches.

Each sidecar keeps its own buckets (the limit is per instance), and each selected route its
own bucket. ``percentage`` is the share of requests the limit is checked for;
``enabled: false`` turns the RateLimit off.
"""

from __future__ import annotations

from collections.abc import Iterator

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.type.v3 import http_status_pb2, token_bucket_pb2

from interlock.model import MeshState, Problem, Proxy, ProxyKind
from interlock.model.policy.lookup import service_for_host
from interlock.model.policy.policies import Policy
from interlock.model.policy.rate_limit import RateLimit
from interlock.model.policy.virtual_service import HTTPRoute
from interlock.xds import naming
from interlock.xds.translate import route_filters
from interlock.xds.translate.common import typed, uint32
from interlock.xds.translate.destinations import age
from interlock.xds.translate.draft import Draft, PassContext
from interlock.xds.translate.http_routes import fraction, route_match
from interlock.xds.translate.traffic_policy import duration
from interlock.xds.translate.virtual_service import MeshVirtualServices

_HVO = base_pb2.HeaderValueOption
_ALWAYS = 100.0


def _runtime_percent(percent: float) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(default_value=fraction(percent))


def local_rate_limit(policy: Policy[RateLimit]) -> local_rate_limit_pb2.LocalRateLimit:
    """The local rate limit filter's configuration for ``policy``'s bucket."""
    spec = policy.spec
    bucket = spec.token_bucket
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=naming.rate_limit_stat_prefix(policy.namespace, policy.name),
        status=http_status_pb2.HttpStatus(code=spec.response_status),
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=bucket.max_tokens,
            tokens_per_fill=uint32(bucket.tokens_per_fill),
            fill_interval=duration(bucket.fill_interval),
        ),
        filter_enabled=_runtime_percent(spec.percentage),
        filter_enforced=_runtime_percent(_ALWAYS),
        response_headers_to_add=[
            _HVO(
                header=base_pb2.HeaderValue(key=name, value=value),
                append_action=_HVO.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
            )
            for name, value in sorted(spec.response_headers.items())
        ],
    )


def _named_rules(state: MeshState, proxy: Proxy, name: str) -> Iterator[HTTPRoute]:
    service = state.services.get(proxy.service)
    if service is None:
        return
    vs = MeshVirtualServices(state).for_service(service)
    if vs is not None:
        yield from (http for http in vs.spec.http if http.name == name)


def _matches(
    state: MeshState, proxy: Proxy, policy: Policy[RateLimit], index: int
) -> list[rc.RouteMatch]:
    selector = policy.spec.target.routes[index]
    if selector.path_prefix is not None:
        return [rc.RouteMatch(prefix=selector.path_prefix)]
    found: list[rc.RouteMatch] = []
    for http in _named_rules(state, proxy, selector.name or ""):
        for match in http.match or [None]:
            found.append(route_match(match))
    return found


def _apply_rate_limits(
    state: MeshState, proxy: Proxy, config: route_pb2.RouteConfiguration
) -> None:
    """Turn the local rate limit on in ``config``, the inbound route configuration of
    ``proxy`` (in place), as the RateLimits of its service say."""
    if proxy.kind is not ProxyKind.SIDECAR or len(config.virtual_hosts) != 1:
        return
    mine = [
        rl
        for rl in sorted(state.policies.rate_limits, key=age)
        if rl.spec.enabled
        and (service := service_for_host(state, rl.spec.target.service, rl.namespace)) is not None
        and (service.name, service.namespace) == (proxy.service, proxy.namespace)
    ]
    vhost = config.virtual_hosts[0]
    whole = [rl for rl in mine if not rl.spec.target.routes]
    if whole:  # several: the oldest is used (the others' problems say so)
        vhost.typed_per_filter_config[route_filters.LOCAL_RATE_LIMIT].CopyFrom(
            typed(local_rate_limit(whole[0]))
        )
    catch_all = list(vhost.routes)
    selected: list[rc.Route] = []
    for rl in mine:
        config_any = typed(local_rate_limit(rl))
        for index in range(len(rl.spec.target.routes)):
            for match in _matches(state, proxy, rl, index):
                route = rc.Route(
                    name=naming.rate_limit_route(rl.namespace, rl.name, index),
                    match=match,
                    route=catch_all[-1].route,
                )
                route.typed_per_filter_config[route_filters.LOCAL_RATE_LIMIT].CopyFrom(config_any)
                selected.append(route)
    if selected:
        del vhost.routes[:]
        vhost.routes.extend(selected + catch_all)


class RateLimits:
    """The RateLimits pass: buckets in a sidecar's inbound route configuration."""

    def apply(self, ctx: PassContext, draft: Draft) -> list[Problem]:
        inbound = draft.route(ctx.inbound_route)
        if inbound is not None:
            _apply_rate_limits(ctx.state, ctx.proxy, inbound)
        return []
