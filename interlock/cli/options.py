"""The options CLI commands share, defined once: where the control plane is and how its
certificate is trusted, output format, ``--wait``/``--timeout``, HOST:PORT values.

Every command that calls the REST API takes ``--control-plane`` (``INTERLOCK_CONTROL_PLANE``),
``--ca-file`` (``INTERLOCK_CA_FILE``) and ``--ca-fingerprint`` (``INTERLOCK_CA_FINGERPRINT``)
and opens its client with :func:`api_client`, so a wrong value fails the same way everywhere:
a clean ``error:`` line and exit code 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from interlock.cli.output import OutputFormat, fail
from interlock.client import DEFAULT_CONTROL_PLANE, ClientError, InterlockClient
from interlock.model.addresses import HostPort
from interlock.sidecar import EnvoyNotFound, SidecarError, XdsProtocol
from interlock.sidecar.run import Say
from interlock.trust import Trust

ControlPlane = Annotated[
    str,
    typer.Option(
        "--control-plane",
        envvar="INTERLOCK_CONTROL_PLANE",
        help="REST API base URL (https://HOST:PORT; http:// only for a --plaintext server); "
        "every replica's, comma-separated: a call goes to the next when one does not answer.",
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

# -- what `interlock sidecar` and `interlock gateway` share: running an Envoy of the mesh --------
Xds = Annotated[
    str,
    typer.Option(
        help="HOST:PORT of the xDS server; every replica's, comma-separated "
        "(A:18000,B:18000): Envoy keeps one stream and moves it to another replica "
        "within 5 s when the one it uses stops answering."
    ),
]
XdsProtocolName = Annotated[
    str, typer.Option(help="delta (incremental) or sotw (state of the world).")
]
EnvoyBinary = Annotated[str | None, typer.Option(help="The Envoy binary (default: envoy on PATH).")]
DrainSeconds = Annotated[
    float,
    typer.Option(min=0.0, help="On SIGTERM, seconds between deregistering and stopping Envoy."),
]
RegisterTimeout = Annotated[
    float, typer.Option(min=0.0, help="How long to wait for the control plane at start.")
]
EnvoyLogLevel = Annotated[str, typer.Option(help="Envoy's log level.")]
ApiTokenFile = Annotated[
    Path | None,
    typer.Option(
        help="A file holding the API token to register with (else INTERLOCK_TOKEN): a "
        "registration token for the service (interlock credentials) or the admin token. "
        "Envoy then gets a proxy token of its own."
    ),
]
DEFAULT_XDS = "127.0.0.1:18000"
Wait = Annotated[
    bool, typer.Option("--wait", help="Block until every connected proxy ACKed the change.")
]
Timeout = Annotated[float, typer.Option("--timeout", min=0.0, help="Seconds --wait waits.")]

__all__ = [
    "DEFAULT_CONTROL_PLANE",
    "DEFAULT_XDS",
    "Api",
    "ApiTokenFile",
    "CaFile",
    "CaFingerprint",
    "ControlPlane",
    "DrainSeconds",
    "EnvoyBinary",
    "EnvoyLogLevel",
    "Output",
    "RegisterTimeout",
    "Timeout",
    "Wait",
    "Xds",
    "XdsProtocolName",
    "host_port",
    "host_ports",
    "run_envoy",
    "trust_of",
    "xds_protocol_of",
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


def xds_protocol_of(value: str) -> XdsProtocol:
    """``--xds-protocol``: delta or sotw."""
    try:
        return XdsProtocol(value)
    except ValueError:
        raise typer.BadParameter("must be 'delta' or 'sotw'", param_hint="--xds-protocol") from None


def run_envoy(kind: str, run: Callable[[Say], int]) -> NoReturn:
    """Run a sidecar or a gateway (``run`` gets how to say things), exiting with its code; a
    reason it cannot start is one ``error:`` line, exit code 1."""
    try:
        code = run(lambda message: typer.echo(f"{kind}: {message}", err=True))
    except (SidecarError, EnvoyNotFound, ValueError) as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


def host_ports(value: str, option: str) -> tuple[HostPort, ...]:
    """A comma-separated list of HOST:PORT (``--xds``: every replica), at least one, each
    once."""
    parts = [part.strip() for part in value.split(",")]
    if not all(parts):
        raise typer.BadParameter("an empty HOST:PORT in the list", param_hint=option)
    addresses = tuple(host_port(part, option) for part in parts)
    if len(set(addresses)) != len(addresses):
        raise typer.BadParameter("a HOST:PORT is listed twice", param_hint=option)
    return addresses


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
