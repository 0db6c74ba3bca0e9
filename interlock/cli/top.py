"""`interlock top`: the live service graph as a terminal table refreshed every two seconds, in
the manner of ``linkerd viz stat`` — one row per service with its inbound traffic, and one row
per caller → callee pair. It reads ``GET /v1/graph`` and nothing else.

A service's RPS, success rate and latencies are over its *incoming* edges in the window: RPS is
their sum, success the share of their requests that did not fail (5xx or no response), and P50
and P99 the highest of the edges' own quantiles (the API reports quantiles per edge, so this is
an upper bound of the service's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any

import typer
import yaml
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from interlock.cli.options import DEFAULT_CONTROL_PLANE, Api, CaFile, CaFingerprint, ControlPlane
from interlock.cli.output import OutputFormat, console, fail
from interlock.client import ClientError

EXTERNAL = "external"
DASH = "-"


@dataclasses.dataclass(frozen=True)
class ServiceRow:
    """One service (or a called name that is not registered) and its incoming traffic."""

    id: str
    service: str
    namespace: str
    kind: str
    instances: int
    healthy: int
    rps: float
    requests: int
    errors: int
    success_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    callers: int
    callees: int


def _highest(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def service_rows(graph: Mapping[str, Any]) -> list[ServiceRow]:
    """A row per node of ``graph`` (a ``GET /v1/graph`` body) except callers from outside the
    mesh, sorted by id."""
    edges: list[Mapping[str, Any]] = list(graph.get("edges", []))
    rows = []
    for node in graph.get("nodes", []):
        if node["kind"] == EXTERNAL:
            continue
        into = [e for e in edges if e["destination"] == node["id"]]
        requests = sum(int(e["requests"]) for e in into)
        errors = sum(int(e["errors"]) for e in into)
        rows.append(
            ServiceRow(
                id=node["id"],
                service=node["service"],
                namespace=node["namespace"],
                kind=node["kind"],
                instances=int(node["instances"]),
                healthy=int(node["healthy"]),
                rps=round(sum((float(e["rps"]) for e in into), 0.0), 3),
                requests=requests,
                errors=errors,
                success_rate=round(1 - errors / requests, 4) if requests else None,
                p50_ms=_highest([e["p50_ms"] for e in into]),
                p99_ms=_highest([e["p99_ms"] for e in into]),
                callers=len({e["source"] for e in into}),
                callees=len({e["destination"] for e in edges if e["source"] == node["id"]}),
            )
        )
    return sorted(rows, key=lambda r: r.id)


def document(graph: Mapping[str, Any]) -> dict[str, Any]:
    """What ``-o json`` and ``-o yaml`` print: the table's rows and the graph's edges."""
    return {
        "window_seconds": graph.get("window_seconds"),
        "generated_at": graph.get("generated_at"),
        "revision": graph.get("revision"),
        "services": [dataclasses.asdict(row) for row in service_rows(graph)],
        "edges": list(graph.get("edges", [])),
    }


# -- how numbers are shown (the dashboard's format.js follows the same rules) ------------------
def fmt_rps(value: float) -> str:
    if not value:
        return "0"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def fmt_percent(ratio: float | None) -> str:
    return DASH if ratio is None else f"{ratio * 100:.1f}%"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return DASH
    if value >= 1000:
        return f"{value / 1000:.0f} s" if value >= 10000 else f"{value / 1000:.1f} s"
    return f"{value:.0f} ms"


def node_label(node_id: str) -> str:
    """A node id as shown: the bare name in the default namespace."""
    return node_id.removesuffix(".default")


def _ratio_style(bad_share: float | None) -> str:
    if not bad_share:
        return ""
    return "yellow" if bad_share < 0.05 else "red"


def _table(*headers: str, right: Sequence[str] = ()) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, justify="right" if header in right else "left", no_wrap=True)
    return table


def render(graph: Mapping[str, Any], control_plane: str) -> RenderableType:
    """The screen: a title line, the services table and the edges table."""
    window = float(graph.get("window_seconds") or 0)
    at = graph.get("generated_at") or ""
    try:
        clock = dt.datetime.fromisoformat(at).astimezone().strftime("%H:%M:%S")
    except ValueError:
        clock = at
    title = Text.assemble(
        ("interlock top", "bold"),
        f"  {control_plane}  last {window:g} s  revision {graph.get('revision', DASH)}  {clock}",
    )

    rows = service_rows(graph)
    if rows:
        services = _table(
            "SERVICE",
            "NAMESPACE",
            "INSTANCES",
            "RPS",
            "SUCCESS",
            "P50",
            "P99",
            "CALLERS",
            "CALLEES",
            right=("INSTANCES", "RPS", "SUCCESS", "P50", "P99", "CALLERS", "CALLEES"),
        )
        for r in rows:
            registered = r.kind == "service"
            instances = f"{r.healthy}/{r.instances}" if registered else DASH
            failing = None if r.success_rate is None else 1 - r.success_rate
            services.add_row(
                r.service if registered else f"{r.service} (unregistered)",
                r.namespace,
                Text(instances, style="red" if r.healthy < r.instances else ""),
                fmt_rps(r.rps),
                Text(fmt_percent(r.success_rate), style=_ratio_style(failing)),
                fmt_ms(r.p50_ms),
                fmt_ms(r.p99_ms),
                str(r.callers),
                str(r.callees),
            )
        first: RenderableType = services
    else:
        first = Text("No services registered.")

    edges_data: list[Mapping[str, Any]] = list(graph.get("edges", []))
    if edges_data:
        edges = _table(
            "SOURCE",
            "",
            "DESTINATION",
            "RPS",
            "ERR %",
            "P50",
            "P99",
            right=("RPS", "ERR %", "P50", "P99"),
        )
        for e in edges_data:
            edges.add_row(
                node_label(e["source"]),
                "→",
                node_label(e["destination"]),
                fmt_rps(float(e["rps"])),
                Text(fmt_percent(e["error_rate"]), style=_ratio_style(e["error_rate"])),
                fmt_ms(e["p50_ms"]),
                fmt_ms(e["p99_ms"]),
            )
        second: RenderableType = edges
    else:
        second = Text(f"No traffic in the last {window:g} s.")
    return Group(title, Text(""), first, Text(""), second)


def _print(graph: Mapping[str, Any], output: OutputFormat, control_plane: str) -> None:
    if output is OutputFormat.JSON:
        typer.echo(json.dumps(document(graph), indent=2, sort_keys=True))
    elif output is OutputFormat.YAML:
        typer.echo(yaml.safe_dump(document(graph), sort_keys=True).rstrip())
    else:
        console.print(render(graph, control_plane))


def _wait_until(due: float, interval: float, stop: threading.Event) -> float:
    """Sleep until ``due`` (monotonic) or Ctrl-C; the next refresh is due ``interval`` later,
    or now if the last one overran."""
    stop.wait(max(0.0, due - time.monotonic()))
    return max(due + interval, time.monotonic())


@contextlib.contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """While inside, Ctrl-C (SIGINT) sets ``stop`` instead of raising KeyboardInterrupt
    wherever the program happens to be: raised inside the HTTP client's connection pool, it
    could leave a lock held and hang the exit."""
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    except ValueError:  # not the main thread (e.g. an embedding test runner): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def top(
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
    window: Annotated[
        float, typer.Option(min=1.0, max=3600.0, help="Seconds of traffic to look back on.")
    ] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="Print once and exit.")] = False,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.")
    ] = OutputFormat.TABLE,
    interval: Annotated[
        float, typer.Option(min=0.5, max=3600.0, help="Seconds between refreshes.")
    ] = 2.0,
) -> None:
    """Live traffic per service and per caller → callee pair, until Ctrl-C.

    In a terminal the tables are redrawn in place.
    Piped, or with -o json|yaml, each refresh is printed after the last.
    """
    params = {"window": f"{window:g}"}
    stop = threading.Event()
    try:
        with Api(control_plane, ca_file, ca_fingerprint).client() as client, _ctrl_c_sets(stop):

            def fetch() -> Mapping[str, Any]:
                graph: Mapping[str, Any] = client.request("GET", "/v1/graph", params=params)
                return graph

            graph = fetch()
            if once:
                _print(graph, output, control_plane)
                return
            due = time.monotonic() + interval
            if output is OutputFormat.TABLE and console.is_terminal:
                with Live(
                    render(graph, control_plane), console=console, auto_refresh=False
                ) as live:
                    while not stop.is_set():
                        due = _wait_until(due, interval, stop)
                        if not stop.is_set():
                            live.update(render(fetch(), control_plane), refresh=True)
                return
            while True:
                _print(graph, output, control_plane)
                due = _wait_until(due, interval, stop)
                if stop.is_set():
                    return
                graph = fetch()
                if output is OutputFormat.YAML:
                    typer.echo("---")
                else:
                    typer.echo("")
    except ClientError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
