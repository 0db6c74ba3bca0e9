"""`interlock credentials --instance`: mistakes are usage errors, before any request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "interlock.cli"]


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
    out = subprocess.run(
        [
            *CLI,
            "credentials",
            *args,
            "--out",
            str(tmp_path),
            "--control-plane",
            "https://192.0.2.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert list(tmp_path.iterdir()) == []
