"""Output conventions shared by CLI commands: a table by default, JSON or YAML with ``-o``."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

# Piped output is never truncated to 80 columns: scripts read every character.
console = Console(width=None if sys.stdout.isatty() else 10_000)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 10_000)


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def emit(
    data: Any, fmt: OutputFormat, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]
) -> None:
    """Print ``data`` as JSON/YAML, or ``rows`` as a table with ``columns`` (key, header)."""
    if fmt is OutputFormat.JSON:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if fmt is OutputFormat.YAML:
        typer.echo(yaml.safe_dump(data, sort_keys=True).rstrip())
        return
    if not rows:
        console.print("No resources found.")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for _, header in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _ in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
