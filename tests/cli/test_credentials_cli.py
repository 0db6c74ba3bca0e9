"""`interlock credentials`: the files a service's hosts need to join the mesh, and nothing more."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.mesh import ServerProcess, wait_until

CLI = [sys.executable, "-m", "interlock.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env or dict(os.environ)
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("credentials"))
    srv.start()
    yield srv
    srv.stop()


def register(server: ServerProcess, token: str, service: str) -> int:
    """PUT one instance of ``service`` with ``token``; the status."""
    with httpx.Client(
        base_url=server.api_url,
        verify=server.tls(),
        headers={"Authorization": f"Bearer {token}"},
    ) as api:
        api.put(f"/v1/services/{service}", json={"port": 8080})
        body = {"address": "127.0.0.1", "port": 15006}
        return api.put(f"/v1/services/{service}/instances/{service}-1", json=body).status_code


def test_each_service_gets_its_own_token_and_the_bundle(
    server: ServerProcess, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "INTERLOCK_TOKEN"}
    out = run(
        "credentials", "shop", "cart", "--out", str(tmp_path),
        "--token-file", str(server.admin_token_file), "--control-plane", server.api_url,
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    tokens = {}
    for service in ("shop", "cart"):
        directory = tmp_path / service
        token_file = directory / "registration-token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert (directory / "ca.pem").read_bytes() == server.ca_file.read_bytes()
        tokens[service] = token_file.read_text()
        assert tokens[service].startswith("ilr_")
        assert tokens[service] not in out.stdout + out.stderr, "a token is never printed"
        assert (directory / "registration-token-id").read_text() in out.stdout
    # Each token registers its own service only.
    assert register(server, tokens["shop"], "shop") == 201
    assert register(server, tokens["shop"], "cart") == 403
    assert register(server, tokens["cart"], "cart") == 201

    # Again: new tokens, the ones written before are revoked.
    out = run(
        "credentials", "shop", "--out", str(tmp_path), "--control-plane", server.api_url,
        "-o", "json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    fresh = (tmp_path / "shop" / "registration-token").read_text()
    assert fresh != tokens["shop"]
    assert register(server, fresh, "shop") == 200
    # (the API remembers a token lookup for up to 2 s)
    wait_until(lambda: register(server, tokens["shop"], "shop") == 403, 5, what="revoked")


def test_bad_input_is_a_clean_error(server: ServerProcess, tmp_path: Path) -> None:
    out = run("credentials", "Bad_Name", "--out", str(tmp_path))
    assert out.returncode == 2 and "SERVICES" in out.stderr
    blocked = tmp_path / "file"
    blocked.write_text("")
    out = run("credentials", "shop", "--out", str(blocked), "--control-plane", server.api_url)
    assert out.returncode == 1 and "--out" in out.stderr and "Traceback" not in out.stderr
    out = run(
        "credentials", "shop", "--out", str(tmp_path), "--control-plane", server.api_url,
        "--token-file", str(tmp_path / "missing"), "--timeout", "0.5",
    )  # fmt: skip
    assert out.returncode == 1 and "--token-file" in out.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["edge", "--instance", "edge-1"], "ID=ADDRESS:PORT"),
        (["edge", "--instance", "edge-1=10.0.0.1"], "HOST:PORT"),
        (["edge", "--instance", "-x=10.0.0.1:80"], "--instance"),
        (["edge", "web", "--instance", "edge-1=10.0.0.1:80"], "exactly one service"),
    ],
)
def test_bad_fleet_instances_are_usage_errors(args: list[str], says: str, tmp_path: Path) -> None:
    out = run(
        "credentials", *args, "--out", str(tmp_path), "--control-plane", "https://192.0.2.1:1"
    )
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_fleet_gets_registered_instances_and_their_proxy_tokens(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`--instance` registers each instance (creating the service) and writes its proxy token;
    again: new tokens, the previous ones revoked (docs/existing-envoy.md)."""
    args = ["credentials", "fleet", "--out", str(tmp_path), "--control-plane", server.api_url]
    fleet = ["--instance", "fleet-1=127.0.0.1:15001", "--instance", "fleet-2=127.0.0.1:15002"]
    out = run(*args, *fleet, "--sidecar", "-o", "json")
    assert out.returncode == 0, out.stderr
    with server.api() as api:
        instances = api.get("/v1/services/fleet/instances").json()["items"]
        tokens = {t["token_id"]: t for t in api.get("/v1/tokens").json()["items"]}
    assert {(i["instance_id"], i["port"], i["sidecar"]) for i in instances} == {
        ("fleet-1", 15001, True),
        ("fleet-2", 15002, True),
    }
    first = {}
    for instance in ("fleet-1", "fleet-2"):
        token_file = tmp_path / "fleet" / instance / "xds-token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        first[instance] = (tmp_path / "fleet" / instance / "xds-token-id").read_text()
        assert tokens[first[instance]]["instance_id"] == instance
        assert token_file.read_text() not in out.stdout + out.stderr, "a token is never printed"

    out = run(*args, *fleet[:2], "--sidecar")
    assert out.returncode == 0, out.stderr
    with server.api() as api:
        items = api.get("/v1/tokens").json()["items"]
    live = {t["token_id"] for t in items if t["revoked_at"] is None}
    assert first["fleet-1"] not in live and first["fleet-2"] in live
    assert (tmp_path / "fleet" / "fleet-1" / "xds-token-id").read_text() in live
