"""`interlock`: the command line. `server` and `demo` start things through interlock.app,
`sidecar` and `bootstrap` through interlock.sidecar; every other command is a client of the
REST API over HTTP, exactly as a user's script would be."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from interlock.cli.ca_commands import ca_app
from interlock.cli.client_commands import get
from interlock.cli.credentials_command import credentials
from interlock.cli.gateway_command import gateway
from interlock.cli.options import host_port, parse_duration
from interlock.cli.output import fail
from interlock.cli.resource_commands import apply
from interlock.cli.sidecar_commands import bootstrap, sidecar
from interlock.cli.status_commands import proxy_config, proxy_status
from interlock.cli.top import top
from interlock.cli.write_commands import delete, put_app

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
app.command("sidecar")(sidecar)
app.command("bootstrap")(bootstrap)
app.command("credentials")(credentials)


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
    server_name: Annotated[
        list[str] | None,
        typer.Option(
            help="A DNS name or IP address clients reach this server by (repeatable): a SAN of "
            "its certificate, beside localhost, the loopback and listen addresses and the "
            "host name."
        ),
    ] = None,
    plaintext: Annotated[
        bool,
        typer.Option(
            "--plaintext",
            help="Serve the API and xDS without TLS (only when both listen on loopback).",
        ),
    ] = False,
    ca_bundle_file: Annotated[
        Path | None,
        typer.Option(
            help="Where the CA bundle clients trust is written (default: beside a SQLite "
            "database, <db>.ca.pem; else ./interlock-ca.pem)."
        ),
    ] = None,
    instance_ttl: Annotated[
        str,
        typer.Option(
            help="How long an instance's proxy may have no xDS stream before the instance is "
            "unhealthy (e.g. 15s); it is healthy again when its proxy reconnects."
        ),
    ] = "15s",
    db_timeout: Annotated[
        str,
        typer.Option(
            help="How long one wait on the database may take (SQLite's busy timeout; "
            "PostgreSQL's connect and statement timeouts): past it the API answers 503 and "
            "the reconciler retries."
        ),
    ] = "10s",
    first_request_timeout: Annotated[
        str,
        typer.Option(
            help="How long a new xDS or access-log stream may take to send its first request "
            "before it is closed (e.g. 10s)."
        ),
    ] = "10s",
    max_streams: Annotated[
        int, typer.Option(help="Open gRPC streams (xDS and access logs) at most, per process.")
    ] = 20_000,
    max_streams_per_connection: Annotated[
        int, typer.Option(help="Concurrent gRPC streams at most on one HTTP/2 connection.")
    ] = 100,
    max_views: Annotated[
        int,
        typer.Option(
            help="Distinct proxy configurations (views, one translation each) held at most; "
            "a stream that would need another is refused."
        ),
    ] = 10_000,
    api_header_timeout: Annotated[
        str,
        typer.Option(
            help="How long a REST client has for its TLS handshake and each request's headers."
        ),
    ] = "10s",
    api_max_connections: Annotated[
        int,
        typer.Option(
            help="REST connections held at once (at most half the process's file-descriptor "
            "limit); more wait in the listen backlog."
        ),
    ] = 10_000,
    jwks_refresh: Annotated[
        str,
        typer.Option(
            help="How often the key sets of RequestAuthentications' jwksUri are fetched again "
            "(e.g. 5m; an issuer's Cache-Control max-age may shorten it, to 10s at least)."
        ),
    ] = "5m",
    jwks_ca_file: Annotated[
        Path | None,
        typer.Option(
            help="CA certificates (PEM) trusted for jwksUri besides the system's trust store "
            "(a private issuer)."
        ),
    ] = None,
) -> None:
    """Run the control plane: xDS server, REST API, CA and store in one process."""
    from interlock.app import ServerSettings, StreamLimits, run_server

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
        server_names=tuple(server_name or ()),
        plaintext=plaintext,
        ca_bundle_file=ca_bundle_file,
        instance_ttl=parse_duration(instance_ttl, "--instance-ttl"),
        db_timeout=parse_duration(db_timeout, "--db-timeout"),
        stream_limits=StreamLimits(
            first_request_timeout=parse_duration(first_request_timeout, "--first-request-timeout"),
            max_streams=max_streams,
            max_streams_per_connection=max_streams_per_connection,
        ),
        max_views=max_views,
        api_header_timeout=parse_duration(api_header_timeout, "--api-header-timeout"),
        api_max_connections=api_max_connections,
        jwks_refresh=_at_least(
            parse_duration(jwks_refresh, "--jwks-refresh"), 1.0, "--jwks-refresh"
        ),
        jwks_ca_file=jwks_ca_file,
    )
    raise typer.Exit(run_server(settings))


def _at_least(seconds: float, minimum: float, option: str) -> float:
    if seconds < minimum:
        raise typer.BadParameter(f"must be at least {minimum:g}s", param_hint=option)
    return seconds


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
