"""`interlock server`'s security flags and `interlock ca` as a user runs them: clean errors,
tokens from the environment, no secret on the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mesh import ServerProcess
from tests.support.net import free_ports

CLI = [sys.executable, "-m", "interlock.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env or dict(os.environ)
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--leaf-lifetime", "soon"], 2, "--leaf-lifetime"),
        (["--leaf-lifetime", "5s"], 1, "at least 10 seconds"),
        (["--trust-domain", "Not_Valid"], 1, "--trust-domain"),
        (["--ca-cert", "/nonexistent.pem"], 1, "--ca-cert and --ca-key together"),
        (["--ca-cert", "/nonexistent.pem", "--ca-key", "/nonexistent.key"], 1, "cannot read"),
        (["--token-recheck", "0s"], 2, "--token-recheck"),
    ],
)
def test_bad_security_settings_are_one_clean_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    api, xds = free_ports(2)
    out = run(
        "server",
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        "--api",
        f"127.0.0.1:{api}",
        "--xds",
        f"127.0.0.1:{xds}",
        *args,
    )
    assert out.returncode == code, out.stdout + out.stderr
    assert message in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path)
    srv.start()
    yield srv
    srv.stop()


def test_the_first_start_says_where_the_admin_token_is_and_never_prints_it(
    server: ServerProcess,
) -> None:
    log = server.log()
    assert str(server.admin_token_file) in log
    assert server.admin_token not in log
    assert "self-signed root CA" in log
    assert "generated the CA key-encryption key" in log


def test_ca_status_needs_the_token_and_shows_the_ca(server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if k != "INTERLOCK_TOKEN"}
    out = run("ca", "status", "--control-plane", server.api_url, env=env)
    assert out.returncode == 1
    assert "401" in out.stderr and "Traceback" not in out.stderr
    out = run(
        "ca",
        "status",
        "--control-plane",
        server.api_url,
        env={**env, "INTERLOCK_TOKEN": server.admin_token},
    )
    assert out.returncode == 0, out.stderr
    assert "interlock.local" in out.stdout and "idle" in out.stdout
    wrong = run(
        "get", "services", "--control-plane", server.api_url, env={**env, "INTERLOCK_TOKEN": "x"}
    )
    assert wrong.returncode == 1 and "403" in wrong.stderr
