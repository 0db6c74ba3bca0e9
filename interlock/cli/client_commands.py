"""`interlock get`: a client of the REST API, with kubectl-style output (-o table|json|yaml).

``get services [NAME]``, ``get instances SERVICE`` and ``get KIND [NAME] [-n NAMESPACE]`` for
policy resources (``virtualservices``, ``vs``, ``dr``, ``gw``, ...; any case)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from interlock.cli.output import OutputFormat, emit, fail
from interlock.cli.resource_commands import get_resources, resolve_kind
from interlock.client import ClientError, InterlockClient

ControlPlane = Annotated[
    str,
    typer.Option("--control-plane", envvar="INTERLOCK_CONTROL_PLANE", help="REST API base URL."),
]
Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.")]

SERVICES = frozenset({"service", "services", "svc"})
INSTANCES = frozenset({"instance", "instances", "inst"})


def _call(control_plane: str, fn: Any) -> Any:
    try:
        with InterlockClient(control_plane) as client:
            return fn(client)
    except ClientError as exc:
        raise fail(str(exc)) from None


def get(
    kind: Annotated[
        str,
        typer.Argument(
            help="services, instances, or a policy kind: virtualservices (vs), "
            "destinationrules (dr), gateways (gw), serviceentries (se), peerauthentications "
            "(pa), requestauthentications (ra), authorizationpolicies (ap), ratelimits, "
            "telemetries.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None,
        typer.Argument(help="One resource (for instances: the service); all when omitted."),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n", help="Only this namespace (a named resource: default 'default')."
        ),
    ] = None,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = "http://127.0.0.1:8080",
) -> None:
    """Show services, instances or policy resources."""
    word = kind.lower()
    if word in SERVICES:
        get_services(name, namespace, output, control_plane)
    elif word in INSTANCES:
        if not name:
            raise fail("get instances needs the service: interlock get instances SERVICE", 2)
        get_instances(name, output, control_plane)
    else:
        get_resources(resolve_kind(kind), name, namespace, output, control_plane)


def get_services(
    name: str | None, namespace: str | None, output: OutputFormat, control_plane: str
) -> None:
    """List services (or show one)."""
    if name:
        data = _call(control_plane, lambda c: c.get_service(name))
        rows = [data]
    else:
        data = _call(control_plane, lambda c: c.list_services())
        rows = list(data.get("items", [])) if isinstance(data, dict) else list(data)
        if namespace:
            rows = [r for r in rows if r.get("namespace") == namespace]
            data = {**data, "items": rows}
    emit(
        data,
        output,
        [("name", "NAME"), ("namespace", "NAMESPACE"), ("protocol", "PROTOCOL"), ("port", "PORT")],
        rows,
    )


def get_instances(service: str, output: OutputFormat, control_plane: str) -> None:
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
