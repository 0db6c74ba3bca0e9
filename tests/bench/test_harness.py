"""The benchmark harness still runs: its in-process figures, at the quick scale, produce a
table and a JSON report with every figure asked for. Nothing is timed here (the figures'
values are not asserted; `make bench` judges them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_in_process_figures_are_reported(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--only",
            "B6,B7",
            "--results",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "B6" in done.stdout and "B7" in done.stdout
    report = json.loads((tmp_path / "quick.json").read_text())
    figures = {f["id"]: f for f in report["figures"]}
    assert set(figures) == {"B6", "B7"}
    for figure in figures.values():
        assert figure["passed"] in (True, False), figure
        assert figure["numbers"]["seconds"] > 0
    # The incremental path re-serializes only the one load assignment that changed.
    assert figures["B7"]["numbers"]["reserialized"] == 1
    assert report["machine"]["cpus"]


def test_unknown_figures_are_a_clean_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--only", "B99"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown figure(s) ['B99']" in done.stderr
    assert "Traceback" not in done.stderr


def test_b8_runs_the_minute_at_a_load_that_reaches_the_rate_with_room_in_p99() -> None:
    from bench.api_load import _pick

    # SQLite-like: many loads reach the rate; the best one with p99 at most half the goal.
    sqlite = {2: (1652.0, 0.003), 8: (3645.0, 0.0065), 16: (4961.0, 0.0098), 32: (6048.0, 0.016)}
    assert _pick(sqlite) == 16
    # PostgreSQL-like: the loads that reach the rate all have p99 above half the goal.
    pg = {2: (631.0, 0.0064), 4: (949.0, 0.0097), 8: (1431.0, 0.012), 16: (1857.0, 0.018)}
    assert _pick(pg) == 8
    # Nothing reaches the rate: the best rate.
    assert _pick({2: (300.0, 0.002), 4: (500.0, 0.03)}) == 4
