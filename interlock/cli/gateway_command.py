"""`interlock gateway`: run an Envoy as an ingress gateway (see interlock.sidecar.gateway)."""

from __future__ import annotations

from typing import Annotated

import typer

from interlock.cli.options import (
    DEFAULT_CONTROL_PLANE,
    DEFAULT_XDS,
    ApiTokenFile,
    CaFile,
    CaFingerprint,
    ControlPlane,
    DrainSeconds,
    EnvoyBinary,
    EnvoyLogLevel,
    RegisterTimeout,
    Xds,
    XdsProtocolName,
    host_ports,
    run_envoy,
    trust_of,
    xds_protocol_of,
)
from interlock.cli.write_commands import parse_labels
from interlock.sidecar import SidecarOptions
from interlock.sidecar.gateway import GatewaySpec, parse_port, run_gateway


def gateway(
    name: Annotated[
        str, typer.Option(help="The gateway's name: a service it registers as (a DNS label).")
    ],
    port: Annotated[
        list[str],
        typer.Option(
            help="A Gateway port to serve, PORT or PORT:LISTEN_PORT (Gateway servers on PORT "
            "are served on LISTEN_PORT); repeat for several."
        ),
    ],
    admin_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Envoy's admin API port (127.0.0.1).")
    ] = 15000,
    address: Annotated[
        str, typer.Option(help="The address the gateway's listeners bind (0.0.0.0: every one).")
    ] = "127.0.0.1",
    namespace: Annotated[str, typer.Option(help="The gateway's namespace.")] = "default",
    instance_id: Annotated[
        str | None, typer.Option(help="This gateway's instance id (default: its name).")
    ] = None,
    labels: Annotated[
        str,
        typer.Option(
            help="Extra labels, k=v,k2=v2 (gateway=NAME and istio=ingressgateway are added).",
        ),
    ] = "",
    locality: Annotated[str, typer.Option(help="region/zone/subzone of this gateway.")] = "",
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
    xds: Xds = DEFAULT_XDS,
    xds_protocol: XdsProtocolName = "delta",
    envoy: EnvoyBinary = None,
    drain_seconds: DrainSeconds = 1.0,
    register_timeout: RegisterTimeout = 30.0,
    log_level: EnvoyLogLevel = "warning",
    token_file: ApiTokenFile = None,
) -> None:
    """Run an ingress gateway: an Envoy whose listeners come from the Gateway resources that
    select it, with the routes of the VirtualServices bound to them."""
    try:
        ports = tuple(parse_port(p) for p in port)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--port") from None
    protocol = xds_protocol_of(xds_protocol)
    xds_address, *others = host_ports(xds, "--xds")
    spec = GatewaySpec(
        name=name,
        ports=ports,
        admin_port=admin_port,
        instance_id=instance_id or "",
        namespace=namespace,
        address=address,
        labels=parse_labels(labels),
        locality=locality,
        xds_host=xds_address.host,
        xds_port=xds_address.port,
        xds_others=tuple((a.host, a.port) for a in others),
        xds_protocol=protocol,
    )
    opts = SidecarOptions(
        control_plane=control_plane,
        trust=trust_of(ca_file, ca_fingerprint),
        envoy=envoy,
        drain_seconds=drain_seconds,
        register_timeout=register_timeout,
        log_level=log_level,
        api_token_file=token_file,
    )
    run_envoy("gateway", lambda say: run_gateway(spec, opts, say))
