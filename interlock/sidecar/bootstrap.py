"""Rendering Envoy bootstraps from the templates in ``interlock/envoy_configs/``."""

from __future__ import annotations

import enum
import importlib.resources
import ipaddress
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from interlock.model.names import instance_id_error, namespace_error, service_name_error
from interlock.sidecar.xds_trust import XdsTls, transport_socket


class XdsProtocol(enum.StrEnum):
    """Which ADS variant Envoy speaks: incremental (delta) or state of the world."""

    DELTA = "delta"
    SOTW = "sotw"

    @property
    def api_type(self) -> str:
        return "DELTA_GRPC" if self is XdsProtocol.DELTA else "GRPC"


DEFAULT_TOKEN_FILE = "/etc/interlock/xds-token"
"""Where ``interlock bootstrap`` says the proxy token is, unless told otherwise."""


@dataclass(frozen=True)
class SidecarSpec:
    """Everything a sidecar's bootstrap says about the proxy.

    ``inbound_port`` is where mesh traffic enters (forwarded to ``127.0.0.1:app_port``);
    ``outbound_port`` is the HTTP listener the app calls other services through.
    """

    service: str
    instance_id: str
    app_port: int
    inbound_port: int
    outbound_port: int
    admin_port: int
    namespace: str = "default"
    address: str = "127.0.0.1"
    outbound_address: str = "127.0.0.1"
    admin_address: str = "127.0.0.1"
    labels: Mapping[str, str] = field(default_factory=dict)
    locality: str = ""
    xds_host: str = "127.0.0.1"
    xds_port: int = 18000
    #: The other control-plane replicas (``--xds A,B,C``: B and C), as (host, port): the
    #: bootstrap's xDS cluster lists them all, and Envoy moves its stream to one that answers.
    xds_others: tuple[tuple[str, int], ...] = ()
    xds_protocol: XdsProtocol = XdsProtocol.DELTA
    #: "ads": one aggregated stream; "per-type": CDS, LDS, RDS and EDS on streams of their own.
    xds_api: str = "ads"
    #: Where Prometheus scrapes this sidecar (on ``address``): only /stats/prometheus, never
    #: the admin API. None: no scrape listener (the admin port still serves the stats).
    stats_port: int | None = None
    #: The file holding this proxy's token (mode 0600): the bootstrap names the file, never
    #: the token, and Envoy sends it on every stream to the control plane.
    token_file: str = DEFAULT_TOKEN_FILE
    #: TLS to the control plane (None: a --plaintext control plane on loopback).
    xds_tls: XdsTls | None = None


def _template(name: str) -> string.Template:
    text = importlib.resources.files("interlock.envoy_configs").joinpath(name).read_text()
    return string.Template(text)


def _quoted(value: str) -> str:
    """``value`` made safe inside a double-quoted YAML scalar of the template."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def xds_endpoints(host: str, port: int, others: tuple[tuple[str, int], ...]) -> str:
    """The ``lb_endpoints`` of the bootstrap's xDS cluster: every control-plane replica."""
    return "\n".join(
        f"        - endpoint:\n"
        f"            address:\n"
        f'              socket_address: {{address: "{_quoted(h)}", port_value: {int(p)}}}'
        for h, p in ((host, port), *others)
    )


def locality_error(locality: str) -> str | None:
    """What is wrong with a ``region/zone/subzone`` locality (empty is fine)."""
    parts = locality.split("/") if locality else []
    if len(parts) > 3 or any(not p or p != p.strip() or '"' in p or "\\" in p for p in parts):
        return f"{locality!r} must be region, region/zone or region/zone/subzone"
    return None


def locality_fields(locality: str) -> dict[str, str]:
    """The template fields of a locality: ``LOCALITY`` and its ``REGION``, ``ZONE`` and
    ``SUB_ZONE``."""
    parts = (locality.split("/") if locality else []) + ["", "", ""]
    return {
        "LOCALITY": _quoted(locality),
        "REGION": _quoted(parts[0]),
        "ZONE": _quoted(parts[1]),
        "SUB_ZONE": _quoted(parts[2]),
    }


def spec_errors(spec: SidecarSpec) -> list[str]:
    """What is wrong with ``spec``, one message per field (empty when it is usable)."""
    errors = [
        f"--{flag}: {msg}"
        for flag, msg in (
            ("service", service_name_error(spec.service)),
            ("namespace", namespace_error(spec.namespace)),
            ("instance-id", instance_id_error(spec.instance_id)),
        )
        if msg
    ]
    for flag, addr in (
        ("address", spec.address),
        ("outbound-address", spec.outbound_address),
        ("admin-address", spec.admin_address),
    ):
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            errors.append(f"--{flag}: {addr!r} is not an IP address")
    if not spec.token_file or "\n" in spec.token_file:
        errors.append("--token-file: must be a file path")
    if message := locality_error(spec.locality):
        errors.append(f"--locality: {message}")
    if spec.xds_api not in ("ads", "per-type"):
        errors.append(f"--xds-api: {spec.xds_api!r} must be 'ads' or 'per-type'")
    ports = [spec.inbound_port, spec.outbound_port, spec.admin_port, spec.app_port]
    if spec.stats_port:
        ports.append(spec.stats_port)
    if len(set(ports)) != len(ports):
        errors.append(
            "--app-port, --inbound-port, --outbound-port, --admin-port and --stats-port "
            "must all differ"
        )
    return errors


def render_sidecar_bootstrap(spec: SidecarSpec) -> str:
    """The YAML bootstrap for one sidecar. Raises ValueError naming each bad field."""
    if errors := spec_errors(spec):
        raise ValueError("; ".join(errors))
    template = "sidecar-per-type.yaml" if spec.xds_api == "per-type" else "sidecar.yaml"
    text = _template(template).substitute(
        NODE_ID=_quoted(spec.instance_id),
        SERVICE=_quoted(spec.service),
        NAMESPACE=_quoted(spec.namespace),
        KIND="sidecar",
        INBOUND_ADDRESS=spec.address,
        INBOUND_PORT=str(spec.inbound_port),
        APP_PORT=str(spec.app_port),
        OUTBOUND_ADDRESS=spec.outbound_address,
        OUTBOUND_PORT=str(spec.outbound_port),
        ADMIN_ADDRESS=spec.admin_address,
        ADMIN_PORT=str(int(spec.admin_port)),
        API_TYPE=spec.xds_protocol.api_type,
        XDS_PROTOCOL=spec.xds_protocol.value,
        XDS_ENDPOINTS=xds_endpoints(spec.xds_host, spec.xds_port, spec.xds_others),
        XDS_TOKEN_FILE=_quoted(spec.token_file),
        XDS_TRANSPORT_SOCKET=transport_socket(spec.xds_tls, 4),
        **locality_fields(spec.locality),
        STATS_LISTENERS=(
            "\n"
            + _template("stats-listener.yaml").substitute(
                ADDRESS=spec.address, PORT=spec.stats_port
            )
            if spec.stats_port
            else "[]"
        ),
        STATS_CLUSTERS=(
            _template("stats-cluster.yaml").substitute(
                ADDRESS=spec.admin_address, PORT=spec.admin_port
            )
            if spec.stats_port
            else ""
        ),
    )
    yaml.safe_load(text)  # a template or value mistake fails here, not inside Envoy
    return text
