"""`python -m bench.run [--quick] [--only B1,B6] [--views N]`: run the figures, print a table
with each goal and PASS/FAIL, save JSON (``bench/results/latest.json``, or ``quick.json``).

The whole suite (``make bench``) runs in about 20 minutes on 2 cores, most of it B4's ten-minute
hold (which also carries B3 at 5,000 streams and B5); ``--quick`` (``make bench-quick``) runs
every figure at a reduced scale in about two minutes — those rows say so and are judged
``n/a`` where the scale is below the goal's.

The control plane runs on CPU 0 (``taskset``), this process and everything it starts (fleet
shards, Envoys, load generators) on CPU 1. Every process started is stopped and every
temporary file and schema removed, also when a figure fails; a figure that fails to run is a
row with its error, the others still run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from bench import controlplane as cp
from bench import cpu
from bench.report import RESULTS, Figure, print_table, save

ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12"]
TITLES = {
    "B1": "REST commit of one endpoint change -> every proxy ACKed",
    "B2": "new route end to end",
    "B3": "one-service delta push reaches all streams",
    "B4": "concurrent streams held 10 min",
    "B5": "control-plane memory per proxy",
    "B6": "full translate + serialize",
    "B7": "rebuild after one service changes",
    "B8": "REST registrations sustained 60 s",
    "B9": "all streams drop and reconnect",
    "B10": "idle CPU",
    "B11": "data plane: added latency of two sidecars with mTLS",
    "B12": "scoped views (Sidecar): one endpoint change pushed only to dependents",
}


def _groups(
    quick: bool, views: int
) -> list[tuple[set[str], Callable[[set[str]], Iterable[Figure]]]]:
    """(figures a group can produce, how to run it for the wanted ones), in run order: cheap
    in-process figures first, then the two fleet sessions, the API load, the data plane."""
    from bench import api_load, dataplane, pushes
    from bench import scope as scoped

    scale = pushes.Scale.of(quick, views)
    return [
        ({"B6"}, lambda w: cpu.b6(quick)),
        ({"B7"}, lambda w: cpu.b7(quick)),
        ({"B12"}, lambda w: scoped.b12(quick)),
        ({"B1", "B2", "B10"}, lambda w: pushes.mesh_session(scale, w)),
        ({"B8"}, lambda w: api_load.b8(quick)),
        ({"B11"}, lambda w: dataplane.b11(quick)),
        (
            {"B3", "B4", "B5", "B9", "B7"},
            lambda w: pushes.fleet_session(scale, w, hold="B4" in w),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the 2-minute subset")
    parser.add_argument("--only", default="", help="comma-separated figure ids, e.g. B1,B6")
    parser.add_argument(
        "--views", type=int, default=5, help="client services the fleet's streams belong to"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where to write the JSON results"
    )
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="run the servers with --plaintext (no TLS), to compare with the default",
    )
    args = parser.parse_args(argv)
    if args.plaintext:
        os.environ[cp.PLAINTEXT_ENV] = "1"  # inherited by every server and fleet process
    wanted = {f.strip().upper() for f in args.only.split(",") if f.strip()} or set(ORDER)
    unknown = wanted - set(ORDER)
    if unknown:
        print(f"unknown figure(s) {sorted(unknown)}; known: {', '.join(ORDER)}", file=sys.stderr)
        return 2
    pinned = cp.pin_self()
    if pinned:
        server_cpus = sorted(cp.cores()[0] or [])
        print(f"control plane on CPU {server_cpus}, the rest on {sorted(pinned)}", file=sys.stderr)
    else:
        print("no CPU pinning (taskset missing or fewer than 2 cores)", file=sys.stderr)
    figures: list[Figure] = []
    started_all = time.monotonic()
    for group, run in _groups(args.quick, args.views):
        mine = group & wanted
        if mine == {"B7"} and "B7" in group and len(group) > 1:
            continue  # B7's wire bytes ride on the fleet session only when it runs anyway
        if not mine:
            continue
        started = time.monotonic()
        print(f"running {', '.join(sorted(mine))} ...", file=sys.stderr, flush=True)
        try:
            produced = list(run(mine))
        except Exception as exc:
            traceback.print_exc()
            produced = [
                Figure(fid, TITLES[fid], "", f"error: {type(exc).__name__}", False, note=str(exc))
                for fid in sorted(mine)
            ]
        took = round(time.monotonic() - started, 1)
        for f in produced:
            f.seconds = took
        figures += produced
        print(f"  {', '.join(sorted(mine))} done in {took:.0f}s", file=sys.stderr, flush=True)
    figures.sort(key=lambda f: ORDER.index(f.id))
    print()
    print_table(figures)
    total = time.monotonic() - started_all
    name = "quick.json" if args.quick else "latest.json"
    if args.plaintext:
        name = name.replace(".json", "-plaintext.json")
    path = save(figures, name, seconds=total, directory=args.results, tls=not args.plaintext)
    print(f"\n{len(figures)} figures in {total / 60:.1f} min; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
