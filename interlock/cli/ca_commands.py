"""`interlock ca`: the mesh's CA through the REST API.

``ca status`` shows the rotation phase, the signing CA and the trust bundle, and how far the
current step has rolled out. ``ca rotate`` drives a whole root rotation: it starts one (or
picks up the one in progress), and at each step waits until every connected proxy has ACKed
it before taking the next, printing progress; ``--abort`` abandons a rotation that has only
published the new root.
"""

from __future__ import annotations

import enum
import time
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

ca_app = typer.Typer(help="The mesh's certificate authority.", no_args_is_help=True)


STEP_WAIT = 10.0
"""Seconds one request waits for the current step's ACKs before checking again."""


def _rows(ca: dict[str, Any]) -> list[dict[str, Any]]:
    rollout = ca["rollout"]
    return [
        {
            "trust_domain": ca["trust_domain"],
            "phase": ca["phase"],
            "step": ca["step"],
            "revision": ca["revision"],
            "signing": ca["signing_key_id"][:16],
            "roots": len(ca["bundle"]),
            "acked": f"{rollout['acked']}/{rollout['total']}",
            "next": ca["next"],
        }
    ]


COLUMNS = [
    ("trust_domain", "TRUST DOMAIN"),
    ("phase", "PHASE"),
    ("step", "STEP"),
    ("revision", "REVISION"),
    ("signing", "SIGNING KEY"),
    ("roots", "ROOTS"),
    ("acked", "ACKED"),
    ("next", "NEXT"),
]


@ca_app.command("status")
def status(
    output: Output = OutputFormat.TABLE,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """The CA: phase, signing key, bundle, and the current step's rollout."""
    try:
        with Api(control_plane, ca_file, ca_fingerprint).client() as client:
            ca = client.get_ca()
    except ClientError as exc:
        raise fail(str(exc)) from None
    emit(ca, output, COLUMNS, _rows(ca))


def _progress(ca: dict[str, Any]) -> str:
    rollout = ca["rollout"]
    pending = ", ".join(p["node_id"] for p in rollout["pending_proxies"][:5])
    more = f" (waiting for {pending})" if pending else ""
    return (
        f"step {ca['step']} ({ca['phase']}) at revision {ca['revision']}: "
        f"{rollout['acked']}/{rollout['total']} proxies ACKed{more}"
    )


@ca_app.command("rotate")
def rotate(
    ca_cert: Annotated[
        Path | None, typer.Option(help="The new CA's certificate (PEM); default: a new root.")
    ] = None,
    ca_key: Annotated[Path | None, typer.Option(help="The new CA's private key (PEM).")] = None,
    ca_chain: Annotated[
        Path | None, typer.Option(help="For an intermediate: the chain up to its root (PEM).")
    ] = None,
    abort: Annotated[
        bool, typer.Option("--abort", help="Abandon a rotation that only published the root.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1.0, help="Give up when one step is not ACKed in this time.")
    ] = 600.0,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """Rotate the root CA in three steps, each once the previous one is ACKed everywhere."""
    if (ca_cert is None) != (ca_key is None):
        raise fail("give --ca-cert and --ca-key together", 2)
    pem: dict[str, str] = {}
    try:
        for name, path in (("ca_cert", ca_cert), ("ca_key", ca_key), ("ca_chain", ca_chain)):
            if path is not None:
                pem[name] = path.read_text()
    except OSError as exc:
        raise fail(f"cannot read {exc.filename}: {exc.strerror}", 2) from None
    try:
        with Api(control_plane, ca_file, ca_fingerprint).client(timeout=30.0) as client:
            _drive(client, pem, abort, timeout)
    except ClientError as exc:
        raise fail(str(exc)) from None


def _drive(client: InterlockClient, pem: dict[str, str], abort: bool, timeout: float) -> None:
    say = err_console.print
    ca = client.get_ca()
    if abort:
        ca = client.rotate_ca("abort")
        say(f"aborted: {_progress(ca)}")
        return
    if ca["phase"] == "idle":
        ca = client.rotate_ca("start", pem=pem)
        say(f"started: the bundle now holds the old and the new root; {_progress(ca)}")
    elif pem:
        raise ClientError(
            f"a rotation is already in progress (phase {ca['phase']}); "
            "run without --ca-cert to finish it, or --abort"
        )
    while ca["phase"] != "idle":
        deadline = time.monotonic() + timeout
        while True:
            try:
                ca = client.rotate_ca("advance", wait=STEP_WAIT)
                break
            except ApiError as exc:
                if exc.status != 409 or time.monotonic() > deadline:
                    raise
                say(_progress(client.get_ca()))
        what = {
            "signing-with-new": "the new CA signs; every proxy gets a new certificate",
            "idle": "the old root is dropped; the rotation is complete",
        }.get(ca["phase"], ca["phase"])
        say(f"{what}; {_progress(ca)}")
    # Wait for the last step to land too, so that "done" means done.
    deadline = time.monotonic() + timeout
    while not ca["rollout"]["complete"] and time.monotonic() < deadline:
        time.sleep(0.5)
        ca = client.get_ca()
    say(f"done: {_progress(ca)}")
    emit(ca, OutputFormat.TABLE, COLUMNS, _rows(ca))


class BundleFormat(enum.StrEnum):
    PEM = "pem"
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


BUNDLE_COLUMNS = [("sha256", "SHA256"), ("subject", "SUBJECT"), ("not_after", "NOT AFTER")]


@ca_app.command("bundle")
def bundle(
    output: Annotated[
        BundleFormat, typer.Option("--output", "-o", help="pem, table, json or yaml.")
    ] = BundleFormat.PEM,
    write: Annotated[
        Path | None,
        typer.Option(help="Write the bundle (PEM) to this file, replacing it at once."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="With --write: keep the file current (a root rotation changes the bundle) "
            "until Ctrl-C.",
        ),
    ] = False,
    control_plane: ControlPlane = DEFAULT_CONTROL_PLANE,
    ca_file: CaFile = None,
    ca_fingerprint: CaFingerprint = None,
) -> None:
    """The CA bundle that clients verify the control plane (and proxies their peers) with.

    Fetched over TLS verified with --ca-file or --ca-fingerprint; e.g. on a new host:
    interlock ca bundle --ca-fingerprint sha256:HEX --write /etc/interlock/ca.pem
    """
    if follow and write is None:
        raise fail("--follow keeps a file current: give --write FILE too", 2)
    with Api(control_plane, ca_file, ca_fingerprint).client() as client:
        try:
            data = client.ca_bundle()
        except ClientError as exc:
            raise fail(str(exc)) from None
        if write is not None:
            _write_bundle(write, data)
            err_console.print(
                f"wrote the CA bundle ({len(data['roots'])} root(s)) to {write}", highlight=False
            )
        elif output is BundleFormat.PEM:
            typer.echo(str(data["pem"]), nl=False)
        else:
            emit(data, OutputFormat(output.value), BUNDLE_COLUMNS, data["roots"])
        if follow and write is not None:
            _follow(client, write, str(data["version"]))


def _write_bundle(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(str(data["pem"]))
        tmp.chmod(0o644)
        tmp.replace(path)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None


def _follow(client: InterlockClient, path: Path, version: str) -> None:
    """Hold ``GET /v1/ca/bundle?wait=`` open and rewrite ``path`` on every change."""
    try:
        while True:
            try:
                data = client.ca_bundle(wait=30.0, known=version)
            except ClientError as exc:
                err_console.print(f"cannot follow the CA bundle: {exc}; retrying", highlight=False)
                time.sleep(2.0)
                continue
            if data["version"] != version:
                version = str(data["version"])
                client.trust_more(str(data["pem"]).encode("ascii"))
                _write_bundle(path, data)
                err_console.print(
                    f"the CA bundle changed: wrote {len(data['roots'])} root(s) to {path}",
                    highlight=False,
                )
    except KeyboardInterrupt:
        return
