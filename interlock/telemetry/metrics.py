"""The control plane's own metrics (served at ``/metrics`` in Prometheus' text format).

- ``interlock_xds_connected_proxies{type, variant}``: open streams that subscribed to a type.
- ``interlock_xds_pushes_total{type, variant}``, ``interlock_xds_nacks_total{type}``.
- ``interlock_xds_push_seconds{type}``: from a revision's commit to its response being sent.
- ``interlock_xds_convergence_seconds{type}``: from a revision's commit to the proxy's ACK.
- ``interlock_reconcile_builds_total``, ``interlock_reconcile_build_seconds``: view
  translations (translate + check + publish) and their duration.
- ``interlock_reconcile_debounce_merged_total``: commits folded into a later build.
- ``interlock_reconcile_errors_total{stage}``: failures of the reconciler's loop (``check``:
  the periodic revision check; ``rebuild``: loading and publishing a revision), each logged
  and retried with backoff.
- ``interlock_views``, ``interlock_views_limit``: proxy views held (one translation each) and
  the most the server holds (``--max-views``); ``interlock_views_refused_total``: streams
  refused because a new view would pass it.
- ``interlock_api_request_seconds{method, route, status}``: REST API latency.
- ``interlock_access_log_entries_total``: requests reported by sidecars over ALS.
- ``interlock_access_log_entries_dropped_total{reason}``: reported requests the service graph
  did not count: ``edge_limit`` (the graph holds its maximum of edges), ``too_old`` (timed
  before the graph's retention). See :mod:`interlock.telemetry.graph`.

Each control plane gets its own registry, so several in one process (tests) never collide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from interlock.telemetry.graph import Dropped
from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.status import StatusEvent, StatusRegistry

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def type_name(type_url: str | None) -> str:
    return rt.SHORT_NAMES.get(type_url or "", "other")


class _ConnectedProxies(Collector):
    """Read at scrape time from the status registry: nothing to keep in sync."""

    def __init__(self, status: StatusRegistry) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "interlock_xds_connected_proxies",
            "Open xDS streams subscribed to a resource type",
            labels=["type", "variant"],
        )
        counts: dict[tuple[str, str], int] = {}
        for proxy in self.status.proxies():
            for type_url in proxy.types:
                key = (type_name(type_url), proxy.variant)
                counts[key] = counts.get(key, 0) + 1
        for (kind, variant), n in sorted(counts.items()):
            family.add_metric([kind, variant], n)
        yield family


class ControlPlaneMetrics:
    """The collectors, and the hooks the glue calls."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pushes = Counter(
            "interlock_xds_pushes", "xDS responses sent", ["type", "variant"], registry=r
        )
        self.nacks = Counter("interlock_xds_nacks", "xDS responses rejected", ["type"], registry=r)
        self.push_seconds = Histogram(
            "interlock_xds_push_seconds",
            "From a revision's commit to a response carrying it being sent",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.convergence = Histogram(
            "interlock_xds_convergence_seconds",
            "From a revision's commit to a proxy ACKing it",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.builds = Counter("interlock_reconcile_builds", "View translations", registry=r)
        self.build_seconds = Histogram(
            "interlock_reconcile_build_seconds",
            "Translate + check + publish of one proxy view",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reconcile_errors = Counter(
            "interlock_reconcile_errors",
            "Failures of the reconciler's loop, each retried with backoff",
            ["stage"],
            registry=r,
        )
        for stage in ("check", "rebuild"):  # every series exists from the start, at 0
            self.reconcile_errors.labels(stage)
        self.merged = Counter(
            "interlock_reconcile_debounce_merged",
            "Commits folded into a later build by the debounce",
            registry=r,
        )
        self.views = Gauge("interlock_views", "Proxy views held (one translation each)", registry=r)
        self.views_limit = Gauge(
            "interlock_views_limit", "The most proxy views the server holds", registry=r
        )
        self.views_refused = Counter(
            "interlock_views_refused",
            "Streams refused because a new view would pass the limit",
            registry=r,
        )
        self.api_seconds = Histogram(
            "interlock_api_request_seconds",
            "REST API request latency",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.access_log_entries = Counter(
            "interlock_access_log_entries", "Requests reported by sidecars over ALS", registry=r
        )
        self.access_log_dropped = Counter(
            "interlock_access_log_entries_dropped",
            "Requests reported over ALS that the service graph did not count",
            ["reason"],
            registry=r,
        )
        for reason in get_args(Dropped):  # every reason shows, at 0 until it happens
            self.access_log_dropped.labels(reason)
        #: revision → commit time (epoch s), filled by the reconciler as it builds revisions.
        self.commit_times: dict[int, float] = {}
        self._variants: dict[int, str] = {}
        #: (stream, type) → revision of the response in flight: only a pushed revision's ACK
        #: is a convergence sample (not a reconnect that already held the config).
        #: stream id → type → the revision of the response not ACKed yet.
        self._in_flight: dict[int, dict[str, int | None]] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def watch(self, status: StatusRegistry, clock: Callable[[], float] = time.time) -> None:
        """Count pushes, NACKs and convergence from the status registry's events."""
        self.registry.register(_ConnectedProxies(status))

        def on_event(event: StatusEvent) -> None:
            kind = type_name(event.type_url)
            if event.kind == "connected":
                record = status.proxy(event.stream_id)
                self._variants[event.stream_id] = record.variant if record else "?"
            elif event.kind == "disconnected":
                self._variants.pop(event.stream_id, None)
                self._in_flight.pop(event.stream_id, None)
            elif event.kind == "sent":
                self._child(self.pushes, kind, self._variants.get(event.stream_id, "?")).inc()
                self._observe(self.push_seconds, kind, event.revision, clock())
                self._in_flight.setdefault(event.stream_id, {})[kind] = event.revision
            elif event.kind == "ack":
                flying = self._in_flight.get(event.stream_id)
                if flying is not None and kind in flying:
                    self._observe(self.convergence, kind, flying.pop(kind), clock())
            elif event.kind == "nack":
                flying = self._in_flight.get(event.stream_id)
                if flying is not None:
                    flying.pop(kind, None)
                self._child(self.nacks, kind).inc()

        status.add_listener(on_event, ("connected", "disconnected", "sent", "ack", "nack"))

    def _observe(self, histogram: Histogram, kind: str, revision: int | None, now: float) -> None:
        committed = self.commit_times.get(revision or -1)
        if committed is not None and now >= committed:
            self._child(histogram, kind).observe(now - committed)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (``labels()`` takes a lock and builds
        a key on every call; this runs for every response and every ACK)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def committed(self, revision: int, at: float) -> None:
        """Remember when ``revision`` committed (bounded: the newest 1,024 revisions)."""
        self.commit_times[revision] = at
        while len(self.commit_times) > 1024:
            del self.commit_times[min(self.commit_times)]
