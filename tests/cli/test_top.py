"""`interlock top` as a user runs it: a real server, real sidecars carrying real traffic, the
command as a child process — once, as JSON and YAML, live in a terminal until Ctrl-C, piped,
and against a broken or missing control plane."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import Mesh
from tests.support.mesh import ServerProcess, Traffic, wait_until
from tests.support.net import free_port

CLI = [sys.executable, "-m", "interlock.cli"]
RATE = 20.0  # requests per second frontend → backend
ERROR_EVERY = 5  # the backend fails one request in five


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def mesh(server: ServerProcess, tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(server, tmp_path, "delta")
    try:
        yield m
    finally:
        m.close()


@pytest.mark.e2e
def test_once_shows_the_service_row_and_the_edge_as_a_table_json_and_yaml(
    mesh: Mesh, server: ServerProcess
) -> None:
    _, frontend = mesh.service("frontend", "frontend-1")
    backend_app = mesh.app("backend", "backend-1", statuses=[200] * (ERROR_EVERY - 1) + [500])
    mesh.sidecar("backend", "backend-1", backend_app)
    url = f"http://127.0.0.1:{frontend.outbound_port}/"
    wait_until(lambda: httpx.get(url, headers={"Host": "backend"}).status_code in (200, 500), 10)
    time.sleep(2.0)  # the warm-up requests fall out of the 5 s window below

    with Traffic(url, "backend", interval=1 / RATE, max_seconds=60):
        time.sleep(7.0)
        base = ("--once", "--window", "5", "--control-plane", server.api_url)
        table = run("top", *base)
        as_json = run("top", *base, "-o", "json")
        as_yaml = run("top", *base, "--output", "yaml")

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("interlock top") and server.api_url in lines[0]
    header = next(line for line in lines if line.startswith("SERVICE"))
    assert header.split() == [
        "SERVICE", "NAMESPACE", "INSTANCES", "RPS", "SUCCESS", "P50", "P99", "CALLERS", "CALLEES",
    ]  # fmt: skip
    backend = next(line for line in lines if line.startswith("backend "))
    found = re.match(
        r"backend\s+default\s+1/1\s+([\d.]+)\s+([\d.]+)%\s+\d+ ms\s+\d+ ms\s+1\s+0$", backend
    )
    assert found, backend
    assert abs(float(found[1]) - RATE) <= 0.3 * RATE, backend
    assert abs(float(found[2]) - 80.0) <= 6.0, backend
    frontend_row = next(line for line in lines if line.startswith("frontend "))
    assert re.match(r"frontend\s+default\s+1/1\s+0\s+-\s+-\s+-\s+0\s+1$", frontend_row), (
        frontend_row
    )
    assert any(line.split()[:4] == ["SOURCE", "DESTINATION", "RPS", "ERR"] for line in lines)
    edge = next(line for line in lines if line.startswith("frontend ") and "→" in line)
    found = re.match(r"frontend\s+→\s+backend\s+([\d.]+)\s+([\d.]+)%\s+\d+ ms\s+\d+ ms$", edge)
    assert found, edge
    assert abs(float(found[2]) - 20.0) <= 6.0, edge

    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["window_seconds"] == 5 and doc["revision"] >= 1
    rows = {row["id"]: row for row in doc["services"]}
    assert set(rows) == {"frontend.default", "backend.default"}
    b = rows["backend.default"]
    assert (b["instances"], b["healthy"], b["callers"], b["callees"]) == (1, 1, 1, 0)
    assert abs(b["rps"] - RATE) <= 0.3 * RATE, b
    assert abs(b["success_rate"] - 0.8) <= 0.06, b
    assert b["requests"] > 0 and b["errors"] > 0 and b["p99_ms"] >= b["p50_ms"] > 0
    assert rows["frontend.default"]["callees"] == 1 and rows["frontend.default"]["rps"] == 0
    (e,) = [e for e in doc["edges"] if e["source"] == "frontend.default"]
    assert e["destination"] == "backend.default" and abs(e["error_rate"] - 0.2) <= 0.06

    assert as_yaml.returncode == 0, as_yaml.stderr
    assert {row["id"] for row in yaml.safe_load(as_yaml.stdout)["services"]} == set(rows)


@contextlib.contextmanager
def child(args: list[str], **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session, killed (by pid) if it is still running at exit."""
    proc = subprocess.Popen(args, start_new_session=True, **kw)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def read_until(fd: int, done: Callable[[bytes], bool], timeout: float) -> bytes:
    """Read ``fd`` until ``done(everything so far)`` or ``timeout`` s; returns what was read."""
    out = b""
    deadline = time.monotonic() + timeout
    while not done(out) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty's other side closed
                break
            if not chunk:
                break
            out += chunk
    return out


def register(server: ServerProcess, name: str) -> None:
    with server.api() as api:
        api.put(f"/v1/services/{name}", json={"port": 8080}).raise_for_status()
        body = {"address": "127.0.0.1", "port": free_port()}
        api.put(f"/v1/services/{name}/instances/{name}-1", json=body).raise_for_status()


def test_live_in_a_terminal_redraws_and_ctrl_c_exits_zero(server: ServerProcess) -> None:
    register(server, "reviews")
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        args = [*CLI, "top", "--interval", "0.5", "--control-plane", server.api_url]
        env = {**os.environ, "TERM": "xterm-256color"}
        with child(args, stdin=slave, stdout=slave, stderr=slave, env=env) as proc:
            # Each refresh redraws the whole screen, title line included.
            screen = read_until(master, lambda out: out.count(b"interlock top") >= 3, 20)
            assert screen.count(b"interlock top") >= 3, screen.decode(errors="replace")
            assert b"reviews" in screen and b"1/1" in screen
            assert b"\x1b[" in screen  # drawn with terminal control sequences, in place
            proc.send_signal(signal.SIGINT)
            rest = read_until(master, lambda _: proc.poll() is not None, 10)
            assert proc.wait(10) == 0
            shown = (screen + rest).decode(errors="replace")
            assert "Traceback" not in shown and "Aborted" not in shown
    finally:
        os.close(master)
        os.close(slave)


def test_piped_prints_each_refresh_and_ctrl_c_exits_zero(server: ServerProcess) -> None:
    register(server, "ratings")
    args = [*CLI, "top", "-o", "json", "--interval", "0.5", "--control-plane", server.api_url]
    with child(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()

        def documents(out: bytes) -> list[object]:
            docs, text, at = [], out.decode(), 0
            decoder = json.JSONDecoder()
            while True:
                while at < len(text) and text[at].isspace():
                    at += 1
                try:
                    doc, at = decoder.raw_decode(text, at)
                except ValueError:
                    return docs
                docs.append(doc)

        out = read_until(fd, lambda o: len(documents(o)) >= 2, 20)
        docs = documents(out)
        assert len(docs) >= 2, out
        for doc in docs:
            assert isinstance(doc, dict) and [s["id"] for s in doc["services"]] == [
                "ratings.default"
            ]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert b"Traceback" not in proc.stderr.read()


def test_api_errors_are_one_clean_line_and_exit_one(server: ServerProcess) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    out = run("top", "--once", "--control-plane", unreachable)
    assert out.returncode == 1
    assert "cannot reach the control plane" in out.stderr and "Traceback" not in out.stderr

    # Not the API's root: the API answers 404 (problem+json), shown as such.
    out = run("top", "--once", "--control-plane", f"{server.api_url}/not-the-api")
    assert out.returncode == 1
    assert "404" in out.stderr and "Traceback" not in out.stderr

    # A live `top` whose control plane goes away stops with the same clean error.
    args = [*CLI, "top", "-o", "json", "--interval", "0.5", "--control-plane", server.api_url]
    with child(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        time.sleep(1.0)
        server.stop()
        assert proc.wait(20) == 1
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        assert "cannot reach the control plane" in err and "Traceback" not in err

    out = run("top", "--once", "--window", "0", "--control-plane", server.api_url)
    assert out.returncode == 2 and "--window" in out.stderr
