"""What the control plane knows of one connected proxy, from its bootstrap's node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from interlock.model.errors import FieldError, InvalidInput
from interlock.model.frozen import EMPTY_MAP, FrozenMap
from interlock.model.names import service_name_error
from interlock.model.node_metadata import NODE_METADATA, NodeMetadata, ProxyKind
from interlock.model.schema import INVALID

if TYPE_CHECKING:
    from interlock.model.service import Instance


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

    def registration_error(self, instance: Instance) -> str | None:
        """What in this proxy's node contradicts the registration of its ``instance`` (None
        when nothing does): a sidecar's ``inbound_port`` is the instance's registered port; a
        gateway fronts an instance registered without a sidecar, on one of its listen
        ports. Ports decide the proxy's view, so this keeps a proxy from minting views."""
        where = f"instance {instance.instance_id} of {self.namespace}/{instance.service}"
        if self.kind is ProxyKind.GATEWAY:
            if instance.sidecar:
                return f"the node says kind gateway, but {where} is registered with a sidecar"
            listens = {listen for _, listen in self.gateway_ports}
            if listens and instance.port not in listens:
                return (
                    f"{where} is registered on port {instance.port}, which is none of the "
                    f"node's gateway_ports listen ports {sorted(listens)}"
                )
            return None
        if self.inbound_port is not None and self.inbound_port != instance.port:
            return (
                f"the node's inbound_port {self.inbound_port} is not the registered port "
                f"{instance.port} of {where}"
            )
        return None

    def view(self) -> Proxy:
        """This proxy with the node id blanked: the input that decides its resources."""
        return replace(self, node_id="")

    def with_labels(self, labels: Mapping[str, str]) -> Proxy:
        """This proxy with its instance's registered ``labels`` (sorted, read-only)."""
        return replace(self, labels=FrozenMap(sorted(labels.items())))

    @classmethod
    def from_node(cls, node_id: str, cluster: str, metadata: Mapping[str, Any]) -> Proxy:
        """Read a proxy from an Envoy node (its metadata as a plain dict, read through the
        declared schema :data:`~interlock.model.node_metadata.NODE_METADATA`).

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

        meta = NODE_METADATA.parse(metadata, "node.metadata", errors)
        if meta is INVALID:
            meta = NodeMetadata()
        proxy = cls(
            node_id=node_id,
            service=cluster,
            namespace=meta.namespace,
            kind=meta.kind,
            inbound_address=meta.inbound_address,
            inbound_port=meta.inbound_port,
            app_port=meta.app_port,
            outbound_address=meta.outbound_address,
            outbound_port=meta.outbound_port,
            xds_cluster=meta.xds_cluster,
            xds_delta=meta.delta,
            locality=meta.locality,
            gateway_ports=meta.gateway_ports,
        )
        if errors:
            raise InvalidInput(
                "; ".join(f"{e.field}: {e.message}" for e in errors), errors=tuple(errors)
            )
        return proxy
