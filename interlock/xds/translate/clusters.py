"""Clusters: one EDS cluster per service (with Envoy's active health check when the service
asks for one), and the sidecar's static inbound cluster.

With a mesh identity, each outbound cluster also carries the client side of mTLS as a
``transport_socket_match``: it is used for the endpoints whose metadata says they accept mTLS
(see :func:`interlock.xds.translate.endpoints.load_assignment`), plain text for the others.
DestinationRule traffic policies will attach here too.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, health_check_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_pb2, range_pb2
from google.protobuf import duration_pb2, struct_pb2

from interlock.model import Service, ServiceProtocol
from interlock.model.identity import MeshIdentity
from interlock.model.service import HealthCheck
from interlock.xds import naming
from interlock.xds.translate import tls
from interlock.xds.translate.common import (
    ads_config_source,
    connect_timeout,
    typed,
    uint32,
)
from interlock.xds.translate.endpoints import static_load_assignment
from interlock.xds.translate.ports import APP_ADDRESS

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
"""The key of a cluster's upstream HTTP options in ``typed_extension_protocol_options``."""


def _speak_http2(cluster: cluster_pb2.Cluster) -> None:
    """Make ``cluster`` use HTTP/2 (prior knowledge) to its upstream."""
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(typed(options))


def upstream_alpn(protocol: ServiceProtocol) -> tuple[str, ...]:
    """The ALPN a caller offers a sidecar of a ``protocol`` service over mTLS."""
    if protocol is ServiceProtocol.TCP:
        return ()
    return ("h2",) if protocol.is_http2 else ("http/1.1",)


def active_health_check(
    service: Service, check: HealthCheck, caller: base_pb2.HeaderValueOption | None = None
) -> health_check_pb2.HealthCheck:
    """A service's :class:`~interlock.model.service.HealthCheck` as Envoy runs it.

    HTTP checks ask for the path with the statuses 200-399 passing (HTTP/2 for ``http2`` and
    ``grpc`` services), with ``Host: <name>.<namespace>`` (Envoy's default is the cluster's
    name, which no HTTP/1 server accepts: ``|`` is not allowed there), carrying ``caller``
    (the source header the caller's routes stamp) so that the callee counts them as its
    caller's requests and the service graph does not draw them as traffic from outside the
    mesh. Over mTLS like any request to the endpoint: the endpoint's transport socket match
    applies to its checks too.

    Every endpoint is checked every ``interval``, whether or not the caller has sent the
    cluster traffic yet. Envoy's default for a cluster that never had traffic is 60 s, and
    the next check is scheduled when one ends: a caller whose checks passed before its
    first request would route to an endpoint that failed since for up to a minute, and,
    since a failing endpoint gets no traffic (panic threshold 0), a cluster whose only
    endpoint failed its first check — made before its sidecar listened — would stay without
    traffic for a minute.
    """
    message = health_check_pb2.HealthCheck(
        timeout=_seconds(check.timeout),
        interval=_seconds(check.interval),
        unhealthy_threshold=uint32(check.unhealthy_threshold),
        healthy_threshold=uint32(check.healthy_threshold),
        no_traffic_interval=_seconds(check.interval),
        no_traffic_healthy_interval=_seconds(check.interval),
    )
    if check.path is None:
        message.tcp_health_check.SetInParent()
        return message
    http = message.http_health_check
    http.host = naming.service_host(service)
    http.path = check.path
    http.expected_statuses.append(range_pb2.Int64Range(start=200, end=400))
    if service.protocol.is_http2:
        http.codec_client_type = http_pb2.CodecClientType.HTTP2
    if caller is not None:
        http.request_headers_to_add.append(caller)
    return message


def _seconds(value: float) -> duration_pb2.Duration:
    millis = round(value * 1000)
    return duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)


def outbound_cluster(
    service: Service,
    source: config_source_pb2.ConfigSource | None = None,
    identity: MeshIdentity | None = None,
    caller: base_pb2.HeaderValueOption | None = None,
) -> cluster_pb2.Cluster:
    """The EDS cluster callers reach ``service`` through.

    Its endpoints come over ADS under the same name (see :func:`naming.outbound_cluster`);
    ``http2`` and ``grpc`` services are spoken to in HTTP/2, ``http`` in HTTP/1.1 and ``tcp``
    as bytes. With ``identity``, endpoints marked as accepting mTLS are reached over mTLS that
    accepts only ``service``'s SPIFFE ID. A service's ``health_check`` becomes the cluster's
    active health check (:func:`active_health_check`, ``caller`` stamped on its requests),
    and the cluster's panic threshold 0: an endpoint failing it never gets traffic, even when
    most do (Envoy's default, 50 %, would send traffic to all of them then).
    """
    name = naming.outbound_cluster(service)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.DiscoveryType.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=source or ads_config_source(), service_name=name
        ),
        connect_timeout=connect_timeout(),
    )
    # Which service this cluster leads to, for access logs (%CLUSTER_METADATA(interlock:host)%).
    cluster.metadata.filter_metadata[naming.METADATA_NAMESPACE].update(
        {
            "host": naming.service_host(service),
            "service": service.name,
            "namespace": service.namespace,
        }
    )
    if service.protocol.is_http2:
        _speak_http2(cluster)
    if service.health_check is not None:
        cluster.health_checks.append(active_health_check(service, service.health_check, caller))
        cluster.common_lb_config.healthy_panic_threshold.value = 0.0
    if identity is not None:
        match = struct_pb2.Struct()
        match.update({naming.TLS_MODE_KEY: naming.TLS_MODE_MUTUAL})
        cluster.transport_socket_matches.append(
            cluster_pb2.Cluster.TransportSocketMatch(
                name=naming.TLS_MODE_MUTUAL,
                match=match,
                transport_socket=tls.upstream_mtls(
                    identity,
                    service.namespace,
                    service.name,
                    source or ads_config_source(),
                    upstream_alpn(service.protocol),
                ),
            )
        )
    return cluster


def inbound_cluster(app_port: int, protocol: ServiceProtocol) -> cluster_pb2.Cluster:
    """The static cluster that hands inbound traffic to the app on ``127.0.0.1:<app_port>``."""
    name = naming.inbound_cluster(app_port)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.DiscoveryType.STATIC,
        load_assignment=static_load_assignment(name, APP_ADDRESS, app_port),
        connect_timeout=connect_timeout(),
    )
    if protocol.is_http2:
        _speak_http2(cluster)
    return cluster
