"""The options CLI commands share, defined once: where the control plane is and how its
certificate is trusted, output format, ``--wait``/``--timeout``, HOST:PORT values.

Every command that calls the REST API takes ``--control-plane`` (``INTERLOCK_CONTROL_PLANE``),
``--ca-file`` (``INTERLOCK_CA_FILE``) and ``--ca-fingerprint`` (``INTERLOCK_CA_FINGERPRINT``)
and opens its client with :func:`api_client`, so a wrong value fails the same way everywhere:
a clean ``error:`` line and exit code 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from interlock.cli.output import OutputFormat, fail
from interlock.client import DEFAULT_CONTROL_PLANE, ClientError, InterlockClient
from interlock.model.addresses import HostPort
from interlock.trust import Trust

ControlPlane = Annotated[
    str,
    typer.Option(
        "--control-plane",
        envvar="INTERLOCK_CONTROL_PLANE",
        help="REST API base URL (https://HOST:PORT; http:// only for a --plaintext server).",
    ),
]
CaFile = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        envvar="INTERLOCK_CA_FILE",
        help="The mesh's CA bundle (PEM) to verify the control plane with "
        "(the server writes it beside its database: <db>.ca.pem).",
        show_default=False,
    ),
]
CaFingerprint = Annotated[
    str | None,
    typer.Option(
        "--ca-fingerprint",
        envvar="INTERLOCK_CA_FINGERPRINT",
        help="sha256:HEX of a root CA (printed by the server at start): fetch the bundle "
        "once and trust it only if it holds that root.",
        show_default=False,
    ),
]
Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.")]
Wait = Annotated[
    bool, typer.Option("--wait", help="Block until every connected proxy ACKed the change.")
]
Timeout = Annotated[float, typer.Option("--timeout", min=0.0, help="Seconds --wait waits.")]

__all__ = [
    "DEFAULT_CONTROL_PLANE",
    "Api",
    "CaFile",
    "CaFingerprint",
    "ControlPlane",
    "Output",
    "Timeout",
    "Wait",
    "host_port",
    "trust_of",
]


def trust_of(ca_file: Path | None, ca_fingerprint: str | None) -> Trust:
    """The trust options as one value; a malformed fingerprint is a usage error (exit 2)."""
    try:
        return Trust.of(ca_file, ca_fingerprint)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ca-fingerprint") from None


@dataclass(frozen=True)
class Api:
    """The three shared options together: where the REST API is and how it is trusted."""

    url: str = DEFAULT_CONTROL_PLANE
    ca_file: Path | None = None
    ca_fingerprint: str | None = None

    @property
    def trust(self) -> Trust:
        return trust_of(self.ca_file, self.ca_fingerprint)

    def client(self, *, timeout: float = 5.0, token: str | None = None) -> InterlockClient:
        """A client trusting the server's certificate as the options say; a reason it cannot
        be made (an unreadable CA file, a fingerprint no root has) exits 1."""
        try:
            return InterlockClient(self.url, trust=self.trust, timeout=timeout, token=token)
        except ClientError as exc:
            raise fail(str(exc)) from None


def host_port(value: str, option: str, *, allow_any_port: bool = False) -> HostPort:
    """``HOST:PORT`` (or ``[v6]:PORT``), or a usage error naming ``option``; port 0 ("any
    free port") only with ``allow_any_port`` (a listener)."""
    try:
        return HostPort.parse(value, allow_any_port=allow_any_port)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str, option: str) -> float:
    """``90s``, ``15m``, ``24h``, ``7d``, ``500ms`` or plain seconds → seconds."""
    text = value.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number, scale = text[: -len(unit)], _UNITS[unit]
            break
    else:
        number, scale = text, 1.0
    try:
        seconds = float(number) * scale
    except ValueError:
        raise typer.BadParameter(
            f"expected a duration such as 60s, 15m or 24h, got {value!r}", param_hint=option
        ) from None
    if seconds <= 0:
        raise typer.BadParameter("must be positive", param_hint=option)
    return seconds
