"""`interlock`: the command line. `server` and `demo` start things through interlock.app,
`sidecar` and `bootstrap` through interlock.sidecar; every other command is a client of the
REST API over HTTP, exactly as a user's script would be."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interlock.cli.ca_commands import ca_app
from interlock.cli.client_commands import get
from interlock.cli.gateway_command import gateway
from interlock.cli.options import DEFAULT_CONTROL_PLANE, ControlPlane, host_port
from interlock.cli.output import fail
from interlock.cli.resource_commands import apply
from interlock.cli.status_commands import proxy_config, proxy_status
from interlock.cli.top import top
from interlock.cli.write_commands import delete, parse_labels, put_app
from interlock.sidecar import (
    DEFAULT_TOKEN_FILE,
    EnvoyNotFound,
    SidecarError,
    SidecarOptions,
    SidecarSpec,
    XdsProtocol,
    render_sidecar_bootstrap,
    run_sidecar,
)

app = typer.Typer(
    name="interlock",
    help="A service mesh for stock Envoy, without Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("get")(get)
app.command("apply")(apply)
app.add_typer(put_app, name="put")
app.command("delete")(delete)
app.command("proxy-status")(proxy_status)
app.command("proxy-config")(proxy_config)
app.command("top")(top)
app.add_typer(ca_app, name="ca")
app.command("gateway")(gateway)


@app.command()
def server(
    db: Annotated[
        str, typer.Option(help="Database URL (sqlite:///FILE or postgresql+psycopg://...).")
    ] = "sqlite:///interlock.db",
    api: Annotated[str, typer.Option(help="HOST:PORT of the REST API.")] = "127.0.0.1:8080",
    xds: Annotated[
        str, typer.Option(help="HOST:PORT of the xDS (gRPC) server.")
    ] = "127.0.0.1:18000",
    debounce_quiet: Annotated[
        float, typer.Option(help="Seconds without writes before a push.", min=0.0)
    ] = 0.05,
    debounce_max: Annotated[
        float, typer.Option(help="Longest delay of a push during a burst of writes.", min=0.0)
    ] = 0.5,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    ready_file: Annotated[
        Path | None,
        typer.Option(hidden=True, help="Write the bound ports here as JSON once serving."),
    ] = None,
    trust_domain: Annotated[
        str, typer.Option(help="The SPIFFE trust domain of every identity in the mesh.")
    ] = "interlock.local",
    root_namespace: Annotated[
        str, typer.Option(help="The namespace whose selector-less policies are mesh-wide.")
    ] = "interlock-system",
    leaf_lifetime: Annotated[
        str, typer.Option(help="Lifetime of proxy certificates (e.g. 24h, 90m, 60s).")
    ] = "24h",
    ca_cert: Annotated[
        Path | None, typer.Option(help="An operator CA certificate (PEM) to use on first start.")
    ] = None,
    ca_key: Annotated[
        Path | None, typer.Option(help="Its private key (PEM); stored sealed, never shown.")
    ] = None,
    ca_chain: Annotated[
        Path | None, typer.Option(help="For an intermediate CA: the chain up to its root.")
    ] = None,
    ca_kek_file: Annotated[
        Path | None,
        typer.Option(
            help="The 32-byte key that seals the CA key in the store (else INTERLOCK_CA_KEK; "
            "with SQLite, generated beside the database if neither is given)."
        ),
    ] = None,
    token_recheck: Annotated[
        str, typer.Option(help="How often revoked proxy tokens lose their streams (e.g. 5s).")
    ] = "5s",
    open_reads: Annotated[
        bool, typer.Option("--open-reads", help="Let anyone read the REST API (not write).")
    ] = False,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(
            help="Where the first admin token is written (default: beside a SQLite database, "
            "else ./interlock-admin-token)."
        ),
    ] = None,
    new_admin_token: Annotated[
        bool,
        typer.Option("--new-admin-token", help="Revoke the admin token and write a new one."),
    ] = False,
) -> None:
    """Run the control plane: xDS server, REST API, CA and store in one process."""
    from interlock.app import ServerSettings, run_server

    settings = ServerSettings(
        db_url=db,
        api=host_port(api, "--api", allow_any_port=True),
        xds=host_port(xds, "--xds", allow_any_port=True),
        debounce_quiet=debounce_quiet,
        debounce_max=debounce_max,
        ready_file=ready_file,
        log_level=log_level,
        trust_domain=trust_domain,
        root_namespace=root_namespace,
        leaf_lifetime=parse_duration(leaf_lifetime, "--leaf-lifetime"),
        ca_cert=ca_cert,
        ca_key=ca_key,
        ca_chain=ca_chain,
        ca_kek_file=ca_kek_file,
        token_recheck=parse_duration(token_recheck, "--token-recheck"),
        open_reads=open_reads,
        admin_token_file=admin_token_file,
        new_admin_token=new_admin_token,
    )
    raise typer.Exit(run_server(settings))


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str, option: str) -> float:
    """``90s``, ``15m``, ``24h``, ``7d``, ``500ms`` or plain seconds → seconds."""
    text = value.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number, scale = text[: -len(unit)], _UNITS[unit]
            break
    else:
        number, scale = text, 1.0
    try:
        seconds = float(number) * scale
    except ValueError:
        raise typer.BadParameter(
            f"expected a duration such as 60s, 15m or 24h, got {value!r}", param_hint=option
        ) from None
    if seconds <= 0:
        raise typer.BadParameter("must be positive", param_hint=option)
    return seconds


def _sidecar_spec(
    service: str,
    instance_id: str,
    app_port: int,
    inbound_port: int,
    outbound_port: int,
    admin_port: int,
    namespace: str,
    address: str,
    outbound_address: str,
    labels: str,
    locality: str,
    xds: str,
    xds_protocol: str,
    xds_api: str = "ads",
    stats_port: int | None = None,
    token_file: str = DEFAULT_TOKEN_FILE,
) -> SidecarSpec:
    xds_address = host_port(xds, "--xds")
    try:
        protocol = XdsProtocol(xds_protocol)
    except ValueError:
        raise typer.BadParameter("must be 'delta' or 'sotw'", param_hint="--xds-protocol") from None
    return SidecarSpec(
        service=service,
        instance_id=instance_id,
        app_port=app_port,
        inbound_port=inbound_port,
        outbound_port=outbound_port,
        admin_port=admin_port,
        namespace=namespace,
        address=address,
        outbound_address=outbound_address,
        labels=parse_labels(labels),
        locality=locality,
        xds_host=xds_address.host,
        xds_port=xds_address.port,
        xds_protocol=protocol,
        xds_api=xds_api,
        stats_port=stats_port,
        token_file=token_file,
    )


@app.command()
def sidecar(
    service: Annotated[str, typer.Option(help="The service this instance belongs to.")],
    instance_id: Annotated[str, typer.Option(help="This instance's id (Envoy's node.id).")],
    app_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Where the app listens on 127.0.0.1.")
    ],
    inbound_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Where mesh traffic enters this instance.")
    ],
    outbound_port: Annotated[
        int,
        typer.Option(
            min=1, max=65535, help="The HTTP listener the app calls other services through."
        ),
    ],
    admin_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Envoy's admin API port (127.0.0.1).")
    ],
    labels: Annotated[str, typer.Option(help="Instance labels, k=v,k2=v2.")] = "",
    namespace: Annotated[str, typer.Option(help="The service's namespace.")] = "default",
    address: Annotated[
        str,
        typer.Option(help="The address other proxies reach this instance at (IP or host name)."),
    ] = "127.0.0.1",
    outbound_address: Annotated[
        str,
        typer.Option(
            help="The address outbound listeners bind (give each co-located sidecar "
            "its own 127.0.0.x for tcp services)."
        ),
    ] = "127.0.0.1",
    locality: Annotated[str, typer.Option(help="region/zone/subzone of this instance.")] = "",
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    xds: Annotated[str, typer.Option(help="HOST:PORT of the xDS server.")] = "127.0.0.1:18000",
    xds_protocol: Annotated[
        str, typer.Option(help="delta (incremental) or sotw (state of the world).")
    ] = "delta",
    xds_api: Annotated[
        str, typer.Option(help="ads (one aggregated stream) or per-type (a stream per type).")
    ] = "ads",
    stats_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Serve only /stats/prometheus on --address:PORT for scrapers."
        ),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="Protocol used if the service must be created: http, http2, grpc or tcp."
        ),
    ] = "http",
    service_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Port used if the service must be created (default: --app-port)."
        ),
    ] = None,
    drain_seconds: Annotated[
        float,
        typer.Option(min=0.0, help="On SIGTERM, seconds between deregistering and stopping Envoy."),
    ] = 1.0,
    register_timeout: Annotated[
        float, typer.Option(min=0.0, help="How long to wait for the control plane at start.")
    ] = 30.0,
    envoy: Annotated[
        str | None, typer.Option(help="The Envoy binary (default: envoy on PATH).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Envoy's log level.")] = "warning",
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="A file holding the API token to register with (else INTERLOCK_TOKEN). "
            "The sidecar then fetches its own proxy token."
        ),
    ] = None,
) -> None:
    """Register an instance, fetch its proxy token, run its Envoy sidecar, and deregister
    (revoking the token) on exit."""
    if protocol not in ("http", "http2", "grpc", "tcp"):
        raise typer.BadParameter("must be http, http2, grpc or tcp", param_hint="--protocol")
    spec = _sidecar_spec(
        service,
        instance_id,
        app_port,
        inbound_port,
        outbound_port,
        admin_port,
        namespace,
        address,
        outbound_address,
        labels,
        locality,
        xds,
        xds_protocol,
        xds_api,
        stats_port,
    )
    opts = SidecarOptions(
        control_plane=control_plane,
        envoy=envoy,
        protocol=protocol,
        service_port=service_port,
        drain_seconds=drain_seconds,
        register_timeout=register_timeout,
        log_level=log_level,
        api_token_file=token_file,
    )
    try:
        code = run_sidecar(spec, opts, say=lambda m: typer.echo(f"sidecar: {m}", err=True))
    except (SidecarError, EnvoyNotFound, ValueError) as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def bootstrap(
    service: Annotated[str, typer.Option(help="The service this proxy belongs to.")],
    instance_id: Annotated[str, typer.Option(help="The instance id (node.id).")],
    app_port: Annotated[int, typer.Option(min=1, max=65535)],
    inbound_port: Annotated[int, typer.Option(min=1, max=65535)],
    outbound_port: Annotated[int, typer.Option(min=1, max=65535)],
    admin_port: Annotated[int, typer.Option(min=1, max=65535)] = 15000,
    namespace: Annotated[str, typer.Option()] = "default",
    address: Annotated[
        str, typer.Option(help="IP other proxies reach this instance at.")
    ] = "127.0.0.1",
    outbound_address: Annotated[str, typer.Option()] = "127.0.0.1",
    xds: Annotated[str, typer.Option(help="HOST:PORT of the xDS server.")] = "127.0.0.1:18000",
    xds_protocol: Annotated[str, typer.Option(help="delta or sotw.")] = "delta",
    xds_api: Annotated[str, typer.Option(help="ads or per-type.")] = "ads",
    stats_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    token_file: Annotated[
        str,
        typer.Option(
            help="The file (mode 0600) holding the proxy token from "
            "POST /v1/services/{name}/instances/{id}/token; Envoy must be able to read it."
        ),
    ] = DEFAULT_TOKEN_FILE,
) -> None:
    """Print the Envoy bootstrap for one sidecar (to run Envoy yourself)."""
    spec = _sidecar_spec(
        service,
        instance_id,
        app_port,
        inbound_port,
        outbound_port,
        admin_port,
        namespace,
        address,
        outbound_address,
        "",
        "",
        xds,
        xds_protocol,
        xds_api,
        stats_port,
        token_file,
    )
    try:
        typer.echo(render_sidecar_bootstrap(spec), nl=False)
    except ValueError as exc:
        raise fail(str(exc), 2) from None


@app.command()
def demo(
    api: Annotated[
        str, typer.Option(help="HOST:PORT for the demo's REST API (port 0: any).")
    ] = "127.0.0.1:8080",
    xds: Annotated[
        str, typer.Option(help="HOST:PORT for the demo's xDS server (port 0: any).")
    ] = "127.0.0.1:18000",
    requests: Annotated[
        int, typer.Option(min=1, max=10000, help="Requests to send at start.")
    ] = 20,
    exit_after: Annotated[
        float | None, typer.Option(hidden=True, help="Stop after this many seconds (tests).")
    ] = None,
) -> None:
    """Run a whole mesh on this machine: a server, three services with sidecars, and traffic."""
    from interlock.demo.run import DemoError, run_demo

    try:
        code = run_demo(api=api, xds=xds, requests=requests, exit_after=exit_after)
    except DemoError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


def main() -> None:
    app()
