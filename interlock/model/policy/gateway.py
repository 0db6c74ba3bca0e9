"""Gateway (networking.istio.io): the ports, protocols, hosts and TLS of a gateway proxy's
listeners. VirtualServices bind to it by name (``gateways: [ns/name]``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock.model.errors import FieldError
from interlock.model.policy.common import label_map, no_map
from interlock.model.policy.hosts import dns_label_error, wildcard_host_error
from interlock.model.schema import (
    Bool,
    Enum,
    Errors,
    Field,
    ListOf,
    Obj,
    Port,
    Str,
    child,
    item,
)
from interlock.model.schema.values import ip_error


class ServerProtocol(enum.StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"
    TCP = "TCP"
    TLS = "TLS"

    @property
    def is_tls(self) -> bool:
        return self in (ServerProtocol.HTTPS, ServerProtocol.TLS)


class ServerTLSMode(enum.StrEnum):
    PASSTHROUGH = "PASSTHROUGH"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"


@dataclass(frozen=True)
class GatewayPort:
    number: int
    protocol: ServerProtocol
    name: str


@dataclass(frozen=True)
class ServerTLSSettings:
    """``mode`` unset means PASSTHROUGH (Istio's default)."""

    mode: ServerTLSMode | None = None
    https_redirect: bool = False
    credential_name: str | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None

    @property
    def effective_mode(self) -> ServerTLSMode:
        return self.mode or ServerTLSMode.PASSTHROUGH

    @property
    def has_certificates(self) -> bool:
        return bool(
            self.credential_name
            or self.server_certificate
            or self.private_key
            or self.ca_certificates
        )


@dataclass(frozen=True)
class Server:
    port: GatewayPort
    hosts: tuple[str, ...]
    tls: ServerTLSSettings | None = None


@dataclass(frozen=True)
class Gateway:
    servers: tuple[Server, ...]
    selector: Mapping[str, str] = field(default_factory=no_map)


def _server_host_error(value: str) -> str | None:
    """``[namespace/]host``: namespace ``*``, ``.`` or a DNS label; host ``*``, an FQDN (may
    start with ``*.``) or an IP address."""
    namespace, slash, host = value.rpartition("/")
    if slash:
        if not namespace or not host:
            return f"{value!r}: namespace and host around '/' cannot be empty"
        if namespace not in ("*", ".") and (message := dns_label_error(namespace, "namespace")):
            return message
    if host != "*" and "." not in host:
        return f"{host!r}: short names are not allowed in gateway hosts (use an FQDN)"
    if ip_error(host) is None:
        return None
    return wildcard_host_error(host)


def _check_tls(tls: ServerTLSSettings, path: str, errors: Errors) -> None:
    mode = tls.effective_mode
    if mode is ServerTLSMode.PASSTHROUGH and tls.has_certificates:
        errors.append(FieldError(path, "PASSTHROUGH does not use certificates; remove them"))
    if mode in (ServerTLSMode.SIMPLE, ServerTLSMode.MUTUAL) and not tls.credential_name:
        for field_name, value in (
            ("serverCertificate", tls.server_certificate),
            ("privateKey", tls.private_key),
        ):
            if not value:
                errors.append(
                    FieldError(
                        child(path, field_name),
                        f"{mode.value} TLS needs serverCertificate and privateKey "
                        "(credentialName is not supported yet)",
                    )
                )
        if mode is ServerTLSMode.MUTUAL and not tls.ca_certificates:
            errors.append(
                FieldError(
                    child(path, "caCertificates"),
                    "MUTUAL TLS needs caCertificates (the client CA; credentialName is not "
                    "supported yet)",
                )
            )
    if tls.credential_name and (tls.server_certificate or tls.private_key or tls.ca_certificates):
        errors.append(FieldError(path, "set credentialName or certificate files, not both"))


def _check_server(server: Server, path: str, errors: Errors) -> None:
    protocol = server.port.protocol
    tls = server.tls
    if protocol.is_tls and tls is None:
        errors.append(FieldError(child(path, "tls"), f"is required for {protocol.value} servers"))
    if tls is None or protocol.is_tls:
        if tls is not None and tls.https_redirect:
            errors.append(
                FieldError(
                    child(child(path, "tls"), "httpsRedirect"), "applies to HTTP servers only"
                )
            )
        return
    if protocol is ServerProtocol.HTTP:
        if tls.mode is not None or tls.has_certificates:
            errors.append(
                FieldError(child(path, "tls"), "an HTTP server may only set tls.httpsRedirect")
            )
    else:
        errors.append(FieldError(child(path, "tls"), f"a {protocol.value} server cannot have TLS"))


def _check_gateway(gateway: Gateway, path: str, errors: Errors) -> None:
    names: dict[str, int] = {}
    protocols: dict[int, tuple[ServerProtocol, int]] = {}
    for index, server in enumerate(gateway.servers):
        at = child(item(child(path, "servers"), index), "port")
        port = server.port
        if port.name in names:
            errors.append(
                FieldError(
                    child(at, "name"),
                    f"port name {port.name!r} is already used by servers[{names[port.name]}]",
                )
            )
        names.setdefault(port.name, index)
        known = protocols.get(port.number)
        if known is not None and known[0] is not port.protocol:
            errors.append(
                FieldError(
                    child(at, "protocol"),
                    f"port {port.number} is {known[0].value} in servers[{known[1]}]; "
                    "one port has one protocol",
                )
            )
        protocols.setdefault(port.number, (port.protocol, index))


PORT: Obj[GatewayPort] = Obj(
    GatewayPort,
    {
        "number": Field(Port(), required=True),
        "protocol": Field(
            Enum(
                ServerProtocol,
                unsupported=["HTTP2", "GRPC", "GRPC-WEB", "MONGO", "REDIS", "MYSQL"],
                ignore_case=True,
            ),
            required=True,
        ),
        "name": Field(Str(check=lambda v: dns_label_error(v, "port name")), required=True),
    },
    unsupported={"targetPort": "it has no effect on gateways"},
)

SERVER_TLS: Obj[ServerTLSSettings] = Obj(
    ServerTLSSettings,
    {
        "mode": Enum(
            ServerTLSMode, unsupported=["AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]
        ),
        "httpsRedirect": Bool(),
        "serverCertificate": Str(non_empty=True),
        "privateKey": Str(non_empty=True),
        "caCertificates": Str(non_empty=True),
    },
    unsupported={
        "credentialName": "stored secrets do not exist yet; use serverCertificate and "
        "privateKey (files on the gateway's host)",
        "credentialNames": "",
        "tlsCertificates": "",
        "subjectAltNames": "",
        "verifyCertificateSpki": "",
        "verifyCertificateHash": "",
        "minProtocolVersion": "",
        "maxProtocolVersion": "",
        "cipherSuites": "",
        "caCrl": "",
    },
    checks=[_check_tls],
)

SERVER: Obj[Server] = Obj(
    Server,
    {
        "port": Field(PORT, required=True),
        "hosts": Field(
            ListOf(Str(check=_server_host_error), min_items=1, what="host"), required=True
        ),
        "tls": SERVER_TLS,
    },
    unsupported=["bind", "defaultEndpoint", "name"],
    checks=[_check_server],
)

SPEC: Obj[Gateway] = Obj(
    Gateway,
    {
        "servers": Field(ListOf(SERVER, min_items=1, what="server"), required=True),
        "selector": label_map(),
    },
    checks=[_check_gateway],
)


def gateway_name_error(name: str) -> str | None:
    """Istio requires a Gateway's name to be a DNS label (no dots)."""
    return dns_label_error(name, "a Gateway's name")
