"""`interlock gateway`'s bootstrap and flags, and the sidecar bootstrap's locality: what Envoy
is told about the node, checked by `envoy --mode validate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from interlock.sidecar import SidecarSpec, render_sidecar_bootstrap
from interlock.sidecar.gateway import GatewaySpec, parse_port, render_gateway_bootstrap
from tests.support.envoy_validate import envoy_binary

CLI = [sys.executable, "-m", "interlock.cli"]


def validate(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(text)
    check = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_gateway_bootstrap_names_its_ports_and_kind(tmp_path: Path) -> None:
    token = tmp_path / "xds-token"
    token.write_text("ilp_example")
    spec = GatewaySpec(
        name="edge",
        ports=(parse_port("80:18080"), parse_port("443")),
        admin_port=15000,
        namespace="shop",
        address="0.0.0.0",
        locality="eu-west/zone-a",
        token_file=str(token),
    )
    text = render_gateway_bootstrap(spec)
    node = yaml.safe_load(text)["node"]
    assert node["id"] == "edge" and node["cluster"] == "edge"
    assert node["locality"] == {"region": "eu-west", "zone": "zone-a", "sub_zone": ""}
    assert node["metadata"] == {
        "namespace": "shop",
        "kind": "gateway",
        "inbound_address": "0.0.0.0",
        "gateway_ports": "80:18080,443:443",
        "locality": "eu-west/zone-a",
    }
    assert spec.all_labels == {"gateway": "edge", "istio": "ingressgateway"}
    assert "ilp_example" not in text
    validate(tmp_path, text)


def test_the_sidecar_bootstrap_carries_its_locality(tmp_path: Path) -> None:
    spec = SidecarSpec("b", "b-1", 9000, 15006, 15001, 15000, locality="us-east/zone-a/rack-1")
    text = render_sidecar_bootstrap(spec)
    node = yaml.safe_load(text)["node"]
    assert node["locality"] == {"region": "us-east", "zone": "zone-a", "sub_zone": "rack-1"}
    assert node["metadata"]["locality"] == "us-east/zone-a/rack-1"
    with pytest.raises(ValueError, match="--locality"):
        render_sidecar_bootstrap(
            SidecarSpec("b", "b-1", 9000, 15006, 15001, 15000, locality="a//b")
        )


@pytest.mark.parametrize(
    ("ports", "says"),
    [(["80:x"], "PORT:LISTEN_PORT"), (["0"], "1-65535")],
)
def test_bad_gateway_ports_are_usage_errors(ports: list[str], says: str) -> None:
    args = [arg for p in ports for arg in ("--port", p)]
    out = subprocess.run(
        [*CLI, "gateway", "--name", "edge", *args], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert says in out.stderr


def test_a_gateway_spec_refuses_duplicate_ports() -> None:
    spec = GatewaySpec(name="edge", ports=((80, 8080), (80, 8081)), admin_port=15000)
    with pytest.raises(ValueError, match="once"):
        render_gateway_bootstrap(spec)
