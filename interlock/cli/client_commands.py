"""`interlock get`: a client of the REST API, with kubectl-style output (-o table|json|yaml).

``get services [NAME]``, ``get instances SERVICE`` and ``get KIND [NAME] [-n NAMESPACE]`` for
policy resources (``virtualservices``, ``vs``, ``dr``, ``gw``, ...; any case)."""

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
)
from interlock.cli.output import OutputFormat, emit, fail
from interlock.cli.resource_commands import get_resources, resolve_kind
from interlock.client import ClientError

SERVICES = frozenset({"service", "services", "svc"})
INSTANCES = frozenset({"instance", "instances", "inst"})


def _call(api: Api, fn: Any) -> Any:
    try:
        with api.client() as client:
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
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Show services, instances or policy resources."""
    api = Api(control_plane, ca_file, ca_fingerprint)
    word = kind.lower()
    if word in SERVICES:
        get_services(name, namespace, output, api)
    elif word in INSTANCES:
        if not name:
            raise fail("get instances needs the service: interlock get instances SERVICE", 2)
        get_instances(name, output, api)
    else:
        get_resources(resolve_kind(kind), name, namespace, output, api)


def get_services(name: str | None, namespace: str | None, output: OutputFormat, api: Api) -> None:
    """List services (or show one)."""
    if name:
        data = _call(api, lambda c: c.get_service(name))
        rows = [data]
    else:
        data = _call(api, lambda c: c.list_services())
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


def get_instances(service: str, output: OutputFormat, api: Api) -> None:
    """List a service's instances."""
    data = _call(api, lambda c: c.list_instances(service))
    rows = list(data.get("items", [])) if isinstance(data, dict) else list(data)
    rows = [{**r, "reason": (r.get("health") or {}).get("reason", "")} for r in rows]
    emit(
        data,
        output,
        [
            ("instance_id", "INSTANCE"),
            ("address", "ADDRESS"),
            ("port", "PORT"),
            ("labels", "LABELS"),
            ("locality", "LOCALITY"),
            ("sidecar", "SIDECAR"),
            ("ttl", "TTL"),
            ("healthy", "HEALTHY"),
            ("reason", "REASON"),
        ],
        rows,
    )
