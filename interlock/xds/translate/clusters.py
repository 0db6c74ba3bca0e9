"""Clusters: one EDS cluster per service, and the sidecar's static inbound cluster.

With a mesh identity, each outbound cluster also carries the client side of mTLS as a
``transport_socket_match``: it is used for the endpoints whose metadata says they accept mTLS
(see :func:`interlock.xds.translate.endpoints.load_assignment`), plain text for the others.
DestinationRule traffic policies will attach here too.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import struct_pb2

from interlock.model import Protocol, Service
from interlock.model.identity import MeshIdentity
from interlock.xds import naming
from interlock.xds.translate import tls
from interlock.xds.translate.common import (
    ads_config_source,
    connect_timeout,
    typed,
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


def upstream_alpn(protocol: Protocol) -> tuple[str, ...]:
    """The ALPN a caller offers a sidecar of a ``protocol`` service over mTLS."""
    if protocol is Protocol.TCP:
        return ()
    return ("h2",) if protocol.is_http2 else ("http/1.1",)


def outbound_cluster(
    service: Service,
    source: config_source_pb2.ConfigSource | None = None,
    identity: MeshIdentity | None = None,
) -> cluster_pb2.Cluster:
    """The EDS cluster callers reach ``service`` through.

    Its endpoints come over ADS under the same name (see :func:`naming.outbound_cluster`);
    ``http2`` and ``grpc`` services are spoken to in HTTP/2, ``http`` in HTTP/1.1 and ``tcp``
    as bytes. With ``identity``, endpoints marked as accepting mTLS are reached over mTLS that
    accepts only ``service``'s SPIFFE ID.
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


def inbound_cluster(app_port: int, protocol: Protocol) -> cluster_pb2.Cluster:
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
