"""The live service graph: who calls whom, how often, how many fail, how fast — over the last
minute, from the access logs sidecars send.

Memory is bounded whatever the senders do: each edge keeps one bucket per second (a count, an
error count and a small log-scale latency histogram) for the last ``retention`` seconds,
whatever the request rate, and there are at most ``max_edges`` edges. What would go beyond is
dropped, and :meth:`TrafficGraph.record` says why (the ALS receiver counts it in
``interlock_access_log_entries_dropped_total{reason}``):

- ``edge_limit``: a sample of a new edge while ``max_edges`` edges have samples within the
  retention (edges with none are forgotten first);
- ``too_old``: a sample timed ``retention`` seconds or more before now; it could only make a
  bucket that is already expired.

A sample timed in the future (a sender's clock ahead, or a lie) counts at the current second:
no sample lands ahead of the window, where it would count in every window until it expired.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

EXTERNAL = "external"
#: How many caller → callee pairs a graph holds by default.
MAX_EDGES = 10_000
EDGE_LIMIT: Final = "edge_limit"
TOO_OLD: Final = "too_old"
Dropped = Literal["edge_limit", "too_old"]
"""Why :meth:`TrafficGraph.record` dropped a sample (see the module docstring)."""
#: Sidecars flush access logs about once a second: the newest second is always incomplete.
REPORTING_LAG = 1.5
#: Upper bounds (ms) of the latency histogram's buckets; the last bucket is open-ended.
LATENCY_BOUNDS_MS = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000, 30000,
)  # fmt: skip


@dataclass(slots=True)
class _Second:
    count: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))


@dataclass(slots=True)
class _Series:
    """One edge: when it was first seen, and its buckets by second."""

    first_seen: float
    buckets: dict[int, _Second] = field(default_factory=dict)


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
    """Thread-safe: ALS streams record from the event loop, the API reads from anywhere.

    Holds at most ``max_edges`` edges of at most ``retention`` one-second buckets each (see
    the module docstring for what is dropped)."""

    def __init__(
        self,
        retention: int = 120,
        clock: Callable[[], float] = time.time,
        max_edges: int = MAX_EDGES,
    ) -> None:
        self.retention = retention
        self.clock = clock
        self.max_edges = max_edges
        self._series: dict[tuple[str, str], _Series] = {}
        self._swept = float("-inf")
        self._lock = threading.Lock()

    def record(
        self,
        source: str,
        destination: str,
        status: int,
        duration_ms: float,
        at: float | None = None,
    ) -> Dropped | None:
        """Count one request of ``source`` → ``destination`` at time ``at`` (epoch seconds;
        now if None, and at most now). Returns None, or why the sample was dropped."""
        now = self.clock()
        at = now if at is None else min(at, now)
        second = int(at)
        horizon = int(now) - self.retention  # buckets at or before it are expired
        if second <= horizon:
            return TOO_OLD
        key = (source, destination)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) >= self.max_edges and not self._make_room(now):
                    return EDGE_LIMIT
                series = self._series[key] = _Series(first_seen=at)
            buckets = series.buckets
            bucket = buckets.get(second)
            if bucket is None:
                bucket = buckets[second] = _Second()
                for old in [s for s in buckets if s <= horizon]:
                    del buckets[old]
            bucket.count += 1
            if is_error(status):
                bucket.errors += 1
            bucket.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, duration_ms)] += 1
        return None

    def __len__(self) -> int:
        """How many edges the graph holds (expired ones included until they are swept)."""
        return len(self._series)

    def _make_room(self, now: float) -> bool:
        """Forget the edges without a sample within the retention (at most once a second:
        the scan is linear); whether there is room for a new edge now. Holds the lock."""
        if now - self._swept >= 1.0:
            self._swept = now
            horizon = int(now) - self.retention
            for key, series in list(self._series.items()):
                if max(series.buckets, default=horizon) <= horizon:
                    del self._series[key]
        return len(self._series) < self.max_edges

    def snapshot(self, window: float = 60.0, now: float | None = None) -> Graph:
        now = self.clock() if now is None else now
        start = now - window
        edges = []
        nodes: set[str] = set()
        with self._lock:
            for key, series in list(self._series.items()):
                buckets = series.buckets
                seconds = [b for s, b in buckets.items() if s >= int(start)]
                if not seconds:
                    if max(buckets, default=0) <= int(now) - self.retention:
                        del self._series[key]
                    continue
                count = sum(b.count for b in seconds)
                errors = sum(b.errors for b in seconds)
                hist = [
                    sum(b.latency[i] for b in seconds) for i in range(len(LATENCY_BOUNDS_MS) + 1)
                ]
                last = max(s for s, b in buckets.items() if s >= int(start)) + 1
                begin = max(start, series.first_seen)
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
