"""Small proto builders shared by the translator's modules: config sources, addresses, Any."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, config_source_pb2, grpc_service_pb2
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import BoolValue, UInt32Value

from interlock.model import Proxy

CONNECT_TIMEOUT_SECONDS = 5
"""How long an upstream connection may take to establish."""


def connect_timeout() -> Duration:
    """The connect timeout of every cluster."""
    return Duration(seconds=CONNECT_TIMEOUT_SECONDS)


def disabled() -> Duration:
    """A zero duration: Envoy reads it as "no timeout" (or "do not wait")."""
    return Duration(seconds=0)


def typed(message: Message) -> Any:
    """``message`` packed into an ``Any`` with deterministic bytes."""
    packed = Any()
    packed.Pack(message, deterministic=True)
    return packed


def uint32(value: int) -> UInt32Value:
    """A ``google.protobuf.UInt32Value``."""
    return UInt32Value(value=value)


def boolean(value: bool) -> BoolValue:
    """A ``google.protobuf.BoolValue``."""
    return BoolValue(value=value)


def ads_config_source() -> config_source_pb2.ConfigSource:
    """Fetch over the proxy's ADS stream, v3, without waiting for the first response.

    ``initial_fetch_timeout: 0s`` lets Envoy finish initialising even when a resource is slow to
    arrive, so one missing resource never holds every listener back.
    """
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
        initial_fetch_timeout=disabled(),
    )


def config_source(proxy: Proxy) -> config_source_pb2.ConfigSource:
    """Where ``proxy`` fetches the RDS and EDS resources its listeners and clusters name: its
    ADS stream, or — for a fleet whose bootstrap names per-type config sources — the per-type
    gRPC service on the cluster its node metadata names (``xds_cluster``)."""
    if not proxy.xds_cluster:
        return ads_config_source()
    api_type = (
        config_source_pb2.ApiConfigSource.DELTA_GRPC
        if proxy.xds_delta
        else config_source_pb2.ApiConfigSource.GRPC
    )
    return config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=api_type,
            transport_api_version=config_source_pb2.ApiVersion.V3,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                        cluster_name=proxy.xds_cluster
                    )
                )
            ],
        ),
        resource_api_version=config_source_pb2.ApiVersion.V3,
        initial_fetch_timeout=disabled(),
    )


def socket_address(address: str, port: int) -> address_pb2.Address:
    """A TCP ``address:port``."""
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )
