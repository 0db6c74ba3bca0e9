"""`interlock put` and `interlock delete` for services and instances, with `--wait`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interlock.cli.output import OutputFormat, console, emit, fail
from interlock.cli.status_commands import wait_for_rollout
from interlock.client import ClientError, InterlockClient

put_app = typer.Typer(help="Register or update services and instances.", no_args_is_help=True)
delete_app = typer.Typer(help="Remove services and instances.", no_args_is_help=True)

ControlPlane = Annotated[
    str,
    typer.Option("--control-plane", envvar="INTERLOCK_CONTROL_PLANE", help="REST API base URL."),
]
Wait = Annotated[
    bool, typer.Option("--wait", help="Block until every connected proxy ACKed the change.")
]
Timeout = Annotated[float, typer.Option("--timeout", min=0.0, help="Seconds --wait waits.")]
Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.")]


def _write(control_plane: str, call: Any, wait: bool, timeout: float) -> dict[str, Any]:
    try:
        with InterlockClient(control_plane) as client:
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
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = "http://127.0.0.1:8080",
) -> None:
    """Register a service, or update it (idempotent)."""
    result = _write(
        control_plane,
        lambda c: c.put_service(name, namespace=namespace, protocol=protocol, port=port),
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
    port: Annotated[int, typer.Option(min=1, max=65535, help="Its sidecar's inbound port.")],
    labels: Annotated[str, typer.Option(help="k=v,k2=v2")] = "",
    locality: Annotated[str, typer.Option(help="region/zone/subzone")] = "",
    healthy: Annotated[bool, typer.Option("--healthy/--unhealthy")] = True,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = "http://127.0.0.1:8080",
) -> None:
    """Register an instance, or update it (idempotent)."""
    result = _write(
        control_plane,
        lambda c: c.put_instance(
            service,
            instance_id,
            address=address,
            port=port,
            labels=parse_labels(labels),
            locality=locality,
            healthy=healthy,
        ),
        wait,
        timeout,
    )
    if output is OutputFormat.TABLE:
        _said(result, f"instance/{service}/{instance_id}")
    else:
        emit(result, output, [], [])


@delete_app.command("service")
def delete_service(
    name: Annotated[str, typer.Argument()],
    cascade: Annotated[bool, typer.Option(help="Also delete its instances.")] = False,
    wait: Wait = False,
    timeout: Timeout = 30.0,
    control_plane: ControlPlane = "http://127.0.0.1:8080",
) -> None:
    """Delete a service (refused while it has instances, unless --cascade)."""
    result = _write(control_plane, lambda c: c.delete_service(name, cascade=cascade), wait, timeout)
    console.print(f"service/{name} deleted (revision {result['revision']})", highlight=False)


@delete_app.command("instance")
def delete_instance(
    service: Annotated[str, typer.Argument()],
    instance_id: Annotated[str, typer.Argument()],
    wait: Wait = False,
    timeout: Timeout = 30.0,
    control_plane: ControlPlane = "http://127.0.0.1:8080",
) -> None:
    """Deregister an instance."""
    result = _write(control_plane, lambda c: c.delete_instance(service, instance_id), wait, timeout)
    console.print(
        f"instance/{service}/{instance_id} deleted (revision {result['revision']})", highlight=False
    )
