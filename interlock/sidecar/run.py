"""`interlock sidecar`: register, render the bootstrap, run Envoy, forward signals, deregister.

Shutdown is graceful: on the first SIGINT/SIGTERM the instance is deregistered first (other
proxies stop sending it new requests), Envoy keeps serving for ``drain_seconds``, and only then
receives the signal. A second signal is forwarded at once.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from interlock.client import DEFAULT_CONTROL_PLANE, ApiError, ClientError, InterlockClient
from interlock.sidecar.bootstrap import SidecarSpec, render_sidecar_bootstrap
from interlock.sidecar.envoy import EnvoyProcess, find_envoy

Say = Callable[[str], None]


class SidecarError(Exception):
    """A reason the sidecar cannot start, fit to show a user."""


@dataclass(frozen=True)
class SidecarOptions:
    control_plane: str = DEFAULT_CONTROL_PLANE
    envoy: str | None = None
    protocol: str = "http"
    service_port: int | None = None
    drain_seconds: float = 1.0
    register_timeout: float = 30.0
    log_level: str = "warning"
    #: The file holding the API token the sidecar registers with (else INTERLOCK_TOKEN).
    api_token_file: Path | None = None


def read_api_token(opts: SidecarOptions, say: Say) -> str | None:
    """The API token from ``opts.api_token_file`` (waiting up to the register timeout for the
    file to appear, as when it is the control plane's first start), else None (the client
    then reads INTERLOCK_TOKEN)."""
    path = opts.api_token_file
    if path is None:
        return None
    deadline = time.monotonic() + opts.register_timeout
    waited = False
    while True:
        try:
            token = path.read_text().strip()
            if token:
                return token
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SidecarError(f"cannot read --token-file {path}: {exc.strerror}") from None
        if time.monotonic() > deadline:
            raise SidecarError(f"--token-file {path} does not exist or is empty")
        if not waited:
            say(f"waiting for the API token in {path} ...")
            waited = True
        time.sleep(0.5)


def fetch_proxy_token(
    client: InterlockClient, spec: SidecarSpec, directory: Path, say: Say
) -> Path:
    """Ask the API for this instance's proxy token and write it to ``directory`` (mode 0600);
    returns the file. The token is never printed."""
    try:
        issued = client.issue_proxy_token(spec.service, spec.instance_id)
    except ClientError as exc:
        raise SidecarError(f"the control plane refused a proxy token: {exc}") from None
    path = directory / "xds-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(str(issued["token"]))
    say(f"proxy token {issued['token_id']} for {issued['spiffe_id']}")
    return path


def resolve_address(address: str) -> str:
    """An IP literal for ``address`` (a host name is resolved once, at start)."""
    try:
        return str(socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)[0][4][0])
    except OSError as exc:
        raise SidecarError(f"--address {address!r} does not resolve: {exc}") from None


def ensure_service(
    client: InterlockClient, spec: SidecarSpec, opts: SidecarOptions, say: Say
) -> None:
    """Create the service when it is not registered yet; leave an existing one as it is."""
    try:
        client.get_service(spec.service)
        return
    except ApiError as exc:
        if exc.status != 404:
            raise
    port = opts.service_port or spec.app_port
    client.put_service(spec.service, namespace=spec.namespace, protocol=opts.protocol, port=port)
    say(f"registered service {spec.service} ({opts.protocol}, port {port})")


def register(client: InterlockClient, spec: SidecarSpec, opts: SidecarOptions, say: Say) -> None:
    """Register the instance, retrying while the control plane is unreachable."""
    deadline = time.monotonic() + opts.register_timeout
    waited = False
    while True:
        try:
            ensure_service(client, spec, opts, say)
            client.put_instance(
                spec.service,
                spec.instance_id,
                address=spec.address,
                port=spec.inbound_port,
                labels=spec.labels,
                locality=spec.locality,
            )
            where = f"{spec.address}:{spec.inbound_port}"
            say(f"registered instance {spec.service}/{spec.instance_id} at {where}")
            return
        except ApiError as exc:
            raise SidecarError(f"the control plane refused the registration: {exc}") from None
        except ClientError as exc:
            if time.monotonic() > deadline:
                raise SidecarError(str(exc)) from None
            if not waited:
                say(f"waiting for the control plane at {opts.control_plane} ...")
                waited = True
            time.sleep(0.5)


def deregister(client: InterlockClient, spec: SidecarSpec, say: Say) -> None:
    try:
        client.delete_instance(spec.service, spec.instance_id)
        say(f"deregistered instance {spec.service}/{spec.instance_id}")
    except ApiError as exc:
        if exc.status != 404:
            say(f"could not deregister: {exc}")
    except ClientError as exc:
        say(f"could not deregister: {exc}")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by this user only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def serve_until_stopped(
    envoy: EnvoyProcess,
    stop_requested: threading.Event,
    leave: Callable[[], None],
    drain_seconds: float,
    say: Say,
) -> int:
    """Wait until Envoy exits (its code, or 1) or a stop is requested; then stop gracefully:
    ``leave`` the mesh first, let Envoy drain for up to ``drain_seconds``, stop it (0)."""
    while envoy.poll() is None and not stop_requested.wait(0.2):
        pass
    if envoy.poll() is not None:
        code = envoy.wait()
        say(f"envoy exited with code {code}")
        return code or 1
    leave()
    deadline = time.monotonic() + drain_seconds
    while time.monotonic() < deadline and envoy.poll() is None:
        time.sleep(0.05)
    envoy.stop()
    return 0


def run_sidecar(spec: SidecarSpec, opts: SidecarOptions, say: Say = print) -> int:
    """Run until Envoy exits or a signal arrives; returns the exit code for the CLI."""
    binary = find_envoy(opts.envoy)
    spec = replace(spec, address=resolve_address(spec.address))
    bootstrap_text = render_sidecar_bootstrap(spec)
    stop_requested = threading.Event()
    envoy: EnvoyProcess | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop_requested.is_set() and envoy is not None:
            envoy.signal(signum)  # a second signal: no more draining
        stop_requested.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    registered = False
    api_token = read_api_token(opts, say)
    with (
        InterlockClient(opts.control_plane, token=api_token) as client,
        tempfile.TemporaryDirectory(prefix="interlock-sidecar-") as tmp,
    ):
        try:
            register(client, spec, opts, say)
            registered = True
            if stop_requested.is_set():
                return 0
            # The directory is private (0700); the token file is 0600 and only named in the
            # bootstrap, which is written 0600 too.
            token_file = fetch_proxy_token(client, spec, Path(tmp), say)
            bootstrap_text = render_sidecar_bootstrap(replace(spec, token_file=str(token_file)))
            path = Path(tmp) / "bootstrap.yaml"
            write_private(path, bootstrap_text)
            envoy = EnvoyProcess(
                binary,
                path,
                admin_address=spec.admin_address,
                admin_port=spec.admin_port,
                log_level=opts.log_level,
                drain_seconds=opts.drain_seconds,
            )
            envoy.start()
            say(
                f"envoy pid {envoy.pid}: inbound {spec.address}:{spec.inbound_port} -> "
                f"127.0.0.1:{spec.app_port}, "
                f"outbound {spec.outbound_address}:{spec.outbound_port}, "
                f"admin {envoy.admin_url}"
            )

            def leave() -> None:
                nonlocal registered
                deregister(client, spec, say)
                registered = False

            return serve_until_stopped(envoy, stop_requested, leave, opts.drain_seconds, say)
        finally:
            if envoy is not None:
                envoy.stop()
            if registered:
                deregister(client, spec, say)
            for s, handler in previous.items():
                signal.signal(s, handler)
