"""`interlock demo` as a user runs it: traffic lands on both backends, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def processes_in_session(sid: int) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # fields[3] is the session id
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_demo_shows_where_requests_landed_and_cleans_up_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "interlock.cli",
            "demo",
            "--api",
            "127.0.0.1:0",
            "--xds",
            "127.0.0.1:0",
            "--requests",
            "40",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "Press Ctrl-C" in output, output
        assert any(p for p in processes_in_session(proc.pid) if "envoy" in p), "sidecars run"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        output += rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 0, output
    tally = {
        line.split()[0]: int(line.split()[1])
        for line in output.splitlines()
        if line.strip().startswith("backend-v")
    }
    assert set(tally) == {"backend-v1", "backend-v2"}, output
    assert sum(tally.values()) == 40
    assert min(tally.values()) >= 5, f"round robin should spread 40 requests: {tally}"
    assert "curl" in output and "/config_dump" in output
    time.sleep(0.5)
    assert processes_in_session(proc.pid) == []
    assert list(tmp_path.iterdir()) == [], "the demo left files behind"
