"""`interlock gateway`: run an Envoy as an ingress gateway (see interlock.sidecar.gateway)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interlock.cli.options import (
    DEFAULT_CONTROL_PLANE,
    CaFile,
    CaFingerprint,
    ControlPlane,
    host_port,
    trust_of,
)
from interlock.cli.output import fail
from interlock.cli.write_commands import parse_labels
from interlock.sidecar import EnvoyNotFound, SidecarError, SidecarOptions, XdsProtocol
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
    xds: Annotated[str, typer.Option(help="HOST:PORT of the xDS server.")] = "127.0.0.1:18000",
    xds_protocol: Annotated[
        str, typer.Option(help="delta (incremental) or sotw (state of the world).")
    ] = "delta",
    envoy: Annotated[
        str | None, typer.Option(help="The Envoy binary (default: envoy on PATH).")
    ] = None,
    drain_seconds: Annotated[
        float, typer.Option(min=0.0, help="On SIGTERM, seconds between deregistering and stopping.")
    ] = 1.0,
    register_timeout: Annotated[
        float, typer.Option(min=0.0, help="How long to wait for the control plane at start.")
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="Envoy's log level.")] = "warning",
    token_file: Annotated[
        Path | None,
        typer.Option(help="A file holding the API token to register with (else INTERLOCK_TOKEN)."),
    ] = None,
) -> None:
    """Run an ingress gateway: an Envoy whose listeners come from the Gateway resources that
    select it, with the routes of the VirtualServices bound to them."""
    try:
        ports = tuple(parse_port(p) for p in port)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--port") from None
    try:
        protocol = XdsProtocol(xds_protocol)
    except ValueError:
        raise typer.BadParameter("must be 'delta' or 'sotw'", param_hint="--xds-protocol") from None
    xds_address = host_port(xds, "--xds")
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
    try:
        code = run_gateway(spec, opts, say=lambda m: typer.echo(f"gateway: {m}", err=True))
    except (SidecarError, EnvoyNotFound, ValueError) as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)
