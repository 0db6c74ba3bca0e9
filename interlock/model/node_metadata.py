"""The node metadata of a proxy's bootstrap: one declared schema, one meaning per key.

The bootstrap templates (``interlock/envoy_configs/``) write these keys and :meth:`Proxy.from_node`
reads them through :data:`NODE_METADATA`, with the schema toolkit the policy kinds use. Envoy
node metadata is a ``google.protobuf.Struct`` others write into too (an existing fleet's
bootstrap), so keys the schema does not declare are ignored, never refused. Values are
strings as the templates write them (``"15006"``; ``""`` means unset) or JSON numbers.

==================  ==========================================================================
key                 meaning
==================  ==========================================================================
namespace           the proxy's namespace (default ``default``)
kind                ``sidecar`` (default), ``gateway`` or ``grpc`` (a proxyless gRPC client)
inbound_address     where mesh traffic enters (a gateway's listeners bind it)
inbound_port        the port mesh traffic enters on
app_port            the local app's port (inbound traffic is forwarded to 127.0.0.1:app_port)
outbound_address    the address of the HTTP listener the app calls other services through
outbound_port       that listener's port
locality            ``region[/zone[/subzone]]``
gateway_ports       a gateway's ports, ``PORT[:LISTEN_PORT],...``
xds_cluster         the bootstrap cluster serving the per-type xDS services (empty: ADS)
xds_protocol        ``sotw`` (default) or ``delta``: what the RDS/EDS config sources speak
xds_api             the old spelling of ``xds_protocol`` (same values), still read
==================  ==========================================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from interlock.model.errors import FieldError
from interlock.model.names import address_error, namespace_error, port_error
from interlock.model.schema import INVALID, Enum, Errors, Field, Node, Obj, OneOf, Str


class ProxyKind(enum.StrEnum):
    SIDECAR = "sidecar"
    GATEWAY = "gateway"
    #: A proxyless gRPC client (gRPC's own xDS client, ``xds:///`` targets): it gets API
    #: listeners named after the hosts it dials, and only what gRPC implements.
    GRPC = "grpc"


class XdsProtocol(enum.StrEnum):
    """The xDS variant of the per-type services a proxy's config sources name."""

    SOTW = "sotw"
    DELTA = "delta"


class PortText(Node):
    """A port number as the templates write it (``"15006"``) or a JSON number; ``""`` is
    unset (``None``)."""

    describe = "a port number"

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if value == "":
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            return self.wrong_type(value, path, errors)
        try:
            number = int(value)
        except (TypeError, ValueError):
            errors.append(FieldError(path, f"{path.rsplit('.', 1)[-1]} must be a port number"))
            return INVALID
        if message := port_error(number):
            errors.append(FieldError(path, message))
            return INVALID
        return number


class Locality(Node):
    """``region[/zone[/subzone]]`` or empty."""

    describe = "region[/zone[/subzone]]"

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return self.wrong_type(value, path, errors)
        parts = value.split("/") if value else []
        if len(parts) > 3 or any(not p.strip() or p != p.strip() for p in parts):
            errors.append(FieldError(path, "locality must be region[/zone[/subzone]]"))
            return INVALID
        return value


class GatewayPorts(Node):
    """``80:18080,443`` → ``((80, 18080), (443, 443))``, sorted; each port at most once."""

    describe = "PORT[:LISTEN_PORT],..."

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return self.wrong_type(value, path, errors)
        found: dict[int, int] = {}
        ok = True
        for entry in filter(None, (v.strip() for v in value.split(","))):
            port_text, _, listen_text = entry.partition(":")
            try:
                port, listen = int(port_text), int(listen_text or port_text)
            except ValueError:
                port = listen = 0
            if port_error(port) or port_error(listen) or port in found:
                errors.append(
                    FieldError(
                        path,
                        f"{entry!r}: gateway ports are PORT or PORT:LISTEN_PORT (1-65535), "
                        "each once",
                    )
                )
                ok = False
                continue
            found[port] = listen
        return tuple(sorted(found.items())) if ok else INVALID


def _cluster_name_error(value: str) -> str | None:
    if len(value) > 253 or any(c.isspace() for c in value):
        return "must be a cluster name"
    return None


@dataclass(frozen=True)
class NodeMetadata:
    """The node metadata of one proxy, parsed (see the module docstring for each key)."""

    namespace: str = "default"
    kind: ProxyKind = ProxyKind.SIDECAR
    inbound_address: str = "127.0.0.1"
    inbound_port: int | None = None
    app_port: int | None = None
    outbound_address: str = "127.0.0.1"
    outbound_port: int | None = None
    locality: str = ""
    gateway_ports: tuple[tuple[int, int], ...] = ()
    xds_cluster: str = ""
    xds_protocol: XdsProtocol = XdsProtocol.SOTW
    xds_api: XdsProtocol | None = None

    @property
    def delta(self) -> bool:
        """The per-type services this proxy's config sources name speak delta xDS."""
        return (self.xds_api or self.xds_protocol) is XdsProtocol.DELTA


def _address() -> Str:
    return Str(check=address_error, describe="an IP address")


NODE_METADATA: Obj[NodeMetadata] = Obj(
    NodeMetadata,
    {
        "namespace": Str(check=namespace_error),
        "kind": Enum(ProxyKind),
        "inbound_address": _address(),
        "inbound_port": PortText(),
        "app_port": PortText(),
        "outbound_address": _address(),
        "outbound_port": PortText(),
        "locality": Locality(),
        "gateway_ports": GatewayPorts(),
        "xds_cluster": Str(check=_cluster_name_error),
        "xds_protocol": Enum(XdsProtocol),
        "xds_api": Field(Enum(XdsProtocol)),
    },
    one_of=[OneOf(("xds_protocol", "xds_api"), required=False)],
    closed=False,
    describe="node metadata",
)

#: The keys :data:`NODE_METADATA` declares (what a bootstrap template may write).
KEYS = frozenset(NODE_METADATA.fields)

__all__ = ["KEYS", "NODE_METADATA", "NodeMetadata", "ProxyKind", "XdsProtocol"]
