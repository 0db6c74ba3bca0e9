"""What the control plane knows of one connected proxy, from its bootstrap's node."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from interlock.model.errors import FieldError, InvalidInput
from interlock.model.frozen import EMPTY_MAP, FrozenMap
from interlock.model.names import address_error, namespace_error, port_error, service_name_error


class ProxyKind(enum.StrEnum):
    SIDECAR = "sidecar"
    GATEWAY = "gateway"
    #: A proxyless gRPC client (gRPC's own xDS client, ``xds:///`` targets): it gets API
    #: listeners named after the hosts it dials, and only what gRPC implements.
    GRPC = "grpc"


@dataclass(frozen=True)
class Proxy:
    """A proxy's identity and the ports its bootstrap gave it.

    ``node_id`` is the instance id; ``service``/``namespace`` come from ``node.cluster`` and
    the node metadata. ``inbound_*`` is where mesh traffic enters (forwarded to
    ``127.0.0.1:app_port``); ``outbound_*`` is the HTTP listener the app calls other services
    through. Every field but ``node_id`` decides the proxy's configuration, so proxies that agree
    on them share one snapshot (see :meth:`view_key`).
    """

    node_id: str
    service: str
    namespace: str = "default"
    kind: ProxyKind = ProxyKind.SIDECAR
    inbound_address: str = "127.0.0.1"
    inbound_port: int | None = None
    app_port: int | None = None
    outbound_address: str = "127.0.0.1"
    outbound_port: int | None = None
    #: Empty: the proxy fetches everything over ADS. Otherwise the name of the bootstrap's
    #: cluster that serves the per-type xDS services (an existing fleet without ADS); RDS and
    #: EDS then name that cluster, speaking delta xDS when ``xds_delta``.
    xds_cluster: str = ""
    xds_delta: bool = False
    #: The labels of the instance this proxy serves, as registered (never from the node, which
    #: is self-asserted): policies with a workload selector (PeerAuthentication, ...) read them.
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAP)
    #: ``region/zone/subzone`` of the proxy (node metadata ``locality``): locality-aware load
    #: balancing prefers endpoints near it. Self-asserted, which only moves its own traffic.
    locality: str = ""
    #: A gateway's ports, ``(port, listen_port)``: Gateway servers on ``port`` are served on
    #: ``listen_port`` (node metadata ``gateway_ports``: ``80:18080,443``). Others are ignored.
    gateway_ports: tuple[tuple[int, int], ...] = ()

    def view_key(self) -> str:
        """A key equal for every proxy that must receive the same resources."""
        return "|".join(
            str(v)
            for v in (
                self.kind,
                self.service,
                self.namespace,
                self.inbound_address,
                self.inbound_port or "",
                self.app_port or "",
                self.outbound_address,
                self.outbound_port or "",
                self.xds_cluster,
                "delta" if self.xds_delta else "",
                ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())),
                self.locality,
                ",".join(f"{p}:{listen}" for p, listen in self.gateway_ports),
            )
        )

    def view(self) -> Proxy:
        """This proxy with the node id blanked: the input that decides its resources."""
        return replace(self, node_id="")

    def with_labels(self, labels: Mapping[str, str]) -> Proxy:
        """This proxy with its instance's registered ``labels`` (sorted, read-only)."""
        return replace(self, labels=FrozenMap(sorted(labels.items())))

    @classmethod
    def from_node(cls, node_id: str, cluster: str, metadata: Mapping[str, Any]) -> Proxy:
        """Read a proxy from an Envoy node (its metadata as a plain dict).

        Raises :class:`InvalidInput` naming each bad field, so a stream with a broken bootstrap
        is refused with a message that says what to fix.
        """
        errors: list[FieldError] = []
        if not node_id:
            errors.append(FieldError("node.id", "node.id is required (the instance id)"))
        if not cluster or (err := service_name_error(cluster)):
            errors.append(
                FieldError("node.cluster", "node.cluster must name the proxy's service")
                if not cluster
                else FieldError("node.cluster", err)  # type: ignore[arg-type]
            )

        def text(key: str, default: str) -> str:
            value = metadata.get(key, default)
            if not isinstance(value, str):
                errors.append(FieldError(f"node.metadata.{key}", f"{key} must be a string"))
                return default
            return value

        def port(key: str) -> int | None:
            value = metadata.get(key)
            if value in (None, ""):
                return None
            try:
                number = int(value)
            except (TypeError, ValueError):
                errors.append(FieldError(f"node.metadata.{key}", f"{key} must be a port number"))
                return None
            if msg := port_error(number):
                errors.append(FieldError(f"node.metadata.{key}", msg))
                return None
            return number

        namespace = text("namespace", "default")
        if msg := namespace_error(namespace):
            errors.append(FieldError("node.metadata.namespace", msg))
        kind_text = text("kind", ProxyKind.SIDECAR.value)
        try:
            kind = ProxyKind(kind_text)
        except ValueError:
            errors.append(
                FieldError("node.metadata.kind", "kind must be 'sidecar', 'gateway' or 'grpc'")
            )
            kind = ProxyKind.SIDECAR
        inbound_address = text("inbound_address", "127.0.0.1")
        outbound_address = text("outbound_address", "127.0.0.1")
        for key, value in (
            ("inbound_address", inbound_address),
            ("outbound_address", outbound_address),
        ):
            if msg := address_error(value):
                errors.append(FieldError(f"node.metadata.{key}", msg))
        xds_cluster = text("xds_cluster", "")
        if len(xds_cluster) > 253 or any(c.isspace() for c in xds_cluster):
            errors.append(FieldError("node.metadata.xds_cluster", "must be a cluster name"))
        xds_api = text("xds_api", "sotw")
        if xds_api not in ("sotw", "delta"):
            errors.append(FieldError("node.metadata.xds_api", "must be 'sotw' or 'delta'"))
        proxy = cls(
            node_id=node_id,
            service=cluster,
            namespace=namespace,
            kind=kind,
            inbound_address=inbound_address,
            inbound_port=port("inbound_port"),
            app_port=port("app_port"),
            outbound_address=outbound_address,
            outbound_port=port("outbound_port"),
            xds_cluster=xds_cluster,
            xds_delta=xds_api == "delta",
            locality=_locality(text("locality", ""), errors),
            gateway_ports=_gateway_ports(text("gateway_ports", ""), errors),
        )
        if errors:
            raise InvalidInput(
                "; ".join(f"{e.field}: {e.message}" for e in errors), errors=tuple(errors)
            )
        return proxy


def _locality(value: str, errors: list[FieldError]) -> str:
    """``region[/zone[/subzone]]`` or empty."""
    parts = value.split("/") if value else []
    if len(parts) > 3 or any(not p.strip() or p != p.strip() for p in parts):
        errors.append(
            FieldError("node.metadata.locality", "locality must be region[/zone[/subzone]]")
        )
        return ""
    return value


def _gateway_ports(value: str, errors: list[FieldError]) -> tuple[tuple[int, int], ...]:
    """``80:18080,443`` → ``((80, 18080), (443, 443))``, sorted; each port at most once."""
    found: dict[int, int] = {}
    for item in filter(None, (v.strip() for v in value.split(","))):
        port_text, _, listen_text = item.partition(":")
        try:
            port, listen = int(port_text), int(listen_text or port_text)
        except ValueError:
            port = listen = 0
        if port_error(port) or port_error(listen) or port in found:
            errors.append(
                FieldError(
                    "node.metadata.gateway_ports",
                    f"{item!r}: gateway ports are PORT or PORT:LISTEN_PORT (1-65535), each once",
                )
            )
            continue
        found[port] = listen
    return tuple(sorted(found.items()))
