"""The sidecar's app probe: one probe (HTTP status, TCP, timeouts), the thresholds, and a
probe thread that reports each new verdict once (and again after a report that failed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from interlock.sidecar.probe import AppProbe, ProbeSpec, Verdicts, probe_once
from tests.support.net import free_ports


class App:
    """An app whose health path answers ``status`` (and whose other paths 200)."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(app.delay)
                self.send_response(app.status if self.path == "/healthz" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app() -> Iterator[App]:
    served = App()
    yield served
    served.close()


def test_one_probe_passes_on_2xx_3xx_and_says_what_failed(app: App) -> None:
    spec = ProbeSpec(app.port, path="/healthz", timeout=0.3)
    for status, expected in ((200, None), (302, None), (503, "HTTP 503"), (404, "HTTP 404")):
        app.status = status
        assert probe_once(spec) == expected
    app.delay = 0.6
    assert probe_once(spec) == "no answer within 0.3s"
    assert probe_once(ProbeSpec(app.port, tcp=True)) is None
    (closed,) = free_ports(1)
    assert probe_once(ProbeSpec(closed, tcp=True)) == "connection refused"
    assert probe_once(ProbeSpec(closed, path="/")) == "connection refused"


def test_thresholds_decide_verdicts_and_only_new_ones_are_to_report() -> None:
    verdicts = Verdicts(ProbeSpec(1, tcp=True, unhealthy_threshold=3, healthy_threshold=2))
    assert [verdicts.observe("refused") for _ in range(3)] == [False, False, True]
    assert verdicts.healthy is False
    assert verdicts.reason == "app probe TCP 127.0.0.1:1: refused (3 failures in a row)"
    verdicts.reported = False
    assert verdicts.observe("refused") is False  # the same verdict: nothing new
    assert [verdicts.observe(None), verdicts.observe("x"), verdicts.observe(None)] == [
        False,
        False,
        False,
    ]
    assert verdicts.observe(None) is True and verdicts.healthy is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"path": "/x", "tcp": True},
        {"path": "healthz"},
        {"path": "/a b"},
        {"tcp": True, "interval": 0},
        {"tcp": True, "healthy_threshold": 0},
    ],
)
def test_a_bad_probe_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ProbeSpec(1, **kwargs)


def test_the_probe_thread_reports_each_new_verdict_and_retries_failed_reports(app: App) -> None:
    reports: list[tuple[bool, str]] = []
    fail_next = threading.Event()

    def report(healthy: bool, reason: str) -> None:
        if fail_next.is_set():
            fail_next.clear()
            raise OSError("control plane away")
        reports.append((healthy, reason))

    spec = ProbeSpec(app.port, path="/healthz", interval=0.02, unhealthy_threshold=2)
    probe = AppProbe(spec, report, lambda _line: None).start()
    try:
        deadline = time.monotonic() + 5
        while not reports and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reports == [(True, "")]  # the first verdict is always reported
        fail_next.set()
        app.status = 503
        while len(reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not fail_next.is_set()  # the first report of the new verdict failed ...
        assert reports[1][0] is False and "HTTP 503" in reports[1][1]  # ... and was retried
    finally:
        probe.stop()
    count = len(reports)
    time.sleep(0.1)
    assert len(reports) == count  # stopped
