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
