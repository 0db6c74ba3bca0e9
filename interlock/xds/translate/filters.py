"""Network filters: the HTTP connection manager and tcp_proxy of every listener.

Policy filters (JWT for RequestAuthentication, RBAC for AuthorizationPolicy, CORS, fault, rate
limit) go before the router (:mod:`interlock.xds.translate.route_filters`); access logs attach
to the connection manager and tcp_proxy built below.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import config_source_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from interlock.xds.translate import route_filters
from interlock.xds.translate.common import ads_config_source, boolean, typed

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
ROUTER = "envoy.filters.http.router"

_HCM = hcm_pb2.HttpConnectionManager


def http_filters() -> list[hcm_pb2.HttpFilter]:
    """The HTTP filter chain; the router is always last."""
    return [hcm_pb2.HttpFilter(name=ROUTER, typed_config=typed(router_pb2.Router()))]


def _connection_manager(
    stat_prefix: str, policy_filters: list[hcm_pb2.HttpFilter] | None = None
) -> hcm_pb2.HttpConnectionManager:
    """What every HTTP connection manager shares: HTTP/1.1 and HTTP/2 (codec AUTO, so h2c
    prior knowledge and gRPC work), WebSocket upgrades, the filter chain (``policy_filters``
    before the router: see :mod:`interlock.xds.translate.route_filters`)."""
    return _HCM(
        stat_prefix=stat_prefix,
        codec_type=_HCM.CodecType.AUTO,
        upgrade_configs=[_HCM.UpgradeConfig(upgrade_type="websocket")],
        http_filters=[*(policy_filters or []), *http_filters()],
    )


def outbound_connection_manager(
    stat_prefix: str,
    route_config_name: str,
    source: config_source_pb2.ConfigSource | None = None,
    access_logs: list[accesslog_pb2.AccessLog] | None = None,
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None = None,
    policy_filters: list[hcm_pb2.HttpFilter] | None = None,
) -> hcm_pb2.HttpConnectionManager:
    """The connection manager apps send requests through; its routes come over RDS (ADS).
    ``policy_filters`` replaces the outbound ones (CORS, fault) — a gateway's adds
    authentication and authorization (:func:`.route_filters.gateway_http_filters`).

    It accepts both origin-form requests (``GET /path`` with ``Host: b``) and the absolute-form
    an HTTP proxy receives (``GET http://b/path``, what ``HTTP_PROXY=...`` makes clients send):
    ``allow_absolute_url`` is set explicitly, so the behaviour does not hang on Envoy's default.
    Envoy then routes on the URL's host and forwards the origin-form path upstream.
    """
    manager = _connection_manager(
        stat_prefix, policy_filters or route_filters.outbound_http_filters()
    )
    manager.rds.CopyFrom(
        hcm_pb2.Rds(
            config_source=source or ads_config_source(), route_config_name=route_config_name
        )
    )
    manager.http_protocol_options.CopyFrom(
        protocol_pb2.Http1ProtocolOptions(allow_absolute_url=boolean(True))
    )
    manager.access_log.extend(access_logs or [])
    if tracing is not None:
        manager.tracing.CopyFrom(tracing)
    return manager


def inbound_connection_manager(
    stat_prefix: str,
    route_config_name: str,
    source: config_source_pb2.ConfigSource | None = None,
    access_logs: list[accesslog_pb2.AccessLog] | None = None,
    tracing: hcm_pb2.HttpConnectionManager.Tracing | None = None,
    authn: hcm_pb2.HttpFilter | None = None,
) -> hcm_pb2.HttpConnectionManager:
    """The connection manager of an HTTP inbound listener. Its routes come over RDS, so a new
    service (a new virtual cluster to count its calls) changes the routes, not the listener:
    Envoy would drain a changed listener's connections. ``authn`` is the JWT filter of the
    workload's RequestAuthentications, if any.

    Paths are normalized (RFC 3986: ``/a/../b`` is ``/b``) before any filter sees them, so an
    AuthorizationPolicy's ``paths`` cannot be dodged by spelling a path differently."""
    manager = _connection_manager(stat_prefix, route_filters.inbound_http_filters(authn))
    manager.normalize_path.CopyFrom(boolean(True))
    manager.rds.CopyFrom(
        hcm_pb2.Rds(
            config_source=source or ads_config_source(), route_config_name=route_config_name
        )
    )
    manager.access_log.extend(access_logs or [])
    if tracing is not None:
        manager.tracing.CopyFrom(tracing)
    return manager


def tcp_proxy(stat_prefix: str, cluster: str) -> tcp_proxy_pb2.TcpProxy:
    """Forward every connection's bytes to ``cluster``."""
    return tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)


def http_connection_manager_filter(
    manager: hcm_pb2.HttpConnectionManager,
) -> listener_components_pb2.Filter:
    """``manager`` as a listener's network filter."""
    return listener_components_pb2.Filter(name=HTTP_CONNECTION_MANAGER, typed_config=typed(manager))


def tcp_proxy_filter(proxy: tcp_proxy_pb2.TcpProxy) -> listener_components_pb2.Filter:
    """``proxy`` as a listener's network filter."""
    return listener_components_pb2.Filter(name=TCP_PROXY, typed_config=typed(proxy))
