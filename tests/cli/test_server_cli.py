"""`interlock server` and the read commands, as a user runs them against a real server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.mesh import ServerProcess

CLI = [sys.executable, "-m", "interlock.cli"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path)
    srv.start()
    yield srv
    srv.stop()


def test_get_prints_a_table_json_and_yaml(server: ServerProcess) -> None:
    with server.api() as api:
        api.put("/v1/services/reviews", json={"protocol": "http2", "port": 9080}).raise_for_status()
        api.put(
            "/v1/services/reviews/instances/reviews-v2",
            json={"address": "10.0.0.7", "port": 15006, "labels": {"version": "v2"}},
        ).raise_for_status()

    table = run("get", "services", "--control-plane", server.api_url)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "NAMESPACE", "PROTOCOL", "PORT"]
    assert row.split() == ["reviews", "default", "http2", "9080"]

    as_json = json.loads(
        run("get", "services", "-o", "json", "--control-plane", server.api_url).stdout
    )
    assert [s["name"] for s in as_json["items"]] == ["reviews"]

    inst = run("get", "instances", "reviews", "-o", "yaml", "--control-plane", server.api_url)
    items = yaml.safe_load(inst.stdout)["items"]
    assert items[0]["instance_id"] == "reviews-v2" and items[0]["labels"] == {"version": "v2"}

    inst_table = run("get", "instances", "reviews", "--control-plane", server.api_url).stdout
    assert "version=v2" in inst_table and "10.0.0.7" in inst_table


def test_get_reports_api_errors_cleanly(server: ServerProcess) -> None:
    out = run("get", "services", "nosuch", "--control-plane", server.api_url)
    assert out.returncode == 1
    assert "404" in out.stderr and "nosuch" in out.stderr
    assert "Traceback" not in out.stderr

    out = run("get", "services", "-o", "xml", "--control-plane", server.api_url)
    assert out.returncode == 2 and "xml" in out.stderr


def test_get_reports_an_unreachable_control_plane() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run("get", "services", "--control-plane", f"http://127.0.0.1:{port}")
    assert out.returncode == 1
    assert "cannot reach the control plane" in out.stderr


def test_server_stops_cleanly_on_sigterm_and_keeps_its_data(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    srv.start()
    try:
        with srv.api() as api:
            rev = api.put("/v1/services/b", json={"port": 8080}).json()["revision"]
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(15) == 0, srv.log()
        assert "Traceback" not in srv.log()
        srv.start()  # same database file: migrations are idempotent, data is there
        with srv.api() as api:
            assert api.get("/v1/revision").json()["revision"] == rev
            assert api.get("/v1/services/b").json()["port"] == 8080
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api", "nonsense"], "--api"),
        (["--xds", "127.0.0.1:99999"], "--xds"),
        (["--db", "mysql://root@127.0.0.1/test"], "mysql"),
    ],
)
def test_server_rejects_bad_settings_with_a_clear_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = run("server", "--db", f"sqlite:///{tmp_path}/x.db", *args, timeout=30)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_server_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = run(
            "server",
            "--db",
            f"sqlite:///{tmp_path}/x.db",
            "--api",
            f"127.0.0.1:{port}",
            "--xds",
            "127.0.0.1:0",
        )
    assert out.returncode == 1
    assert str(port) in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
