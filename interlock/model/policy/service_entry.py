"""ServiceEntry (networking.istio.io): hosts outside the registry (external APIs, databases)
that the mesh may call, with their ports and, optionally, their endpoints."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock.model.errors import FieldError
from interlock.model.policy.common import EXPORT_TO, label_map, no_map
from interlock.model.policy.hosts import dns_label_error, fqdn_error, wildcard_host_error
from interlock.model.schema import (
    Enum,
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
from interlock.model.schema.values import ip_error, ip_or_cidr_error


class Location(enum.StrEnum):
    MESH_EXTERNAL = "MESH_EXTERNAL"
    MESH_INTERNAL = "MESH_INTERNAL"


class Resolution(enum.StrEnum):
    NONE = "NONE"
    STATIC = "STATIC"
    DNS = "DNS"


class PortProtocol(enum.StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    TCP = "TCP"
    TLS = "TLS"


@dataclass(frozen=True)
class ServicePort:
    number: int
    name: str
    protocol: PortProtocol | None = None
    target_port: int | None = None


@dataclass(frozen=True)
class WorkloadEntry:
    address: str
    ports: Mapping[str, int] = field(default_factory=no_map)
    labels: Mapping[str, str] = field(default_factory=no_map)
    locality: str = ""
    weight: int | None = None


@dataclass(frozen=True)
class ServiceEntry:
    hosts: tuple[str, ...]
    addresses: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    location: Location = Location.MESH_EXTERNAL
    resolution: Resolution = Resolution.NONE
    endpoints: tuple[WorkloadEntry, ...] = ()
    #: The namespaces whose proxies may call its hosts (empty: every namespace).
    export_to: tuple[str, ...] = ()


def _host_error(value: str) -> str | None:
    if value == "*":
        return "'*' is not allowed in a service entry"
    return wildcard_host_error(value)


def _port_name_error(value: str) -> str | None:
    return dns_label_error(value, "port name")


def _endpoint_address_error(value: str) -> str | None:
    if value.startswith("unix://"):
        return "unix domain socket endpoints are not supported by Interlock yet"
    if ip_error(value) is None:
        return None
    if fqdn_error(value) is None:
        return None
    return f"{value!r} is not an IP address or a host name"


def _locality_error(value: str) -> str | None:
    parts = value.split("/")
    if len(parts) > 3 or any(not p for p in parts):
        return f"locality {value!r} must be region, region/zone or region/zone/subzone"
    return None


def _check(entry: ServiceEntry, path: str, errors: Errors) -> None:
    port_names = {p.name for p in entry.ports}
    if any("/" in a for a in entry.addresses) and entry.resolution is Resolution.DNS:
        errors.append(
            FieldError(
                child(path, "addresses"),
                "CIDR addresses are allowed only with NONE or STATIC resolution",
            )
        )
    if entry.resolution is Resolution.NONE and entry.endpoints:
        errors.append(FieldError(child(path, "endpoints"), "must be empty when resolution is NONE"))
    if entry.resolution is Resolution.STATIC and not entry.endpoints:
        errors.append(
            FieldError(child(path, "endpoints"), "STATIC resolution needs at least one endpoint")
        )
    if entry.resolution is Resolution.DNS and not entry.endpoints:
        for index, host in enumerate(entry.hosts):
            if host.startswith("*"):
                errors.append(
                    FieldError(
                        item(child(path, "hosts"), index),
                        "DNS resolution without endpoints needs hosts without wildcards",
                    )
                )
    for index, endpoint in enumerate(entry.endpoints):
        at = item(child(path, "endpoints"), index)
        if entry.resolution is Resolution.STATIC and ip_error(endpoint.address):
            errors.append(FieldError(child(at, "address"), "STATIC resolution needs IP addresses"))
        for name in endpoint.ports:
            if name not in port_names:
                errors.append(
                    FieldError(child(child(at, "ports"), name), f"no port named {name!r} in ports")
                )
    if entry.resolution is not Resolution.NONE and len(entry.hosts) > 1:
        for port in entry.ports:
            if port.protocol in (None, PortProtocol.TCP):
                errors.append(
                    FieldError(
                        child(path, "hosts"),
                        "several hosts need HTTP or TLS ports (plain TCP cannot tell them apart)",
                    )
                )
                break


def _unique_port_names(entry: ServiceEntry, path: str, errors: Errors) -> None:
    seen: dict[str, int] = {}
    for index, port in enumerate(entry.ports):
        if port.name in seen:
            errors.append(
                FieldError(
                    child(item(child(path, "ports"), index), "name"),
                    f"port name {port.name!r} is already used by ports[{seen[port.name]}]",
                )
            )
        seen.setdefault(port.name, index)


ENDPOINT: Obj[WorkloadEntry] = Obj(
    WorkloadEntry,
    {
        "address": Field(Str(check=_endpoint_address_error, non_empty=True), required=True),
        "ports": MapOf(Str(check=_port_name_error), Port()),
        "labels": label_map(),
        "locality": Str(check=_locality_error),
        "weight": Int(minimum=1, maximum=2**31 - 1),
    },
    unsupported=["network", "serviceAccount"],
)

SERVICE_PORT: Obj[ServicePort] = Obj(
    ServicePort,
    {
        "number": Field(Port(), required=True),
        "name": Field(Str(check=_port_name_error), required=True),
        "protocol": Enum(
            PortProtocol,
            unsupported=["MONGO", "REDIS", "MYSQL", "UDP", "GRPC-WEB", "HTTP_PROXY"],
            ignore_case=True,
        ),
        "targetPort": Port(),
    },
)

SPEC: Obj[ServiceEntry] = Obj(
    ServiceEntry,
    {
        "hosts": Field(ListOf(Str(check=_host_error), min_items=1, what="host"), required=True),
        "addresses": ListOf(Str(check=ip_or_cidr_error)),
        "ports": ListOf(
            SERVICE_PORT,
            unique=lambda p: p.number,
            what="port number",
        ),
        "location": Enum(Location),
        "resolution": Enum(Resolution, unsupported=["DNS_ROUND_ROBIN"]),
        "endpoints": ListOf(ENDPOINT),
        "exportTo": EXPORT_TO,
    },
    unsupported=["workloadSelector", "subjectAltNames"],
    checks=[_check, _unique_port_names],
)
