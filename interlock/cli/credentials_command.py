"""`interlock credentials`: what the hosts of a service need to join the mesh, as files.

For each service: ``DIR/<service>/registration-token`` (mode 0600: a registration token that
may register instances of that one service in its one namespace, and nothing else) and
``DIR/<service>/ca.pem`` (the CA bundle the sidecar verifies the control plane with). Give each
service's hosts its own directory — never the control plane's database, KEK or admin token.
Running it again issues new tokens and revokes the ones it wrote before (their ids are kept in
``registration-token-id``), and refreshes ``ca.pem`` (e.g. after a root rotation).

For an Envoy fleet that keeps its own bootstrap (docs/existing-envoy.md), ``--instance
ID=ADDRESS:PORT`` (repeated, one service) also registers each instance and writes its proxy
token to ``DIR/<service>/<ID>/xds-token`` (mode 0600), the file its Envoy's bootstrap names;
the previous one is revoked in the same way (``xds-token-id``).
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
    host_port,
)
from interlock.cli.output import OutputFormat, emit, err_console, fail
from interlock.client import ApiError, ClientError, InterlockClient
from interlock.model.names import instance_id_error, namespace_error, service_name_error
from interlock.sidecar.run import SidecarError, SidecarOptions, connect, retrying

TOKEN_FILE = "registration-token"
TOKEN_ID_FILE = "registration-token-id"
PROXY_TOKEN_FILE = "xds-token"
PROXY_TOKEN_ID_FILE = "xds-token-id"
CA_FILE = "ca.pem"
COLUMNS = [
    ("service", "SERVICE"),
    ("instance", "INSTANCE"),
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
    instance: Annotated[
        list[str] | None,
        typer.Option(
            "--instance",
            help="ID=ADDRESS:PORT: register this instance of the (one) service and write its "
            "proxy token to DIR/<service>/<ID>/xds-token, for an Envoy with its own bootstrap "
            "(docs/existing-envoy.md). Repeat it for each.",
        ),
    ] = None,
    sidecar: Annotated[
        bool,
        typer.Option(
            "--sidecar/--no-sidecar",
            help="With --instance: each instance's Envoy takes mTLS on ADDRESS:PORT (it gets "
            "its listeners from Interlock); else callers send it plain text.",
        ),
    ] = False,
    service_port: Annotated[
        int,
        typer.Option(
            min=1, max=65535, help="With --instance: the service's port, if it is not registered."
        ),
    ] = 8080,
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Write each service's registration token and the CA bundle, for its hosts (e.g. a
    docker-compose volume per service); with --instance, register instances and write their
    proxy tokens (an existing Envoy fleet). Tokens are never printed."""
    for service in services:
        if err := service_name_error(service):
            raise typer.BadParameter(err, param_hint="SERVICES")
    if err := namespace_error(namespace):
        raise typer.BadParameter(err, param_hint="--namespace")
    fleet = [_instance_of(value) for value in instance or []]
    if fleet and len(services) != 1:
        raise typer.BadParameter("--instance needs exactly one service", param_hint="--instance")
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
            for instance_id, address, port in fleet:
                (service,) = services
                rows.append(
                    _write_instance(
                        client,
                        out / service / instance_id,
                        (service, instance_id, namespace),
                        (address, port),
                        sidecar=sidecar,
                        service_port=service_port,
                    )
                )
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


def _instance_of(value: str) -> tuple[str, str, int]:
    """``ID=ADDRESS:PORT`` of --instance."""
    instance_id, sep, where = value.partition("=")
    if not sep:
        raise typer.BadParameter(f"{value!r}: use ID=ADDRESS:PORT", param_hint="--instance")
    if err := instance_id_error(instance_id):
        raise typer.BadParameter(err, param_hint="--instance")
    parsed = host_port(where, "--instance")
    return instance_id, parsed.host, parsed.port


def _write_instance(
    client: InterlockClient,
    directory: Path,
    who: tuple[str, str, str],
    where: tuple[str, int],
    *,
    sidecar: bool,
    service_port: int,
) -> dict[str, Any]:
    """Register the instance (and its service, when missing), issue its proxy token and
    write it into ``directory``; revoke the token this command wrote there before."""
    service, instance_id, namespace = who
    try:
        client.get_service(service)
    except ApiError as exc:
        if exc.status != 404:
            raise
        client.put_service(service, namespace=namespace, protocol="http", port=service_port)
    address, port = where
    client.put_instance(service, instance_id, address=address, port=port, sidecar=sidecar)
    issued = client.issue_proxy_token(service, instance_id)
    directory.mkdir(parents=True, exist_ok=True)
    previous = _read_optional(directory / PROXY_TOKEN_ID_FILE)
    _replace(directory / PROXY_TOKEN_FILE, str(issued["token"]), 0o600)
    _replace(directory / PROXY_TOKEN_ID_FILE, str(issued["token_id"]), 0o644)
    if previous and previous != issued["token_id"]:
        try:
            client.revoke_token(previous)
        except ApiError as exc:
            if exc.status != 404:
                raise
    return {
        "service": service,
        "instance": instance_id,
        "namespace": str(issued.get("namespace", namespace)),
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
