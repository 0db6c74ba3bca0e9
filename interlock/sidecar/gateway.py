"""`interlock gateway`: an Envoy with no app, whose listeners come from Gateway resources.

The gateway registers itself as an instance of the service ``--name`` (so it can hold a proxy
token and be selected by labels: its ``--labels`` plus ``gateway: <name>`` and ``istio:
ingressgateway``), renders the gateway bootstrap, runs Envoy, and on SIGINT/SIGTERM
deregisters, drains and stops it — like the sidecar.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import yaml

from interlock.client import ApiError, InterlockClient
from interlock.model.names import instance_id_error, namespace_error, service_name_error
from interlock.sidecar.bootstrap import (
    DEFAULT_TOKEN_FILE,
    XdsProtocol,
    _quoted,
    _template,
    locality_error,
    locality_fields,
    xds_endpoints,
)
from interlock.sidecar.envoy import EnvoyProcess
from interlock.sidecar.run import (
    Proxy,
    Say,
    SidecarOptions,
    resolve_address,
    retrying,
    run_proxy,
)
from interlock.sidecar.xds_trust import XdsTls, transport_socket

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
    #: The other control-plane replicas (see :class:`SidecarSpec`).
    xds_others: tuple[tuple[str, int], ...] = ()
    xds_protocol: XdsProtocol = XdsProtocol.DELTA
    token_file: str = DEFAULT_TOKEN_FILE
    xds_tls: XdsTls | None = None

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
        XDS_ENDPOINTS=xds_endpoints(spec.xds_host, spec.xds_port, spec.xds_others),
        XDS_TOKEN_FILE=_quoted(spec.token_file),
        XDS_TRANSPORT_SOCKET=transport_socket(spec.xds_tls, 4),
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
    port, listen = spec.ports[0]

    def call() -> None:
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
            # Its listeners serve the Gateway's servers, not mesh mTLS: callers send plain text.
            sidecar=False,
        )
        say(f"registered gateway {spec.name}/{spec.node_id}")

    retrying(call, timeout, "waiting for the control plane ...", say)


def run_gateway(spec: GatewaySpec, opts: SidecarOptions, say: Say = print) -> int:
    """Run until Envoy exits or a signal arrives; returns the exit code for the CLI."""
    spec = replace(spec, address=resolve_address(spec.address))
    render_gateway_bootstrap(spec)  # fail on bad flags before registering anything

    def describe(envoy: EnvoyProcess) -> str:
        ports = ", ".join(f"{p}->{spec.address}:{listen}" for p, listen in spec.ports)
        return f"envoy pid {envoy.pid}: gateway ports {ports}, admin {envoy.admin_url}"

    return run_proxy(
        Proxy(
            kind="gateway",
            service=spec.name,
            node_id=spec.node_id,
            xds_host=spec.xds_host,
            admin_address=spec.admin_address,
            admin_port=spec.admin_port,
            register=lambda client: register_gateway(client, spec, opts.register_timeout, say),
            bootstrap=lambda token, tls: render_gateway_bootstrap(
                replace(spec, token_file=token, xds_tls=tls)
            ),
            describe=describe,
        ),
        opts,
        say,
    )
