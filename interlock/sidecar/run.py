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
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import TypeVar

from interlock.client import (
    DEFAULT_CONTROL_PLANE,
    ApiError,
    ClientError,
    ControlPlaneUnreachable,
    InterlockClient,
)
from interlock.sidecar.bootstrap import SidecarSpec, render_sidecar_bootstrap
from interlock.sidecar.envoy import EnvoyProcess, find_envoy, why_envoy_failed
from interlock.sidecar.probe import AppProbe, ProbeSpec
from interlock.sidecar.xds_trust import BundleFiles, BundleFollower, XdsTls, sni_for
from interlock.trust import Trust

Say = Callable[[str], None]
T = TypeVar("T")


class SidecarError(Exception):
    """A reason the sidecar cannot start, fit to show a user."""


@dataclass(frozen=True)
class SidecarOptions:
    control_plane: str = DEFAULT_CONTROL_PLANE
    #: How the control plane's certificate is trusted (a bundle file or a root fingerprint).
    trust: Trust = field(default_factory=Trust)
    envoy: str | None = None
    protocol: str = "http"
    service_port: int | None = None
    drain_seconds: float = 1.0
    register_timeout: float = 30.0
    log_level: str = "warning"
    #: The file holding the API token the sidecar registers with (else INTERLOCK_TOKEN).
    api_token_file: Path | None = None
    #: How the sidecar probes its app (None: it does not).
    health: ProbeSpec | None = None


def read_api_token(opts: SidecarOptions, say: Say) -> str | None:
    """The API token from ``opts.api_token_file`` (waiting up to the register timeout for the
    file to appear, as when it is the control plane's first start), else None (the client
    then reads INTERLOCK_TOKEN)."""
    path = opts.api_token_file
    if path is None:
        return None
    return wait_for_file(path, "--token-file", "the API token", opts.register_timeout, say)


def wait_for_file(path: Path, flag: str, what: str, timeout: float, say: Say) -> str:
    """The stripped text of ``path``, waiting up to ``timeout`` seconds for it to exist and
    hold something (a file the control plane, or a credentials job, writes at its start)."""
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            text = path.read_text().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SidecarError(f"cannot read {flag} {path}: {exc.strerror}") from None
        if time.monotonic() > deadline:
            raise SidecarError(f"{flag} {path} does not exist or is empty")
        if not waited:
            say(f"waiting for {what} in {path} ...")
            waited = True
        time.sleep(0.5)


def resolve_address(address: str) -> str:
    """An IP literal for ``address`` (a host name is resolved once, at start)."""
    try:
        return str(socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)[0][4][0])
    except OSError as exc:
        raise SidecarError(f"--address {address!r} does not resolve: {exc}") from None


def retrying(call: Callable[[], T], timeout: float, waiting: str, say: Say) -> T:
    """``call()`` until it succeeds, retrying for up to ``timeout`` seconds while the control
    plane is unreachable. An answer (an API error) or an untrusted certificate is final."""
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            return call()
        except ApiError as exc:
            raise SidecarError(f"the control plane refused the registration: {exc}") from None
        except ControlPlaneUnreachable as exc:
            if time.monotonic() > deadline:
                raise SidecarError(str(exc)) from None
            if not waited:
                say(waiting)
                waited = True
            time.sleep(0.5)
        except ClientError as exc:
            raise SidecarError(str(exc)) from None


def connect(opts: SidecarOptions, say: Say) -> InterlockClient:
    """A client of the control plane with the API token, trusting its certificate as
    ``opts.trust`` says (a pinned fingerprint is fetched once, retried while the control
    plane is not up yet)."""
    token = read_api_token(opts, say)
    if opts.trust.ca_file is not None:
        wait_for_file(opts.trust.ca_file, "--ca-file", "the CA bundle", opts.register_timeout, say)
    return retrying(
        lambda: InterlockClient(opts.control_plane, token=token, trust=opts.trust),
        opts.register_timeout,
        f"waiting for the control plane at {opts.control_plane} ...",
        say,
    )


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

    def call() -> None:
        ensure_service(client, spec, opts, say)
        client.put_instance(
            spec.service,
            spec.instance_id,
            address=spec.address,
            port=spec.inbound_port,
            labels=spec.labels,
            locality=spec.locality,
            sidecar=True,  # its inbound listener takes mTLS (as PeerAuthentication allows)
        )
        say(
            f"registered instance {spec.service}/{spec.instance_id} at {spec.address}:"
            f"{spec.inbound_port}"
        )

    retrying(
        call,
        opts.register_timeout,
        f"waiting for the control plane at {opts.control_plane} ...",
        say,
    )


def deregister(client: InterlockClient, service: str, node_id: str, say: Say) -> None:
    try:
        client.delete_instance(service, node_id)
        say(f"deregistered instance {service}/{node_id}")
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


def control_plane_tls(
    client: InterlockClient, xds_host: str, directory: Path
) -> tuple[XdsTls | None, BundleFiles | None]:
    """How Envoy must trust the control plane (None for a plain-text one), with the bundle
    files written in ``directory`` from the verified API."""
    if client.context is None:
        return None, None
    try:
        bundle = client.ca_bundle()
    except ClientError as exc:
        raise SidecarError(f"cannot read the CA bundle: {exc}") from None
    tls = XdsTls(
        identity=str(bundle["control_plane_identity"]),
        ca_dir=str(directory),
        sni=sni_for(xds_host),
    )
    files = BundleFiles(tls)
    files.write(bundle)
    return tls, files


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
        if code and (reason := why_envoy_failed(envoy.binary)):
            say(reason)
        return code or 1
    leave()
    deadline = time.monotonic() + drain_seconds
    while time.monotonic() < deadline and envoy.poll() is None:
        time.sleep(0.05)
    envoy.stop()
    return 0


@dataclass(frozen=True)
class Proxy:
    """What differs between a sidecar and a gateway for :func:`run_proxy`."""

    kind: str
    service: str
    node_id: str
    xds_host: str
    admin_address: str
    admin_port: int
    #: Register the instance (and its service), retrying while the control plane is away.
    register: Callable[[InterlockClient], None]
    #: The bootstrap, given the proxy token's file and how to trust the control plane.
    bootstrap: Callable[[str, XdsTls | None], str]
    #: One line saying what the started Envoy serves.
    describe: Callable[[EnvoyProcess], str]
    #: How to probe the app beside it, once Envoy runs (None: no probe).
    probe: ProbeSpec | None = None


def run_proxy(proxy: Proxy, opts: SidecarOptions, say: Say) -> int:
    """Register, fetch the proxy token, run Envoy (trusting the control plane through a
    bundle kept current) and probe the app (reporting its verdicts through the API), forward
    signals, deregister: the supervise-leave-drain-stop loop a sidecar and a gateway share.
    Returns the exit code for the CLI."""
    binary = find_envoy(opts.envoy)
    stop_requested = threading.Event()
    envoy: EnvoyProcess | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop_requested.is_set() and envoy is not None:
            envoy.signal(signum)  # a second signal: no more draining
        stop_requested.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    registered = False
    follower: BundleFollower | None = None
    probe: AppProbe | None = None
    try:
        with (
            connect(opts, say) as client,
            tempfile.TemporaryDirectory(prefix=f"interlock-{proxy.kind}-") as tmp,
        ):
            try:
                proxy.register(client)
                registered = True
                if stop_requested.is_set():
                    return 0
                tls, files = control_plane_tls(client, proxy.xds_host, Path(tmp) / "ca")
                # The directory is private (0700); the token file is 0600 and only named in
                # the bootstrap, which is written 0600 too.
                token_file = fetch_proxy_token(client, proxy.service, proxy.node_id, Path(tmp))
                path = Path(tmp) / "bootstrap.yaml"
                write_private(path, proxy.bootstrap(str(token_file), tls))
                if files is not None:
                    follower = follow_bundle(opts, files, client).start()
                envoy = EnvoyProcess(
                    binary,
                    path,
                    admin_address=proxy.admin_address,
                    admin_port=proxy.admin_port,
                    log_level=opts.log_level,
                    drain_seconds=opts.drain_seconds,
                )
                envoy.start()
                say(proxy.describe(envoy))
                if proxy.probe is not None:
                    probe = AppProbe(
                        proxy.probe,
                        lambda healthy, reason: client.report_app_health(
                            proxy.service, proxy.node_id, healthy=healthy, reason=reason
                        ),
                        say,
                    ).start()

                def leave() -> None:
                    nonlocal registered
                    if probe is not None:
                        probe.stop()  # no report may land after the deregistration
                    deregister(client, proxy.service, proxy.node_id, say)
                    registered = False

                return serve_until_stopped(envoy, stop_requested, leave, opts.drain_seconds, say)
            finally:
                if probe is not None:
                    probe.stop()
                if follower is not None:
                    follower.stop()
                if envoy is not None:
                    envoy.stop()
                if registered:
                    deregister(client, proxy.service, proxy.node_id, say)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def follow_bundle(
    opts: SidecarOptions, files: BundleFiles, client: InterlockClient
) -> BundleFollower:
    """A follower of the bundle with a client of its own (the bundle is public: no token);
    every new bundle's roots are trusted by ``client`` too, so that it can still deregister
    once the control plane's certificate comes from a new root."""
    ca_file = Path(files.tls.ca_file)
    own = InterlockClient(
        opts.control_plane, token="", trust=Trust(bundle_pem=ca_file.read_bytes())
    )
    return BundleFollower(own, files, client.trust_more)


def fetch_proxy_token(client: InterlockClient, service: str, node_id: str, directory: Path) -> Path:
    """Ask the API for this instance's proxy token and write it to ``directory`` (mode 0600);
    returns the file. The token is never printed."""
    try:
        issued = client.issue_proxy_token(service, node_id)
    except ClientError as exc:
        raise SidecarError(f"the control plane refused a proxy token: {exc}") from None
    path = directory / "xds-token"
    write_private(path, str(issued["token"]))
    return path


def run_sidecar(spec: SidecarSpec, opts: SidecarOptions, say: Say = print) -> int:
    """Run until Envoy exits or a signal arrives; returns the exit code for the CLI."""
    spec = replace(spec, address=resolve_address(spec.address))
    render_sidecar_bootstrap(spec)  # fail on bad flags before registering anything

    def describe(envoy: EnvoyProcess) -> str:
        return (
            f"envoy pid {envoy.pid}: inbound {spec.address}:{spec.inbound_port} -> "
            f"127.0.0.1:{spec.app_port}, outbound {spec.outbound_address}:{spec.outbound_port}, "
            f"admin {envoy.admin_url}"
        )

    return run_proxy(
        Proxy(
            kind="sidecar",
            service=spec.service,
            node_id=spec.instance_id,
            xds_host=spec.xds_host,
            admin_address=spec.admin_address,
            admin_port=spec.admin_port,
            register=lambda client: register(client, spec, opts, say),
            bootstrap=lambda token, tls: render_sidecar_bootstrap(
                replace(spec, token_file=token, xds_tls=tls)
            ),
            describe=describe,
            probe=opts.health,
        ),
        opts,
        say,
    )
