"""The live service graph: who calls whom, how often, how many fail, how fast — over the last
minute, from the access logs sidecars send.

Memory is bounded: each edge keeps one bucket per second (a count, an error count and a small
log-scale latency histogram) for the last ``retention`` seconds, whatever the request rate.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

EXTERNAL = "external"
#: Sidecars flush access logs about once a second: the newest second is always incomplete.
REPORTING_LAG = 1.5
#: Upper bounds (ms) of the latency histogram's buckets; the last bucket is open-ended.
LATENCY_BOUNDS_MS = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000, 30000,
)  # fmt: skip


@dataclass
class _Second:
    count: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))


@dataclass(frozen=True)
class Edge:
    """One caller → callee pair over a window. ``rps`` divides by the part of the window the
    edge has existed for (up to now, less the reporting lag), so a new edge shows its real rate
    rather than a minute-average, and an edge that went quiet decays toward zero."""

    source: str
    destination: str
    requests: int
    errors: int
    rps: float
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class Graph:
    window_seconds: float
    nodes: tuple[str, ...]
    edges: tuple[Edge, ...]


def is_error(status: int) -> bool:
    """A failed request: a 5xx, or no response at all (code 0: reset, timeout, no upstream)."""
    return status == 0 or status >= 500


class TrafficGraph:
    """Thread-safe: ALS streams record from the event loop, the API reads from anywhere."""

    def __init__(self, retention: int = 120, clock: Callable[[], float] = time.time) -> None:
        self.retention = retention
        self.clock = clock
        self._edges: dict[tuple[str, str], dict[int, _Second]] = {}
        self._first_seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def record(
        self,
        source: str,
        destination: str,
        status: int,
        duration_ms: float,
        at: float | None = None,
    ) -> None:
        now = self.clock() if at is None else at
        second = int(now)
        key = (source, destination)
        with self._lock:
            buckets = self._edges.setdefault(key, {})
            self._first_seen.setdefault(key, now)
            bucket = buckets.get(second)
            if bucket is None:
                bucket = buckets[second] = _Second()
                for old in [s for s in buckets if s <= second - self.retention]:
                    del buckets[old]
            bucket.count += 1
            if is_error(status):
                bucket.errors += 1
            bucket.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, duration_ms)] += 1

    def snapshot(self, window: float = 60.0, now: float | None = None) -> Graph:
        now = self.clock() if now is None else now
        start = now - window
        edges = []
        nodes: set[str] = set()
        with self._lock:
            for key in list(self._edges):
                buckets = self._edges[key]
                seconds = [b for s, b in buckets.items() if s >= int(start)]
                if not seconds:
                    if max(buckets, default=0) <= int(now) - self.retention:
                        del self._edges[key]
                        self._first_seen.pop(key, None)
                    continue
                count = sum(b.count for b in seconds)
                errors = sum(b.errors for b in seconds)
                hist = [
                    sum(b.latency[i] for b in seconds) for i in range(len(LATENCY_BOUNDS_MS) + 1)
                ]
                last = max(s for s, b in buckets.items() if s >= int(start)) + 1
                begin = max(start, self._first_seen[key])
                span = max(1.0, max(last, now - REPORTING_LAG) - begin)
                edges.append(
                    Edge(
                        source=key[0],
                        destination=key[1],
                        requests=count,
                        errors=errors,
                        rps=round(count / span, 3),
                        error_rate=round(errors / count, 4) if count else 0.0,
                        p50_ms=_quantile(hist, 0.50),
                        p99_ms=_quantile(hist, 0.99),
                    )
                )
                nodes.update(key)
        edges.sort(key=lambda e: (e.source, e.destination))
        return Graph(window_seconds=window, nodes=tuple(sorted(nodes)), edges=tuple(edges))


def _quantile(hist: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile (an over-estimate by at most one
    bucket; the open-ended last bucket reports its lower bound)."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank and n:
            return float(
                LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else LATENCY_BOUNDS_MS[-1]
            )
    return float(LATENCY_BOUNDS_MS[-1])
