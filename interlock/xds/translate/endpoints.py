"""Endpoints: one ClusterLoadAssignment per service, from its healthy instances."""

from __future__ import annotations

import socket
from collections.abc import Container, Iterable

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from interlock.model import Instance, Service
from interlock.xds import naming
from interlock.xds.translate.common import socket_address

_LocalityKey = tuple[str, str, str]


def locality_of(instance: Instance) -> _LocalityKey:
    """``"region/zone/subzone"`` split into its three parts (missing parts are empty)."""
    parts = instance.locality.split("/", 2) if instance.locality else []
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _endpoint_order(instance: Instance) -> tuple[int, bytes, str, int, str]:
    """IPs in numeric order (``10.0.0.9`` before ``10.0.0.10``), then port, then id."""
    address = instance.address
    for version, family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
        try:
            # Packed big-endian bytes of one length sort like the numbers they encode.
            return (
                version,
                socket.inet_pton(family, address),
                "",
                instance.port,
                instance.instance_id,
            )
        except OSError:
            continue
    # Validated where it enters; never crash the translator on it.
    return (9, b"", address, instance.port, instance.instance_id)


def load_assignment(
    service: Service,
    instances: Iterable[Instance],
    mutual_tls: Container[str] = (),
) -> endpoint_pb2.ClusterLoadAssignment:
    """The load assignment of ``service``'s cluster: its healthy ``instances``, by locality.

    Unhealthy instances (registered unhealthy, or failing a check: not
    :attr:`~interlock.model.Instance.routable`) are left out, never marked: they must receive
    no traffic. A service with no healthy instance gets an assignment
    without endpoints, so Envoy answers its callers 503 at once instead of waiting. Localities
    and the endpoints inside each are sorted, so equal input gives byte-identical output.
    Instances whose id is in ``mutual_tls`` accept mTLS: their endpoint metadata selects the
    cluster's mTLS transport socket.
    """
    by_locality: dict[_LocalityKey, list[Instance]] = {}
    for instance in instances:
        if instance.routable:
            by_locality.setdefault(locality_of(instance), []).append(instance)
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=naming.outbound_cluster(service))
    for key in sorted(by_locality):
        group = assignment.endpoints.add()
        if any(key):
            group.locality.CopyFrom(base_pb2.Locality(region=key[0], zone=key[1], sub_zone=key[2]))
        lb_endpoints = group.lb_endpoints
        for instance in sorted(by_locality[key], key=_endpoint_order):
            # Filled in place: no temporary messages copied into the assignment.
            endpoint = lb_endpoints.add()
            socket = endpoint.endpoint.address.socket_address
            socket.address = instance.address
            socket.port_value = instance.port
            if instance.instance_id in mutual_tls:
                endpoint.metadata.filter_metadata[naming.TRANSPORT_SOCKET_MATCH].update(
                    {naming.TLS_MODE_KEY: naming.TLS_MODE_MUTUAL}
                )
    return assignment


def static_load_assignment(
    cluster_name: str, address: str, port: int
) -> endpoint_pb2.ClusterLoadAssignment:
    """A load assignment with the single endpoint ``address:port`` (for static clusters)."""
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=socket_address(address, port)
                        )
                    )
                ]
            )
        ],
    )
