"""`interlock gateway`: an Envoy with no app, whose listeners come from Gateway resources.

The gateway registers itself as an instance of the service ``--name`` (so it can hold a proxy
token and be selected by labels: its ``--labels`` plus ``gateway: <name>`` and ``istio:
ingressgateway``), renders the gateway bootstrap, runs Envoy, and on SIGINT/SIGTERM
deregisters, drains and stops it — like the sidecar.
"""

from __future__ import annotations

import ipaddress
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import yaml

from interlock.client import ApiError, ClientError, InterlockClient
from interlock.model.names import instance_id_error, namespace_error, service_name_error
from interlock.sidecar.bootstrap import (
    DEFAULT_TOKEN_FILE,
    XdsProtocol,
    _quoted,
    _template,
    locality_error,
    locality_fields,
)
from interlock.sidecar.envoy import EnvoyProcess, find_envoy
from interlock.sidecar.run import (
    Say,
    SidecarError,
    SidecarOptions,
    read_api_token,
    resolve_address,
    serve_until_stopped,
    write_private,
)

GATEWAY_LABEL = "gateway"
ISTIO_LABEL = "istio"
ISTIO_INGRESS = "ingressgateway"


@dataclass(frozen=True)
class GatewaySpec:
    """Everything a gateway's bootstrap says: its name (a service), instance id, Gateway ports
    (``(port, listen_port)``) and where they are bound."""

    name: str
    ports: tuple[tuple[int, int], ...]
    admin_port: int
    instance_id: str = ""
    namespace: str = "default"
    address: str = "127.0.0.1"
    admin_address: str = "127.0.0.1"
    labels: Mapping[str, str] = field(default_factory=dict)
    locality: str = ""
    xds_host: str = "127.0.0.1"
    xds_port: int = 18000
    xds_protocol: XdsProtocol = XdsProtocol.DELTA
    token_file: str = DEFAULT_TOKEN_FILE

    @property
    def node_id(self) -> str:
        return self.instance_id or self.name

    @property
    def all_labels(self) -> dict[str, str]:
        """The registered labels: ``gateway: <name>``, ``istio: ingressgateway``, then
        ``labels`` (which may override them)."""
        return {GATEWAY_LABEL: self.name, ISTIO_LABEL: ISTIO_INGRESS, **self.labels}


def parse_port(value: str) -> tuple[int, int]:
    """``80`` → ``(80, 80)``; ``80:18080`` → ``(80, 18080)``. Raises ValueError."""
    port_text, _, listen_text = value.strip().partition(":")
    try:
        port, listen = int(port_text), int(listen_text or port_text)
    except ValueError:
        raise ValueError(f"{value!r} is not PORT or PORT:LISTEN_PORT") from None
    if not (1 <= port <= 65535 and 1 <= listen <= 65535):
        raise ValueError(f"{value!r}: ports are 1-65535")
    return port, listen


def gateway_spec_errors(spec: GatewaySpec) -> list[str]:
    errors = [
        f"--{flag}: {msg}"
        for flag, msg in (
            ("name", service_name_error(spec.name)),
            ("namespace", namespace_error(spec.namespace)),
            ("instance-id", instance_id_error(spec.node_id)),
            ("locality", locality_error(spec.locality)),
        )
        if msg
    ]
    for flag, address in (("address", spec.address), ("admin-address", spec.admin_address)):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            errors.append(f"--{flag}: {address!r} is not an IP address")
    if not spec.ports:
        errors.append("--port: give at least one Gateway port (PORT or PORT:LISTEN_PORT)")
    numbers = [p for p, _ in spec.ports]
    listens = [listen for _, listen in spec.ports] + [spec.admin_port]
    if len(set(numbers)) != len(numbers) or len(set(listens)) != len(listens):
        errors.append("--port and --admin-port: each port and listen port may be given once")
    if not spec.token_file or "\n" in spec.token_file:
        errors.append("--token-file: must be a file path")
    return errors


def render_gateway_bootstrap(spec: GatewaySpec) -> str:
    """The YAML bootstrap of one gateway. Raises ValueError naming each bad field."""
    if errors := gateway_spec_errors(spec):
        raise ValueError("; ".join(errors))
    text = _template("gateway.yaml").substitute(
        NODE_ID=_quoted(spec.node_id),
        SERVICE=_quoted(spec.name),
        NAMESPACE=_quoted(spec.namespace),
        ADDRESS=spec.address,
        GATEWAY_PORTS=",".join(f"{p}:{listen}" for p, listen in spec.ports),
        ADMIN_ADDRESS=spec.admin_address,
        ADMIN_PORT=str(int(spec.admin_port)),
        API_TYPE=spec.xds_protocol.api_type,
        XDS_HOST=_quoted(spec.xds_host),
        XDS_PORT=str(int(spec.xds_port)),
        XDS_TOKEN_FILE=_quoted(spec.token_file),
        **locality_fields(spec.locality),
    )
    yaml.safe_load(text)  # a template or value mistake fails here, not inside Envoy
    return text


def _registered_address(address: str) -> str:
    """Where others reach the gateway: its bind address, or loopback for a wildcard bind."""
    return "127.0.0.1" if ipaddress.ip_address(address).is_unspecified else address


def register_gateway(client: InterlockClient, spec: GatewaySpec, timeout: float, say: Say) -> None:
    """Create the gateway's service if needed and register its instance (retrying while the
    control plane is unreachable)."""
    deadline = time.monotonic() + timeout
    waited = False
    port, listen = spec.ports[0]
    while True:
        try:
            try:
                client.get_service(spec.name)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                client.put_service(spec.name, namespace=spec.namespace, protocol="http", port=port)
            client.put_instance(
                spec.name,
                spec.node_id,
                address=_registered_address(spec.address),
                port=listen,
                labels=spec.all_labels,
                locality=spec.locality,
            )
            say(f"registered gateway {spec.name}/{spec.node_id}")
            return
        except ApiError as exc:
            raise SidecarError(f"the control plane refused the registration: {exc}") from None
        except ClientError as exc:
            if time.monotonic() > deadline:
                raise SidecarError(str(exc)) from None
            if not waited:
                say("waiting for the control plane ...")
                waited = True
            time.sleep(0.5)


def _deregister(client: InterlockClient, spec: GatewaySpec, say: Say) -> None:
    try:
        client.delete_instance(spec.name, spec.node_id)
        say(f"deregistered gateway {spec.name}/{spec.node_id}")
    except ApiError as exc:
        if exc.status != 404:
            say(f"could not deregister: {exc}")
    except ClientError as exc:
        say(f"could not deregister: {exc}")


def run_gateway(spec: GatewaySpec, opts: SidecarOptions, say: Say = print) -> int:
    """Run until Envoy exits or a signal arrives; returns the exit code for the CLI."""
    binary = find_envoy(opts.envoy)
    spec = replace(spec, address=resolve_address(spec.address))
    render_gateway_bootstrap(spec)  # fail on bad flags before registering anything
    stop_requested = threading.Event()
    envoy: EnvoyProcess | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop_requested.is_set() and envoy is not None:
            envoy.signal(signum)
        stop_requested.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    registered = False
    api_token = read_api_token(opts, say)
    with (
        InterlockClient(opts.control_plane, token=api_token) as client,
        tempfile.TemporaryDirectory(prefix="interlock-gateway-") as tmp,
    ):
        try:
            register_gateway(client, spec, opts.register_timeout, say)
            registered = True
            if stop_requested.is_set():
                return 0
            try:
                issued = client.issue_proxy_token(spec.name, spec.node_id)
            except ClientError as exc:
                raise SidecarError(f"the control plane refused a proxy token: {exc}") from None
            token_file = Path(tmp) / "xds-token"
            write_private(token_file, str(issued["token"]))
            path = Path(tmp) / "bootstrap.yaml"
            write_private(path, render_gateway_bootstrap(replace(spec, token_file=str(token_file))))
            envoy = EnvoyProcess(
                binary,
                path,
                admin_address=spec.admin_address,
                admin_port=spec.admin_port,
                log_level=opts.log_level,
                drain_seconds=opts.drain_seconds,
            )
            envoy.start()
            ports = ", ".join(f"{p}->{spec.address}:{listen}" for p, listen in spec.ports)
            say(f"envoy pid {envoy.pid}: gateway ports {ports}, admin {envoy.admin_url}")

            def leave() -> None:
                nonlocal registered
                _deregister(client, spec, say)
                registered = False

            return serve_until_stopped(envoy, stop_requested, leave, opts.drain_seconds, say)
        finally:
            if envoy is not None:
                envoy.stop()
            if registered:
                _deregister(client, spec, say)
            for s, handler in previous.items():
                signal.signal(s, handler)
