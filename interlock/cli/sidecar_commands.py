"""`interlock sidecar` and `interlock bootstrap`: a sidecar run by Interlock, or the bootstrap
to run Envoy yourself. Both trust the control plane through the CA bundle (--ca-file or
--ca-fingerprint) and hand Envoy a bundle file it reloads when a root rotation changes it."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from interlock.cli.options import (
    DEFAULT_CONTROL_PLANE,
    DEFAULT_XDS,
    Api,
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
    parse_duration,
    run_envoy,
    trust_of,
    xds_protocol_of,
)
from interlock.cli.output import err_console, fail
from interlock.cli.write_commands import parse_labels
from interlock.client import ClientError
from interlock.model.token_envelope import wrap
from interlock.sidecar import (
    DEFAULT_TOKEN_FILE,
    SidecarError,
    SidecarOptions,
    SidecarSpec,
    render_sidecar_bootstrap,
    run_sidecar,
)
from interlock.sidecar.grpc_bootstrap import (
    CALL_CREDS_ENV,
    DEFAULT_GRPC_TOKEN_FILE,
    GrpcBootstrapSpec,
    render_grpc_bootstrap,
    write_secret,
)
from interlock.sidecar.probe import (
    DEFAULT_HEALTHY_THRESHOLD,
    DEFAULT_UNHEALTHY_THRESHOLD,
    ProbeSpec,
)
from interlock.sidecar.run import control_plane_tls

DEFAULT_CA_DIR = Path("/etc/interlock")


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
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
    xds: Xds = DEFAULT_XDS,
    xds_protocol: XdsProtocolName = "delta",
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
    drain_seconds: DrainSeconds = 1.0,
    register_timeout: RegisterTimeout = 30.0,
    envoy: EnvoyBinary = None,
    log_level: EnvoyLogLevel = "warning",
    token_file: ApiTokenFile = None,
    health_path: Annotated[
        str | None,
        typer.Option(
            help="Probe the app with GET 127.0.0.1:<app-port><PATH> (200-399 passes); its "
            "verdicts take the instance out of traffic and bring it back."
        ),
    ] = None,
    health_tcp: Annotated[
        bool, typer.Option("--health-tcp", help="Probe the app by connecting to its port.")
    ] = False,
    health_interval: Annotated[str, typer.Option(help="Time between two probes.")] = "5s",
    health_timeout: Annotated[str, typer.Option(help="How long one probe may take.")] = "1s",
    health_unhealthy_threshold: Annotated[
        int, typer.Option(min=1, help="Failures in a row that make the instance unhealthy.")
    ] = DEFAULT_UNHEALTHY_THRESHOLD,
    health_healthy_threshold: Annotated[
        int, typer.Option(min=1, help="Successes in a row that make it healthy again.")
    ] = DEFAULT_HEALTHY_THRESHOLD,
) -> None:
    """Register an instance, fetch its proxy token, run its Envoy sidecar (probing the app
    with --health-path or --health-tcp), and deregister (revoking the token) on exit."""
    if protocol not in ("http", "http2", "grpc", "tcp"):
        raise typer.BadParameter("must be http, http2, grpc or tcp", param_hint="--protocol")
    probe = None
    if health_path is not None or health_tcp:
        if health_path is not None and health_tcp:
            raise typer.BadParameter("give --health-path or --health-tcp, not both")
        try:
            probe = ProbeSpec(
                port=app_port,
                path=health_path,
                tcp=health_tcp,
                interval=parse_duration(health_interval, "--health-interval"),
                timeout=parse_duration(health_timeout, "--health-timeout"),
                unhealthy_threshold=health_unhealthy_threshold,
                healthy_threshold=health_healthy_threshold,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--health-path") from None
    spec = _spec(
        xds,
        xds_protocol,
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
        xds_api=xds_api,
        stats_port=stats_port,
    )
    opts = SidecarOptions(
        control_plane=control_plane,
        trust=trust_of(ca_file, ca_fingerprint),
        envoy=envoy,
        protocol=protocol,
        service_port=service_port,
        drain_seconds=drain_seconds,
        register_timeout=register_timeout,
        log_level=log_level,
        api_token_file=token_file,
        health=probe,
    )
    run_envoy("sidecar", lambda say: run_sidecar(spec, opts, say))


def _spec(xds: str, xds_protocol: str, **fields: Any) -> SidecarSpec:
    """A sidecar's spec from its flags, ``--xds`` and ``--xds-protocol`` parsed."""
    first, *others = host_ports(xds, "--xds")
    return SidecarSpec(
        xds_host=first.host,
        xds_port=first.port,
        xds_others=tuple((a.host, a.port) for a in others),
        xds_protocol=xds_protocol_of(xds_protocol),
        **fields,
    )


def bootstrap(
    service: Annotated[str, typer.Option(help="The service this proxy belongs to.")],
    instance_id: Annotated[str, typer.Option(help="The instance id (node.id).")],
    app_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    inbound_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    outbound_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    admin_port: Annotated[int, typer.Option(min=1, max=65535)] = 15000,
    namespace: Annotated[str, typer.Option()] = "default",
    address: Annotated[
        str, typer.Option(help="IP other proxies reach this instance at.")
    ] = "127.0.0.1",
    outbound_address: Annotated[str, typer.Option()] = "127.0.0.1",
    xds: Xds = DEFAULT_XDS,
    xds_protocol: XdsProtocolName = "delta",
    xds_api: Annotated[str, typer.Option(help="ads or per-type.")] = "ads",
    stats_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    token_file: Annotated[
        str,
        typer.Option(
            help="The file (mode 0600) holding the proxy token from "
            "POST /v1/services/{name}/instances/{id}/token; Envoy must be able to read it."
        ),
    ] = DEFAULT_TOKEN_FILE,
    ca_dir: Annotated[
        Path,
        typer.Option(
            help="Where Envoy finds the CA bundle it verifies the control plane with: this "
            "command writes ca.pem and xds-ca.yaml there (keep ca.pem current with "
            "`interlock ca bundle --follow DIR/ca.pem`)."
        ),
    ] = DEFAULT_CA_DIR,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
    grpc: Annotated[
        bool,
        typer.Option(
            "--grpc",
            help="Print a proxyless gRPC workload's xDS bootstrap (JSON, gRFC A27) instead, "
            "after writing its CA bundle into --ca-dir and a new proxy token (as the JWT "
            "envelope gRPC sends) into --token-file (default "
            f"{DEFAULT_GRPC_TOKEN_FILE}). The instance must be registered.",
        ),
    ] = False,
    token_lifetime: Annotated[
        str, typer.Option(help="With --grpc: how long the token file is good for.")
    ] = "365d",
    locality: Annotated[str, typer.Option(help="With --grpc: region/zone/subzone.")] = "",
) -> None:
    """Print the Envoy bootstrap for one sidecar (to run Envoy yourself), after writing the
    CA bundle it trusts the control plane with into --ca-dir; with --grpc, the xDS bootstrap
    of a proxyless gRPC workload (see docs/proxyless-grpc.md)."""
    api = Api(control_plane, ca_file, ca_fingerprint)
    if grpc:
        lifetime = parse_duration(token_lifetime, "--token-lifetime")
        if token_file == DEFAULT_TOKEN_FILE:
            token_file = DEFAULT_GRPC_TOKEN_FILE
        grpc_spec = GrpcBootstrapSpec(
            service=service,
            instance_id=instance_id,
            # A proxyless client's bootstrap names one xDS server: the first given.
            xds_host=host_ports(xds, "--xds")[0].host,
            xds_port=host_ports(xds, "--xds")[0].port,
            ca_file=str(ca_dir / "ca.pem"),
            token_file=token_file,
            namespace=namespace,
            locality=locality,
        )
        typer.echo(_grpc_bootstrap(api, grpc_spec, ca_dir, lifetime), nl=False)
        return
    if app_port is None or inbound_port is None or outbound_port is None:
        raise typer.BadParameter(
            "--app-port, --inbound-port and --outbound-port are required (or give --grpc)"
        )
    spec = _spec(
        xds,
        xds_protocol,
        service=service,
        instance_id=instance_id,
        app_port=app_port,
        inbound_port=inbound_port,
        outbound_port=outbound_port,
        admin_port=admin_port,
        namespace=namespace,
        address=address,
        outbound_address=outbound_address,
        xds_api=xds_api,
        stats_port=stats_port,
        token_file=token_file,
    )
    try:
        render_sidecar_bootstrap(spec)  # bad flags fail before anything is fetched or written
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    with api.client() as client:
        try:
            tls, _ = control_plane_tls(client, spec.xds_host, ca_dir)
        except SidecarError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise fail(f"cannot write the CA bundle into --ca-dir {ca_dir}: {exc}") from None
    typer.echo(render_sidecar_bootstrap(replace(spec, xds_tls=tls)), nl=False)


def _grpc_bootstrap(api: Api, spec: GrpcBootstrapSpec, ca_dir: Path, lifetime: float) -> str:
    """Write the CA bundle and a token envelope for ``spec``'s instance; its bootstrap."""
    try:
        text = render_grpc_bootstrap(spec)  # bad flags fail before anything is written
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    with api.client() as client:
        if client.context is None:
            raise fail(
                "--grpc needs a control plane served over TLS (gRPC sends call "
                "credentials only over TLS)"
            )
        try:
            control_plane_tls(client, spec.xds_host, ca_dir)
        except SidecarError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise fail(f"cannot write the CA bundle into --ca-dir {ca_dir}: {exc}") from None
        try:
            issued = client.issue_proxy_token(spec.service, spec.instance_id)
        except ClientError as exc:
            raise fail(
                f"cannot issue a proxy token for instance {spec.instance_id} of "
                f"{spec.service} (register it first: PUT /v1/services/{spec.service}/"
                f"instances/{spec.instance_id}): {exc}"
            ) from None
    envelope = wrap(
        str(issued["token"]),
        f"{spec.namespace}/{spec.service}/{spec.instance_id}",
        int(time.time()),
        int(lifetime),
    )
    try:
        write_secret(Path(spec.token_file), envelope)
    except OSError as exc:
        raise fail(f"cannot write the token file {spec.token_file}: {exc}") from None
    err_console.print(
        f"proxy token {issued['token_id']} written to {spec.token_file} (mode 0600); run the "
        f"workload with GRPC_XDS_BOOTSTRAP=<this file> and {CALL_CREDS_ENV}=true",
        highlight=False,
        soft_wrap=True,
    )
    return text
