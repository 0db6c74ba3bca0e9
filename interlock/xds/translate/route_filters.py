"""The HTTP filters policies configure per route: CORS and fault injection (VirtualService)
on outbound and gateway connection managers; RBAC (AuthorizationPolicy) and the local rate
limit (RateLimit) on inbound ones.

Each filter is always present and does nothing by itself; a route turns it on with its
``typed_per_filter_config`` (served over RDS). So applying or removing a policy changes routes
only, never a listener (Envoy would drain a changed listener's connections).
"""

from __future__ import annotations

from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from interlock.xds.translate.common import typed

CORS = "envoy.filters.http.cors"
FAULT = "envoy.filters.http.fault"
LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
INBOUND_RATE_LIMIT_STAT_PREFIX = "inbound_rate_limit"
#: The three RBAC filters of the inbound connection manager, one per AuthorizationPolicy action
#: (Envoy picks the extension by the config's type, so they can share it under three names).
RBAC_AUDIT = "interlock.authz.audit"
RBAC_DENY = "interlock.authz.deny"
RBAC_ALLOW = "interlock.authz.allow"


def outbound_http_filters() -> list[hcm_pb2.HttpFilter]:
    """CORS (answers preflights before anything else) and fault injection, before the router."""
    return [
        hcm_pb2.HttpFilter(name=CORS, typed_config=typed(cors_pb2.Cors())),
        hcm_pb2.HttpFilter(name=FAULT, typed_config=typed(fault_pb2.HTTPFault())),
    ]


#: Where the dry-run (shadow) rules of each RBAC filter report: the counters
#: ``http.<connection manager>.rbac.<action>.shadow_allowed``/``shadow_denied``, and the dynamic
#: metadata ``envoy.filters.http.rbac: <action>.shadow_engine_result`` (``allowed``/``denied``)
#: and ``<action>.shadow_effective_policy_id`` (the rule that decided) — all filters share the
#: RBAC extension's metadata namespace, so the action's prefix keeps them apart.
SHADOW_STAT_PREFIX = {RBAC_DENY: "deny.", RBAC_ALLOW: "allow."}
RBAC_METADATA_NAMESPACE = "envoy.filters.http.rbac"


def _rbac(name: str, stat_prefix: str) -> hcm_pb2.HttpFilter:
    # No rules: the filter lets everything through until a route's RBACPerRoute says otherwise.
    config = rbac_pb2.RBAC(
        rules_stat_prefix=stat_prefix, shadow_rules_stat_prefix=SHADOW_STAT_PREFIX.get(name, "")
    )
    return hcm_pb2.HttpFilter(name=name, typed_config=typed(config))


def inbound_http_filters(authn: hcm_pb2.HttpFilter | None = None) -> list[hcm_pb2.HttpFilter]:
    """``authn`` (the JWT filter of a RequestAuthentication) first, then the RBAC filters of
    AuthorizationPolicy — audit, deny, allow — and the local rate limit, before the router.
    Without a route's configuration the RBAC filters allow everything and the rate limit is
    off (``filter_enabled`` unset is 0%)."""
    limit = local_rate_limit_pb2.LocalRateLimit(stat_prefix=INBOUND_RATE_LIMIT_STAT_PREFIX)
    return [
        *([authn] if authn is not None else []),
        _rbac(RBAC_AUDIT, "audit"),
        _rbac(RBAC_DENY, "deny"),
        _rbac(RBAC_ALLOW, "allow"),
        hcm_pb2.HttpFilter(name=LOCAL_RATE_LIMIT, typed_config=typed(limit)),
    ]


def gateway_http_filters(authn: hcm_pb2.HttpFilter | None = None) -> list[hcm_pb2.HttpFilter]:
    """A gateway's connection manager: CORS first (it answers preflights, which carry no
    credentials), then ``authn`` (the JWT filter of the gateway's RequestAuthentications), the
    RBAC filters of its AuthorizationPolicies — audit, deny, allow — and fault injection,
    before the router."""
    return [
        hcm_pb2.HttpFilter(name=CORS, typed_config=typed(cors_pb2.Cors())),
        *([authn] if authn is not None else []),
        _rbac(RBAC_AUDIT, "audit"),
        _rbac(RBAC_DENY, "deny"),
        _rbac(RBAC_ALLOW, "allow"),
        hcm_pb2.HttpFilter(name=FAULT, typed_config=typed(fault_pb2.HTTPFault())),
    ]
