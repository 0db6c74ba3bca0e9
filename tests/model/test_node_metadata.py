"""One declared schema for node metadata: what the bootstrap templates write is what
``Proxy.from_node`` reads, key for key."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from interlock.model import Proxy, ProxyKind
from interlock.model.node_metadata import KEYS
from interlock.sidecar.bootstrap import SidecarSpec, XdsProtocol, render_sidecar_bootstrap
from interlock.sidecar.gateway import GatewaySpec, render_gateway_bootstrap


def _node(text: str) -> dict[str, Any]:
    node: dict[str, Any] = yaml.safe_load(text)["node"]
    return node


def _sidecar(xds_api: str) -> SidecarSpec:
    return SidecarSpec(
        service="web",
        instance_id="web-1",
        app_port=8080,
        inbound_port=15006,
        outbound_port=15001,
        admin_port=15000,
        namespace="shop",
        locality="eu/west",
        xds_api=xds_api,
        xds_protocol=XdsProtocol.DELTA,
    )


@pytest.mark.parametrize("xds_api", ["ads", "per-type"])
def test_a_rendered_sidecar_bootstrap_reads_back_as_the_proxy_it_describes(xds_api: str) -> None:
    node = _node(render_sidecar_bootstrap(_sidecar(xds_api)))
    assert set(node["metadata"]) <= KEYS
    proxy = Proxy.from_node(node["id"], node["cluster"], node["metadata"])
    assert (proxy.service, proxy.namespace, proxy.kind) == ("web", "shop", ProxyKind.SIDECAR)
    assert (proxy.inbound_port, proxy.app_port, proxy.outbound_port) == (15006, 8080, 15001)
    assert proxy.locality == "eu/west"
    per_type = xds_api == "per-type"
    assert (proxy.xds_cluster != "", proxy.xds_delta) == (per_type, per_type)


def test_a_rendered_gateway_bootstrap_reads_back_as_the_gateway_it_describes() -> None:
    spec = GatewaySpec(name="edge", ports=((80, 18080), (443, 443)), admin_port=15000)
    node = _node(render_gateway_bootstrap(spec))
    assert set(node["metadata"]) <= KEYS
    proxy = Proxy.from_node(node["id"] or "edge-1", node["cluster"], node["metadata"])
    assert proxy.kind is ProxyKind.GATEWAY
    assert proxy.gateway_ports == ((80, 18080), (443, 443))


def test_the_old_xds_api_key_still_means_the_xds_protocol() -> None:
    old = Proxy.from_node("w-1", "web", {"xds_cluster": "x", "xds_api": "delta"})
    new = Proxy.from_node("w-1", "web", {"xds_cluster": "x", "xds_protocol": "delta"})
    assert old == new and new.xds_delta


def test_keys_others_write_into_the_metadata_are_ignored() -> None:
    proxy = Proxy.from_node("w-1", "web", {"ISTIO_VERSION": "1.22", "inbound_port": 15006.0})
    assert proxy.inbound_port == 15006
