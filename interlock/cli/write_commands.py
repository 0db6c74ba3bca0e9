"""`interlock put` (services and instances) and `interlock delete` (services, instances and
policy resources), with `--wait`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interlock.cli.options import (
    DEFAULT_CONTROL_PLANE,
    Api,
    CaFile,
    CaFingerprint,
    ControlPlane,
    Output,
    Timeout,
    Wait,
)
from interlock.cli.output import OutputFormat, console, emit, fail
from interlock.cli.resource_commands import (
    DEFAULT_NAMESPACE,
    delete_resources,
    resolve_kind,
    targets_from_files,
)
from interlock.cli.status_commands import wait_for_rollout
from interlock.client import ClientError

put_app = typer.Typer(help="Register or update services and instances.", no_args_is_help=True)


def _write(api: Api, call: Any, wait: bool, timeout: float) -> dict[str, Any]:
    try:
        with api.client() as client:
            result: dict[str, Any] = call(client)
            if wait:
                wait_for_rollout(client, int(result["revision"]), timeout)
            return result
    except ClientError as exc:
        raise fail(str(exc)) from None


def _said(result: dict[str, Any], what: str) -> None:
    verb = (
        "created"
        if result.get("created")
        else "configured"
        if result.get("changed", True)
        else "unchanged"
    )
    console.print(f"{what} {verb} (revision {result['revision']})", highlight=False)


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--labels")
        labels[key] = value
    return labels


@put_app.command("service")
def put_service(
    name: Annotated[str, typer.Argument(help="The service name.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port callers use.")],
    protocol: Annotated[str, typer.Option(help="http, http2, grpc or tcp.")] = "http",
    namespace: Annotated[str, typer.Option()] = "default",
    health_check_path: Annotated[
        str | None,
        typer.Option(help="Callers' Envoys check each endpoint with GET PATH (200-399 pass)."),
    ] = None,
    health_check_tcp: Annotated[
        bool, typer.Option("--health-check-tcp", help="... or by connecting to it.")
    ] = False,
    health_check_interval: Annotated[str, typer.Option(help="Between two checks.")] = "5s",
    health_check_timeout: Annotated[str, typer.Option(help="For one check.")] = "1s",
    health_check_unhealthy_threshold: Annotated[
        int, typer.Option(min=1, max=100, help="Failures in a row that take an endpoint out.")
    ] = 3,
    health_check_healthy_threshold: Annotated[
        int, typer.Option(min=1, max=100, help="Successes in a row that bring it back.")
    ] = 2,
    export_to: Annotated[
        str,
        typer.Option(
            help="Namespaces whose proxies may call it, comma-separated: names, '.' (its own), "
            "'*' (every one, the default) or '~' (none)."
        ),
    ] = "",
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Register a service, or update it (idempotent). With --health-check-path or
    --health-check-tcp, every caller's Envoy checks its endpoints (docs/operations.md);
    --export-to limits which namespaces see it (docs/policies.md, Sidecar)."""
    check: dict[str, Any] | None = None
    if health_check_path is not None or health_check_tcp:
        if health_check_path is not None and health_check_tcp:
            raise typer.BadParameter("give --health-check-path or --health-check-tcp, not both")
        check = {
            "path": health_check_path,
            "interval": health_check_interval,
            "timeout": health_check_timeout,
            "unhealthy_threshold": health_check_unhealthy_threshold,
            "healthy_threshold": health_check_healthy_threshold,
        }
    result = _write(
        Api(control_plane, ca_file, ca_fingerprint),
        lambda c: c.put_service(
            name,
            namespace=namespace,
            protocol=protocol,
            port=port,
            health_check=check,
            export_to=[v.strip() for v in export_to.split(",") if v.strip()],
        ),
        wait,
        timeout,
    )
    if output is OutputFormat.TABLE:
        _said(result, f"service/{name}")
    else:
        emit(result, output, [], [])


@put_app.command("instance")
def put_instance(
    service: Annotated[str, typer.Argument(help="The service.")],
    instance_id: Annotated[str, typer.Argument(help="The instance id.")],
    address: Annotated[str, typer.Option(help="Where mesh traffic enters the instance.")],
    port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            help="Where mesh traffic enters it: its sidecar's inbound port, or the app's own.",
        ),
    ],
    labels: Annotated[str, typer.Option(help="k=v,k2=v2")] = "",
    locality: Annotated[str, typer.Option(help="region/zone/subzone")] = "",
    healthy: Annotated[bool, typer.Option("--healthy/--unhealthy")] = True,
    ttl: Annotated[
        str | None,
        typer.Option(
            help="Heartbeats (PUT …/heartbeat) must arrive within it (e.g. 30s), else the "
            "instance is unhealthy until the next: for instances without a sidecar."
        ),
    ] = None,
    sidecar: Annotated[
        bool,
        typer.Option(
            "--sidecar/--no-sidecar",
            help="An Interlock sidecar fronts it (callers send mTLS); default: plain text.",
        ),
    ] = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Register an instance, or update it (idempotent)."""
    result = _write(
        Api(control_plane, ca_file, ca_fingerprint),
        lambda c: c.put_instance(
            service,
            instance_id,
            address=address,
            port=port,
            labels=parse_labels(labels),
            locality=locality,
            healthy=healthy,
            ttl=ttl,
            sidecar=sidecar,
        ),
        wait,
        timeout,
    )
    if output is OutputFormat.TABLE:
        _said(result, f"instance/{service}/{instance_id}")
    else:
        emit(result, output, [], [])


def delete(
    kind: Annotated[
        str | None,
        typer.Argument(
            help="service, instance, or a policy kind (virtualservice, vs, dr, gw, ...).",
            show_default=False,
        ),
    ] = None,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="What to delete: NAME (a service or resources), or SERVICE ID (an instance).",
            show_default=False,
        ),
    ] = None,
    filename: Annotated[
        list[str] | None,
        typer.Option("--filename", "-f", help="Delete the resources these files (or -) describe."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="The resources' namespace.")
    ] = None,
    cascade: Annotated[
        bool, typer.Option(help="For a service: also delete its instances.")
    ] = False,
    ignore_not_found: Annotated[
        bool, typer.Option("--ignore-not-found", help="A resource that does not exist is fine.")
    ] = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Delete a service, an instance, or policy resources (by kind and name, or -f FILE)."""
    names = names or []
    api = Api(control_plane, ca_file, ca_fingerprint)
    if filename:
        if kind or names:
            raise fail("give either -f FILE or KIND NAME, not both", 2)
        targets = targets_from_files(filename, namespace)
        delete_resources(
            targets,
            ignore_not_found=ignore_not_found,
            wait=wait,
            timeout=timeout,
            api=api,
        )
        return
    if not kind or not names:
        raise fail("usage: interlock delete KIND NAME... | delete -f FILE", 2)
    word = kind.lower()
    if word in ("service", "services", "svc"):
        if len(names) != 1:
            raise fail("usage: interlock delete service NAME [--cascade]", 2)
        delete_service(names[0], cascade, wait, timeout, api)
    elif word in ("instance", "instances", "inst"):
        if len(names) != 2:
            raise fail("usage: interlock delete instance SERVICE INSTANCE_ID", 2)
        delete_instance(names[0], names[1], wait, timeout, api)
    else:
        info = resolve_kind(kind)
        ns = namespace or DEFAULT_NAMESPACE
        targets = [(f"{info.qualified_name}/{n}", info.kind, ns, n) for n in names]
        delete_resources(
            targets,
            ignore_not_found=ignore_not_found,
            wait=wait,
            timeout=timeout,
            api=api,
        )


def delete_service(name: str, cascade: bool, wait: bool, timeout: float, api: Api) -> None:
    """Delete a service (refused while it has instances, unless --cascade)."""
    result = _write(api, lambda c: c.delete_service(name, cascade=cascade), wait, timeout)
    console.print(f"service/{name} deleted (revision {result['revision']})", highlight=False)


def delete_instance(service: str, instance_id: str, wait: bool, timeout: float, api: Api) -> None:
    """Deregister an instance."""
    result = _write(api, lambda c: c.delete_instance(service, instance_id), wait, timeout)
    console.print(
        f"instance/{service}/{instance_id} deleted (revision {result['revision']})", highlight=False
    )
