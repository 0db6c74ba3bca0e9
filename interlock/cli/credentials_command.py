"""`interlock credentials`: what the hosts of a service need to join the mesh, as files.

For each service: ``DIR/<service>/registration-token`` (mode 0600: a registration token that
may register instances of that one service in its one namespace, and nothing else) and
``DIR/<service>/ca.pem`` (the CA bundle the sidecar verifies the control plane with). Give each
service's hosts its own directory — never the control plane's database, KEK or admin token.
Running it again issues new tokens and revokes the ones it wrote before (their ids are kept in
``registration-token-id``), and refreshes ``ca.pem`` (e.g. after a root rotation).
"""

from __future__ import annotations

import os
from pathlib import Path
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
from interlock.cli.output import OutputFormat, emit, err_console, fail
from interlock.client import ApiError, ClientError, InterlockClient
from interlock.model.names import namespace_error, service_name_error
from interlock.sidecar.run import SidecarError, SidecarOptions, connect, retrying

TOKEN_FILE = "registration-token"
TOKEN_ID_FILE = "registration-token-id"
CA_FILE = "ca.pem"
COLUMNS = [
    ("service", "SERVICE"),
    ("namespace", "NAMESPACE"),
    ("token_id", "TOKEN ID"),
    ("directory", "DIRECTORY"),
]


def credentials(
    services: Annotated[
        list[str], typer.Argument(help="The services to write credentials for.", show_default=False)
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Write DIR/<service>/{registration-token,ca.pem}.")
    ],
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="The services' namespace.")
    ] = "default",
    token_file: Annotated[
        Path | None,
        typer.Option(help="A file holding the admin token (else INTERLOCK_TOKEN)."),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds to wait for the control plane (and its token and bundle files) to "
            "be there, as when it starts beside this command.",
        ),
    ] = 30.0,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Write each service's registration token and the CA bundle, for its hosts (e.g. a
    docker-compose volume per service). Tokens are never printed."""
    for service in services:
        if err := service_name_error(service):
            raise typer.BadParameter(err, param_hint="SERVICES")
    if err := namespace_error(namespace):
        raise typer.BadParameter(err, param_hint="--namespace")
    api = Api(control_plane, ca_file, ca_fingerprint)
    opts = SidecarOptions(
        control_plane=control_plane,
        trust=api.trust,
        register_timeout=timeout,
        api_token_file=token_file,
    )
    rows: list[dict[str, Any]] = []

    def say(message: str) -> None:
        err_console.print(message, highlight=False)

    try:
        client = connect(opts, say)
        answer = retrying(client.ca_bundle, timeout, "waiting for the control plane ...", say)
    except SidecarError as exc:
        raise fail(str(exc)) from None
    with client:
        try:
            bundle = str(answer["pem"])
            for service in services:
                rows.append(_write_service(client, out / service, service, namespace, bundle))
        except ClientError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise fail(f"cannot write into --out {out}: {exc.strerror or exc}") from None
    emit({"items": rows}, output, COLUMNS, rows)


def _write_service(
    client: InterlockClient, directory: Path, service: str, namespace: str, bundle: str
) -> dict[str, Any]:
    """Issue a registration token for ``service`` and write it and ``bundle`` into
    ``directory``; revoke the token this command wrote there before."""
    issued = client.request(
        "POST",
        f"/v1/services/{service}/registration-token",
        params={"namespace": namespace},
    )
    directory.mkdir(parents=True, exist_ok=True)
    previous = _read_optional(directory / TOKEN_ID_FILE)
    _replace(directory / TOKEN_FILE, str(issued["token"]), 0o600)
    _replace(directory / TOKEN_ID_FILE, str(issued["token_id"]), 0o644)
    _replace(directory / CA_FILE, bundle, 0o644)
    if previous and previous != issued["token_id"]:
        try:
            client.revoke_token(previous)
        except ApiError as exc:
            if exc.status != 404:
                raise
    return {
        "service": service,
        "namespace": str(issued["namespace"]),
        "token_id": str(issued["token_id"]),
        "directory": str(directory),
    }


def _read_optional(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _replace(path: Path, text: str, mode: int) -> None:
    """Write ``path`` whole, with ``mode`` from the start (a token is never world-readable,
    not even for a moment), replacing it at once."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    tmp.replace(path)
