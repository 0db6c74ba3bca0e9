"""The proxyless gRPC bootstrap (gRFC A27): TLS to the control plane against the mesh CA
(A65), the token envelope as call credentials (A97), xDS v3, and the node as the control
plane reads it. (grpcio using it for real: tests/e2e/test_proxyless_grpc.py.)"""

from __future__ import annotations

import json

import pytest

from interlock.model import Proxy, ProxyKind
from interlock.sidecar.grpc_bootstrap import GrpcBootstrapSpec, render_grpc_bootstrap

SPEC = GrpcBootstrapSpec(
    service="caller",
    instance_id="c1",
    xds_host="10.0.0.5",
    xds_port=15010,
    ca_file="/etc/interlock/ca.pem",
    token_file="/etc/interlock/grpc-token.jwt",
    namespace="shop",
    locality="eu/west",
)


def test_the_bootstrap_trusts_the_mesh_ca_and_sends_the_token_file() -> None:
    data = json.loads(render_grpc_bootstrap(SPEC))
    (server,) = data["xds_servers"]
    assert server["server_uri"] == "10.0.0.5:15010"
    assert server["channel_creds"] == [
        {"type": "tls", "config": {"ca_certificate_file": "/etc/interlock/ca.pem"}}
    ]
    assert server["call_creds"] == [
        {"type": "jwt_token_file", "config": {"jwt_token_file": "/etc/interlock/grpc-token.jwt"}}
    ]
    assert server["server_features"] == ["xds_v3"]
    node = data["node"]
    assert node["locality"] == {"region": "eu", "zone": "west"}
    proxy = Proxy.from_node(node["id"], node["cluster"], node["metadata"])
    assert (proxy.kind, proxy.service, proxy.namespace, proxy.locality) == (
        ProxyKind.GRPC,
        "caller",
        "shop",
        "eu/west",
    )


def test_bad_flags_are_named() -> None:
    with pytest.raises(ValueError, match="--service"):
        render_grpc_bootstrap(GrpcBootstrapSpec("Bad_Name", "c1", "h", 1, "ca", "tok"))
    with pytest.raises(ValueError, match="--locality"):
        render_grpc_bootstrap(
            GrpcBootstrapSpec("caller", "c1", "h", 1, "ca", "tok", locality="a//b")
        )
