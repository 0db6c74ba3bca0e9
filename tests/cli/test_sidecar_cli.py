"""`interlock bootstrap` and `interlock sidecar` as a user runs them: real processes, real Envoy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from interlock.client import InterlockClient
from interlock.trust import Trust
from tests.support.mesh import ServerProcess
from tests.support.net import free_port

CLI = [sys.executable, "-m", "interlock.cli"]
BASE = [
    "--service",
    "b",
    "--instance-id",
    "b-1",
    "--app-port",
    "9000",
    "--inbound-port",
    "15006",
    "--outbound-port",
    "15001",
]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize(("protocol", "api_type"), [("delta", "DELTA_GRPC"), ("sotw", "GRPC")])
def test_bootstrap_identifies_the_node_and_passes_envoy_validation(
    tmp_path: Path, server: ServerProcess, protocol: str, api_type: str
) -> None:
    token_file = tmp_path / "xds-token"
    token_file.write_text("ilp_example")
    ca_dir = tmp_path / "interlock"
    out = run(
        "bootstrap",
        *BASE,
        "--admin-port",
        "15000",
        "--namespace",
        "shop",
        "--xds",
        "cp.example:18000,cp2.example:18001",  # every replica
        "--xds-protocol",
        protocol,
        "--token-file",
        str(token_file),
        "--ca-dir",
        str(ca_dir),
        "--control-plane",
        server.api_url,
        "--ca-file",
        str(server.ca_file),
    )
    assert out.returncode == 0, out.stderr
    boot = yaml.safe_load(out.stdout)
    # TLS to the control plane: its SPIFFE ID, against the bundle written beside the bootstrap.
    tls = boot["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
    assert tls["sni"] == "cp.example"
    combined = tls["common_tls_context"]["combined_validation_context"]
    (san,) = combined["default_validation_context"]["match_typed_subject_alt_names"]
    assert san == {
        "san_type": "URI",
        "matcher": {"exact": "spiffe://interlock.local/ns/interlock-system/sa/interlock"},
    }
    sds = combined["validation_context_sds_secret_config"]["sds_config"]["path_config_source"]
    assert sds["path"] == str(ca_dir / "xds-ca.yaml")
    assert (ca_dir / "ca.pem").read_bytes() == server.ca_file.read_bytes()
    assert boot["node"]["id"] == "b-1"
    assert boot["node"]["cluster"] == "b"
    assert boot["node"]["metadata"]["namespace"] == "shop"
    assert boot["node"]["metadata"]["inbound_port"] == "15006"
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == api_type
    for source in ("cds_config", "lds_config"):
        assert boot["dynamic_resources"][source]["initial_fetch_timeout"] == "0s"
    cluster = boot["static_resources"]["clusters"][0]
    xds = cluster["load_assignment"]["endpoints"][0]
    assert [e["endpoint"]["address"]["socket_address"] for e in xds["lb_endpoints"]] == [
        {"address": "cp.example", "port_value": 18000},
        {"address": "cp2.example", "port_value": 18001},
    ]
    # A replica that stops answering is found (HTTP/2 PING), and a vanished host (TCP).
    options = next(iter(cluster["typed_extension_protocol_options"].values()))
    keepalive = options["explicit_http_config"]["http2_protocol_options"]
    assert keepalive["connection_keepalive"] == {"interval": "3s", "timeout": "2s"}
    assert cluster["upstream_connection_options"]["tcp_keepalive"]["keepalive_probes"] == 3
    # The token reaches the control plane from a file, as a secret: never in the bootstrap.
    assert "ilp_example" not in out.stdout
    (secret,) = boot["static_resources"]["secrets"]
    assert secret["generic_secret"]["secret"] == {"filename": str(token_file)}
    filters = boot["static_resources"]["clusters"][0]["typed_extension_protocol_options"]
    http_filters = next(iter(filters.values()))["http_filters"]
    assert http_filters[0]["name"] == "envoy.filters.http.credential_injector"
    path = tmp_path / "bootstrap.yaml"
    path.write_text(out.stdout)
    check = subprocess.run(
        ["envoy", "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "B_ad"], "--service"),
        (["--instance-id", "-x"], "--instance-id"),
        (["--app-port", "70000"], "--app-port"),
        (["--app-port", "15001"], "must all differ"),
        (["--xds", "nohostport"], "--xds"),
        (["--xds", "a:1,,b:2"], "empty HOST:PORT"),
        (["--xds", "a:1,a:1"], "listed twice"),
        (["--xds-protocol", "rest"], "--xds-protocol"),
        (["--address", "not-an-ip"], "--address"),
    ],
)
def test_bad_bootstrap_input_is_a_clean_usage_error(args: list[str], message: str) -> None:
    merged = dict(zip(BASE[::2], BASE[1::2], strict=True))
    merged.update(dict(zip(args[::2], args[1::2], strict=True)))
    out = run("bootstrap", *[x for kv in merged.items() for x in kv])
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_sidecar_reports_an_unreachable_control_plane(tmp_path: Path) -> None:
    port = free_port()
    out = run(
        "sidecar",
        *BASE,
        "--admin-port",
        str(free_port()),
        "--control-plane",
        f"https://127.0.0.1:{port}",
        "--register-timeout",
        "0.5",
    )
    assert out.returncode == 1
    assert "cannot reach the control plane" in out.stderr
    assert "Traceback" not in out.stderr


def test_sidecar_reports_a_missing_envoy() -> None:
    out = run("sidecar", *BASE, "--admin-port", "15000", "--envoy", "/nonexistent/envoy")
    assert out.returncode == 1
    assert "no Envoy binary found" in out.stderr
    assert "Traceback" not in out.stderr


def test_rest_calls_go_to_the_next_replica_when_one_does_not_answer(
    server: ServerProcess,
) -> None:
    """`--control-plane A,B`: A refuses connections (a replica that is down), B answers."""
    down = f"https://127.0.0.1:{free_port()}"
    trust = Trust(ca_file=server.ca_file)
    with InterlockClient(f"{down},{server.api_url}", token=server.admin_token, trust=trust) as c:
        assert "items" in c.list_services()
        assert c.base_url == server.api_url  # and the next calls stay there
    with InterlockClient(f"{server.api_url}, {down}", token=server.admin_token, trust=trust) as c:
        c._next_replica()  # as if the first had stopped answering since
        assert "items" in c.list_services() and c.base_url == server.api_url
