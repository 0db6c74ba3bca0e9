"""The service graph's bounds: at most ``max_edges`` edges, samples timed in the future count
now, samples older than the retention are dropped — and every drop says why."""

from __future__ import annotations

from interlock.telemetry.graph import EDGE_LIMIT, TOO_OLD, TrafficGraph


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_sample_timed_in_the_future_counts_at_the_current_second() -> None:
    clock = Clock(1000.5)
    graph = TrafficGraph(clock=clock)
    assert graph.record("a.default", "b.default", 200, 5.0, at=1000.5 + 86400) is None
    (edge,) = graph.snapshot(window=0.4, now=1000.9).edges  # the window [1000.5, 1000.9]
    assert edge.requests == 1
    assert graph.snapshot(window=0.5, now=1001.9).edges == ()  # nothing after second 1000
    clock.now = 1000.5 + graph.retention
    assert graph.snapshot(window=60).edges == ()  # it expires like any sample of second 1000
    assert len(graph) == 0


def test_samples_older_than_the_retention_are_dropped() -> None:
    graph = TrafficGraph(retention=120, clock=Clock(1000.0))
    assert graph.record("a.default", "b.default", 200, 5.0, at=880.9) == TOO_OLD
    assert graph.record("a.default", "b.default", 200, 5.0, at=881.0) is None
    (edge,) = graph.snapshot(window=200).edges
    assert edge.requests == 1


def test_an_edge_keeps_at_most_retention_seconds_whatever_the_timestamps() -> None:
    """Samples going back in time one second each would otherwise add a bucket each."""
    graph = TrafficGraph(retention=120, clock=Clock(1000.0))
    outcomes = [graph.record("a.default", "b.default", 200, 5.0, at=1000.0 - k) for k in range(500)]
    assert outcomes.count(None) == 120
    assert outcomes.count(TOO_OLD) == 380
    (edge,) = graph.snapshot(window=1000).edges
    assert edge.requests == 120


def test_the_graph_holds_at_most_max_edges_and_keeps_counting_those() -> None:
    graph = TrafficGraph(clock=Clock(1000.0), max_edges=3)
    for destination in ("b", "c", "d"):
        assert graph.record("a.default", f"{destination}.default", 200, 5.0) is None
    assert graph.record("a.default", "e.default", 200, 5.0) == EDGE_LIMIT
    assert graph.record("x.default", "b.default", 200, 5.0) == EDGE_LIMIT
    assert graph.record("a.default", "b.default", 500, 5.0) is None  # a known edge: counted
    assert len(graph) == 3
    edges = {(e.source, e.destination): e for e in graph.snapshot().edges}
    assert set(edges) == {("a.default", f"{d}.default") for d in "bcd"}
    assert (edges["a.default", "b.default"].requests, edges["a.default", "b.default"].errors) == (
        2,
        1,
    )


def test_expired_edges_make_room_for_new_ones_without_a_read() -> None:
    clock = Clock(1000.0)
    graph = TrafficGraph(retention=120, clock=clock, max_edges=2)
    graph.record("a.default", "b.default", 200, 5.0)
    graph.record("a.default", "c.default", 200, 5.0)
    clock.now = 1060.0
    graph.record("a.default", "b.default", 200, 5.0)  # b stays live, c goes quiet
    clock.now = 1121.0  # c's last second (1000) has expired, b's (1060) has not
    assert graph.record("a.default", "d.default", 200, 5.0) is None
    assert {(e.source, e.destination) for e in graph.snapshot(window=120).edges} == {
        ("a.default", "b.default"),
        ("a.default", "d.default"),
    }
    assert graph.record("a.default", "e.default", 200, 5.0) == EDGE_LIMIT
