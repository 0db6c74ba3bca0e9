"""What a proxy's node says about its locality and gateway ports (node metadata)."""

from __future__ import annotations

import pytest

from interlock.model import InvalidInput, Proxy, ProxyKind


def test_locality_and_gateway_ports_come_from_the_node_metadata() -> None:
    proxy = Proxy.from_node(
        "edge",
        "edge",
        {"kind": "gateway", "locality": "eu/west", "gateway_ports": "443, 80:18080"},
    )
    assert proxy.kind is ProxyKind.GATEWAY
    assert proxy.locality == "eu/west"
    assert proxy.gateway_ports == ((80, 18080), (443, 443))
    other = Proxy.from_node("edge", "edge", {"kind": "gateway", "gateway_ports": "80"})
    assert proxy.view_key() != other.view_key()


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"locality": "a/b/c/d"}, "node.metadata.locality"),
        ({"locality": "a//b"}, "node.metadata.locality"),
        ({"gateway_ports": "80:0"}, "node.metadata.gateway_ports"),
        ({"gateway_ports": "80,80:81"}, "node.metadata.gateway_ports"),
        ({"gateway_ports": "http"}, "node.metadata.gateway_ports"),
    ],
)
def test_a_bad_locality_or_gateway_port_is_refused_naming_the_field(
    metadata: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Proxy.from_node("p-1", "p", metadata)
    assert [e.field for e in caught.value.errors] == [field]
