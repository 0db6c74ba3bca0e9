"""Read commands: clients of the REST API, with kubectl-style output (-o table|json|yaml)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interlock.cli.output import OutputFormat, emit, fail
from interlock.client import ClientError, InterlockClient

get_app = typer.Typer(help="Show registered services and instances.", no_args_is_help=True)

ControlPlane = Annotated[
    str,
    typer.Option("--control-plane", envvar="INTERLOCK_CONTROL_PLANE", help="REST API base URL."),
]
Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.")]


def _call(control_plane: str, fn: Any) -> Any:
    try:
        with InterlockClient(control_plane) as client:
            return fn(client)
    except ClientError as exc:
        raise fail(str(exc)) from None


@get_app.command("services")
def get_services(
    name: Annotated[str | None, typer.Argument(help="One service; all when omitted.")] = None,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = "http://127.0.0.1:8080",
) -> None:
    """List services (or show one)."""
    if name:
        data = _call(control_plane, lambda c: c.get_service(name))
        rows = [data]
    else:
        data = _call(control_plane, lambda c: c.list_services())
        rows = list(data.get("items", [])) if isinstance(data, dict) else list(data)
    emit(
        data,
        output,
        [("name", "NAME"), ("namespace", "NAMESPACE"), ("protocol", "PROTOCOL"), ("port", "PORT")],
        rows,
    )


@get_app.command("instances")
def get_instances(
    service: Annotated[str, typer.Argument(help="The service whose instances to list.")],
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = "http://127.0.0.1:8080",
) -> None:
    """List a service's instances."""
    data = _call(control_plane, lambda c: c.list_instances(service))
    rows = list(data.get("items", [])) if isinstance(data, dict) else list(data)
    emit(
        data,
        output,
        [
            ("instance_id", "INSTANCE"),
            ("address", "ADDRESS"),
            ("port", "PORT"),
            ("labels", "LABELS"),
            ("locality", "LOCALITY"),
            ("healthy", "HEALTHY"),
        ],
        rows,
    )
