"""DestinationRule traffic policies on clusters: load balancing, connection pools, outlier
detection — and the route hash policies consistent hashing needs.

A cluster's policy is the DestinationRule's ``trafficPolicy``, overridden field by field
(``loadBalancer``, ``connectionPool``, ``outlierDetection``) by its ``portLevelSettings`` for
the cluster's port, then by the subset's ``trafficPolicy`` (``tls`` too) and that one's
port-level settings (Istio's order). ``tls`` decides what callers send each endpoint
(:mod:`.upstream_tls`), not a field of the cluster.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import hash_policy_pb2
from google.protobuf.duration_pb2 import Duration

from interlock.model.policy.destination_rule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    LoadBalancerSettings,
    OutlierDetection,
    SimpleLB,
    TrafficPolicy,
)
from interlock.xds.translate.common import typed, uint32

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_Cluster = cluster_pb2.Cluster
_HashPolicy = route_components_pb2.RouteAction.HashPolicy

_SIMPLE = {
    SimpleLB.ROUND_ROBIN: _Cluster.LbPolicy.ROUND_ROBIN,
    SimpleLB.LEAST_REQUEST: _Cluster.LbPolicy.LEAST_REQUEST,
    SimpleLB.RANDOM: _Cluster.LbPolicy.RANDOM,
}


@dataclass(frozen=True)
class EffectivePolicy:
    """The traffic policy one cluster gets, after port-level and subset overrides."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None

    @property
    def locality_aware(self) -> bool:
        """True when endpoints are prioritized by locality: a ``localityLbSetting`` without
        ``distribute``, or outlier detection (Istio turns locality failover on with it)."""
        setting = self.load_balancer.locality_lb_setting if self.load_balancer else None
        if setting is not None and setting.distribute:
            return False
        return setting is not None or self.outlier_detection is not None


NO_POLICY = EffectivePolicy()


def _layers(policy: TrafficPolicy | None, port: int) -> list[TrafficPolicy | object]:
    if policy is None:
        return []
    layers: list[TrafficPolicy | object] = [policy]
    layers += [p for p in policy.port_level_settings if p.port.number == port]
    return layers


def effective_policy(
    rule: TrafficPolicy | None, subset: TrafficPolicy | None, port: int
) -> EffectivePolicy:
    """The policy of the cluster on ``port`` (of a subset, when ``subset`` is its policy)."""
    found: dict[str, object] = {}
    for layer in _layers(rule, port) + _layers(subset, port):
        for name in ("load_balancer", "connection_pool", "outlier_detection", "tls"):
            value = getattr(layer, name, None)  # port-level settings have no tls
            if value is not None:
                found[name] = value
    return EffectivePolicy(**found)  # type: ignore[arg-type]


def duration(value: dt.timedelta) -> Duration:
    """A protobuf ``Duration`` (millisecond precision, as validated)."""
    millis = round(value.total_seconds() * 1000)
    return Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)


def _protocol_options(
    cluster: cluster_pb2.Cluster,
) -> http_protocol_options_pb2.HttpProtocolOptions:
    options = http_protocol_options_pb2.HttpProtocolOptions()
    existing = cluster.typed_extension_protocol_options.get(HTTP_PROTOCOL_OPTIONS)
    if existing is not None:
        existing.Unpack(options)
    if not options.HasField("explicit_http_config") and not options.HasField(
        "use_downstream_protocol_config"
    ):
        options.explicit_http_config.http_protocol_options.SetInParent()
    return options


def _load_balancer(cluster: cluster_pb2.Cluster, lb: LoadBalancerSettings) -> None:
    if lb.simple is SimpleLB.PASSTHROUGH:
        # The caller names the instance (`x-envoy-original-dst-host: IP:port`): sidecars are
        # explicit proxies, so there is no intercepted destination to pass through.
        cluster.type = _Cluster.DiscoveryType.ORIGINAL_DST
        cluster.ClearField("eds_cluster_config")
        cluster.lb_policy = _Cluster.LbPolicy.CLUSTER_PROVIDED
        cluster.original_dst_lb_config.use_http_header = True
    elif lb.simple is not None:
        cluster.lb_policy = _SIMPLE[lb.simple]
    elif lb.consistent_hash is not None:
        hashing = lb.consistent_hash
        if hashing.maglev is not None:
            cluster.lb_policy = _Cluster.LbPolicy.MAGLEV
            cluster.maglev_lb_config.table_size.value = hashing.maglev.table_size
        else:
            cluster.lb_policy = _Cluster.LbPolicy.RING_HASH
            ring = hashing.ring_hash
            if ring is not None and ring.minimum_ring_size is not None:
                cluster.ring_hash_lb_config.minimum_ring_size.value = ring.minimum_ring_size
    setting = lb.locality_lb_setting
    if setting is not None and setting.distribute:
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()


def _connection_pool(cluster: cluster_pb2.Cluster, pool: ConnectionPoolSettings) -> None:
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        priority=base_pb2.RoutingPriority.DEFAULT
    )
    limits = False
    if pool.tcp is not None:
        if pool.tcp.max_connections is not None:
            thresholds.max_connections.value = pool.tcp.max_connections
            limits = True
        if pool.tcp.connect_timeout is not None:
            cluster.connect_timeout.CopyFrom(duration(pool.tcp.connect_timeout))
    http = pool.http
    if http is not None:
        for field, value in (
            ("max_pending_requests", http.http1_max_pending_requests),
            ("max_requests", http.http2_max_requests),
            ("max_retries", http.max_retries),
        ):
            if value is not None:
                getattr(thresholds, field).value = value
                limits = True
        if http.max_requests_per_connection:  # 0 means unlimited, Envoy's default
            options = _protocol_options(cluster)
            common = protocol_pb2.HttpProtocolOptions(
                max_requests_per_connection=uint32(http.max_requests_per_connection)
            )
            options.common_http_protocol_options.MergeFrom(common)
            cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(typed(options))
    if limits:
        cluster.circuit_breakers.thresholds.append(thresholds)


def _outlier_detection(cluster: cluster_pb2.Cluster, outlier: OutlierDetection) -> None:
    detection = outlier_detection_pb2.OutlierDetection(
        # Like Istio: only consecutive 5xx ejects; gateway errors and success rate do not.
        enforcing_consecutive_gateway_failure=uint32(0),
        enforcing_success_rate=uint32(0),
    )
    if outlier.consecutive_5xx_errors is not None:
        detection.consecutive_5xx.value = outlier.consecutive_5xx_errors
        enforcing = 100 if outlier.consecutive_5xx_errors > 0 else 0
        detection.enforcing_consecutive_5xx.value = enforcing
    if outlier.interval is not None:
        detection.interval.CopyFrom(duration(outlier.interval))
    if outlier.base_ejection_time is not None:
        detection.base_ejection_time.CopyFrom(duration(outlier.base_ejection_time))
    if outlier.max_ejection_percent is not None:
        detection.max_ejection_percent.value = outlier.max_ejection_percent
    cluster.outlier_detection.CopyFrom(detection)


def apply_policy(cluster: cluster_pb2.Cluster, policy: EffectivePolicy) -> None:
    """Set ``policy`` on ``cluster`` (in place)."""
    if policy.load_balancer is not None:
        _load_balancer(cluster, policy.load_balancer)
    if policy.connection_pool is not None:
        _connection_pool(cluster, policy.connection_pool)
    if policy.outlier_detection is not None:
        _outlier_detection(cluster, policy.outlier_detection)


def route_hash_policies(
    policy: EffectivePolicy,
) -> list[route_components_pb2.RouteAction.HashPolicy]:
    """The route hash policies a consistent-hash cluster needs (none for other clusters)."""
    lb = policy.load_balancer
    hashing = lb.consistent_hash if lb is not None else None
    if hashing is None:
        return []
    if hashing.http_header_name is not None:
        return [
            route_components_pb2.RouteAction.HashPolicy(
                header=_HashPolicy.Header(header_name=hashing.http_header_name)
            )
        ]
    if hashing.http_cookie is not None:
        cookie = _HashPolicy.Cookie(name=hashing.http_cookie.name)
        if hashing.http_cookie.path:
            cookie.path = hashing.http_cookie.path
        if hashing.http_cookie.ttl is not None:
            cookie.ttl.CopyFrom(duration(hashing.http_cookie.ttl))
        return [route_components_pb2.RouteAction.HashPolicy(cookie=cookie)]
    if hashing.http_query_parameter_name is not None:
        name = hashing.http_query_parameter_name
        return [
            route_components_pb2.RouteAction.HashPolicy(
                query_parameter=_HashPolicy.QueryParameter(name=name)
            )
        ]
    return [
        route_components_pb2.RouteAction.HashPolicy(
            connection_properties=_HashPolicy.ConnectionProperties(source_ip=True)
        )
    ]


def tcp_hash_policies(policy: EffectivePolicy) -> list[hash_policy_pb2.HashPolicy]:
    """The tcp_proxy hash policy of a consistent-hash cluster: only ``useSourceIp`` applies to
    connections."""
    lb = policy.load_balancer
    hashing = lb.consistent_hash if lb is not None else None
    if hashing is None or not hashing.use_source_ip:
        return []
    return [hash_policy_pb2.HashPolicy(source_ip=hash_policy_pb2.HashPolicy.SourceIp())]


def set_tcp_hash(proxy: tcp_proxy_pb2.TcpProxy, policies: list[hash_policy_pb2.HashPolicy]) -> None:
    del proxy.hash_policy[:]
    proxy.hash_policy.extend(policies)
