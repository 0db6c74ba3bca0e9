"""A figure's result: what was measured, the goal, pass/fail; printed as a table, saved as JSON."""

from __future__ import annotations

import contextlib
import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


@dataclass
class Figure:
    id: str
    title: str
    goal: str
    value: str
    passed: bool | None  # None: not measured here (says why in note)
    numbers: dict[str, float] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0


def machine() -> dict[str, str]:
    import os

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": model,
        "cpus": str(os.cpu_count()),
        "memory": memory,
        "taskset": "yes" if _has_taskset() else "no",
    }


def _has_taskset() -> bool:
    import shutil

    return shutil.which("taskset") is not None


def print_table(figures: Sequence[Figure]) -> None:
    rows = [("", "figure", "goal", "measured", "")]
    for f in figures:
        mark = "PASS" if f.passed else "FAIL" if f.passed is False else "n/a"
        rows.append((f.id, f.title, f.goal, f.value, mark))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for f in figures:
        if f.note:
            print(f"{f.id}: {f.note}")


def save(
    figures: Sequence[Figure],
    name: str = "latest.json",
    seconds: float = 0.0,
    directory: Path = RESULTS,
    *,
    tls: bool = True,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(
        json.dumps(
            {
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(seconds, 1),
                "tls": tls,
                "machine": machine(),
                "figures": [_finite(asdict(f)) for f in figures],
            },
            indent=2,
        )
    )
    return path


def _finite(value: object) -> object:
    """JSON has no NaN: unmeasured numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
