"""`interlock proxy-status`, `interlock proxy-config` and the `--wait` of write commands:
"did my change land?" answered from the control plane's own record of ACKs and NACKs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.status import Status

from interlock.cli.options import (
    DEFAULT_CONTROL_PLANE,
    Api,
    CaFile,
    CaFingerprint,
    ControlPlane,
    Output,
)
from interlock.cli.output import OutputFormat, console, emit, err_console, fail
from interlock.client import ClientError, InterlockClient

TYPES = ("clusters", "endpoints", "listeners", "routes", "secrets")
SHORT = {
    "clusters": "CDS",
    "endpoints": "EDS",
    "listeners": "LDS",
    "routes": "RDS",
    "secrets": "SDS",
}


def proxy_status(
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Every connected proxy and, per xDS type, SYNCED / STALE / NACKED / NOT SENT; and every
    proxy the control plane refuses (XDS: REFUSED, e.g. an unsupported Envoy release), why."""
    try:
        with Api(control_plane, ca_file, ca_fingerprint).client() as client:
            data = client.list_proxies()
    except ClientError as exc:
        raise fail(str(exc)) from None
    rows = []
    problems: list[str] = []
    for proxy in data["items"]:
        refused = proxy.get("refused_at") is not None
        problems.extend(
            f"{proxy['node_id']}: {problem['message']}" for problem in proxy.get("problems") or []
        )
        row: dict[str, Any] = {
            "node_id": proxy["node_id"],
            "service": f"{proxy['service']}.{proxy['namespace']}",
            "variant": "REFUSED" if refused else proxy["variant"].upper(),
            "revision": proxy["synced_revision"],
            "version": proxy["envoy_version"],
        }
        states = {t["type"]: t["state"] for t in proxy["types"]}
        for name, short in SHORT.items():
            row[short] = states.get(name, "NOT SENT")
        rows.append(row)
    emit(
        data,
        output,
        [
            ("node_id", "NAME"),
            ("service", "SERVICE"),
            ("variant", "XDS"),
            *((s, s) for s in SHORT.values()),
            ("revision", "REVISION"),
            ("version", "ENVOY"),
        ],
        rows,
    )
    if output is OutputFormat.TABLE:
        for line in problems:
            err_console.print(f"problem: {line}", style="red", highlight=False, markup=False)


def _summary(type_name: str, resource: dict[str, Any]) -> str:
    if type_name == "clusters":
        return str(resource.get("type", "EDS" if "eds_cluster_config" in resource else ""))
    if type_name == "endpoints":
        hosts = [
            f"{ep['endpoint']['address']['socket_address']['address']}:"
            f"{ep['endpoint']['address']['socket_address'].get('port_value', '')}"
            for group in resource.get("endpoints", [])
            for ep in group.get("lb_endpoints", [])
        ]
        return ", ".join(hosts) or "(no endpoints)"
    if type_name == "listeners":
        addr = resource.get("address", {}).get("socket_address", {})
        return f"{addr.get('address', '')}:{addr.get('port_value', '')}"
    if type_name == "routes":
        return f"{len(resource.get('virtual_hosts', []))} virtual hosts"
    return ""


def proxy_config(
    proxy: Annotated[str, typer.Argument(help="The proxy's node id (see proxy-status).")],
    type_: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="clusters, endpoints, listeners, routes or secrets."),
    ] = None,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """What the control plane serves one proxy (secrets redacted)."""
    for t in type_ or []:
        if t not in TYPES:
            raise typer.BadParameter(f"{t!r} is not one of {', '.join(TYPES)}", param_hint="--type")
    try:
        with Api(control_plane, ca_file, ca_fingerprint).client() as client:
            data = client.proxy_config(proxy, type_)
    except ClientError as exc:
        raise fail(str(exc)) from None
    rows = [
        {"type": t, "name": r.get("name") or r.get("cluster_name", ""), "summary": _summary(t, r)}
        for t in TYPES
        for r in data["resources"].get(t, [])
    ]
    emit(data, output, [("type", "TYPE"), ("name", "NAME"), ("summary", "DETAIL")], rows)


def wait_for_rollout(client: InterlockClient, revision: int, timeout: float) -> None:
    """Block until ``revision`` is ACKed by every connected proxy, showing progress; raise
    typer.Exit(1) naming who NACKed it or who is still pending when time runs out."""
    deadline = time.monotonic() + timeout
    report: dict[str, Any] = {}
    with Status(
        f"waiting for revision {revision} to reach every proxy ...", console=err_console
    ) as status:
        while True:
            remaining = deadline - time.monotonic()
            report = client.revision_report(revision, wait=max(0.0, min(1.0, remaining)))
            p = report["proxies"]
            status.update(
                f"revision {revision}: {p['acked']}/{p['total']} proxies ACKed"
                + (f", {p['nacked']} NACKed" if p["nacked"] else "")
            )
            if p["complete"] or remaining <= 0:
                break
    p = report["proxies"]
    if p["nacked"]:
        for proxy in p["nacked_proxies"]:
            err_console.print(f"NACKED by {proxy['node_id']}: {proxy['message']}", highlight=False)
        raise fail(f"revision {revision} was rejected by {p['nacked']} of {p['total']} proxies")
    if not p["complete"]:
        names = ", ".join(proxy["node_id"] for proxy in p["pending_proxies"])
        raise fail(f"revision {revision} is not ACKed after {timeout:g}s by: {names}")
    console.print(f"revision {revision}: ACKed by {p['acked']}/{p['total']} proxies")
