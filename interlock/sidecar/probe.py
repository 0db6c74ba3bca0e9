"""The sidecar's probe of its app: is the app beside it answering?

Every ``interval`` the probe asks the app on ``127.0.0.1:<app port>`` — ``GET <path>`` (any
status from 200 to 399 passes, like a Kubernetes probe) or, with ``tcp``, only a connection —
within ``timeout``. ``unhealthy_threshold`` failures in a row make the verdict *unhealthy*,
``healthy_threshold`` successes in a row *healthy* again; the probe reports each new verdict
(and the first one) through the API (``PUT …/instances/{id}/health``), not every probe, and
reports again after a report that did not get through. Until its first verdict the instance
is as registered (healthy).
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("interlock.sidecar")

APP_HOST = "127.0.0.1"
DEFAULT_INTERVAL = 5.0
DEFAULT_TIMEOUT = 1.0
DEFAULT_UNHEALTHY_THRESHOLD = 3
DEFAULT_HEALTHY_THRESHOLD = 2

Report = Callable[[bool, str], None]
"""Called with (healthy, reason) for each verdict to report; raises if it did not get through."""


@dataclass(frozen=True)
class ProbeSpec:
    """How to probe the app on ``port``: an HTTP ``path``, or a TCP connection (``tcp``)."""

    port: int
    path: str | None = None
    tcp: bool = False
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    unhealthy_threshold: int = DEFAULT_UNHEALTHY_THRESHOLD
    healthy_threshold: int = DEFAULT_HEALTHY_THRESHOLD

    def __post_init__(self) -> None:
        if (self.path is None) == (not self.tcp):
            raise ValueError("probe either an HTTP path (--health-path) or TCP (--health-tcp)")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"--health-path must start with '/', got {self.path!r}")
        if self.path is not None and any(ord(c) <= 32 or ord(c) == 127 for c in self.path):
            raise ValueError("--health-path must not contain spaces or control characters")
        if self.interval <= 0 or self.timeout <= 0:
            raise ValueError("--health-interval and --health-timeout must be positive")
        if self.unhealthy_threshold < 1 or self.healthy_threshold < 1:
            raise ValueError("health thresholds must be at least 1")

    @property
    def target(self) -> str:
        if self.path is not None:
            return f"GET http://{APP_HOST}:{self.port}{self.path}"
        return f"TCP {APP_HOST}:{self.port}"


def probe_once(spec: ProbeSpec) -> str | None:
    """One probe of the app: None when it passes, else what went wrong."""
    try:
        if spec.path is None:
            with socket.create_connection((APP_HOST, spec.port), timeout=spec.timeout):
                return None
        conn = http.client.HTTPConnection(APP_HOST, spec.port, timeout=spec.timeout)
        try:
            conn.request("GET", spec.path, headers={"User-Agent": "interlock-probe"})
            status = conn.getresponse().status
        finally:
            conn.close()
    except TimeoutError:
        return f"no answer within {spec.timeout:g}s"
    except (OSError, http.client.HTTPException) as exc:
        return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).lower()
    return None if 200 <= status < 400 else f"HTTP {status}"


class Verdicts:
    """The thresholds: counts probe results in a row, says when a verdict is to be reported."""

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        #: The verdict (None until the first), and the one last reported successfully.
        self.healthy: bool | None = None
        self.reported: bool | None = None
        self.reason = ""
        self._failures = 0
        self._successes = 0

    def observe(self, failure: str | None) -> bool:
        """Count one probe's result; True when the verdict is not reported yet."""
        if failure is None:
            self._failures, self._successes = 0, self._successes + 1
            if self._successes >= self.spec.healthy_threshold:
                self.healthy, self.reason = True, ""
        else:
            self._successes, self._failures = 0, self._failures + 1
            if self._failures >= self.spec.unhealthy_threshold:
                self.healthy = False
                reason = (
                    f"app probe {self.spec.target}: {failure} ({self._failures} failures in a row)"
                )
                self.reason = "".join(c if c.isprintable() else " " for c in reason)[:500]
        return self.healthy is not None and self.healthy != self.reported


class AppProbe:
    """A thread probing the app and reporting its verdicts (see the module docstring)."""

    def __init__(self, spec: ProbeSpec, report: Report, say: Callable[[str], None]) -> None:
        self.spec = spec
        self.verdicts = Verdicts(spec)
        self._report = report
        self._say = say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="interlock-probe", daemon=True)

    def start(self) -> AppProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop probing and wait for a report in flight (at most one API call)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.spec.timeout + 10)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.verdicts.observe(probe_once(self.spec)) and not self._stop.is_set():
                healthy, reason = bool(self.verdicts.healthy), self.verdicts.reason
                try:
                    self._report(healthy, reason)
                except Exception as exc:  # the control plane is away: report it next time
                    log.warning("cannot report the app's health (%s); retrying", exc)
                else:
                    self.verdicts.reported = healthy
                    self._say(f"app {'healthy' if healthy else 'unhealthy'}: {reason or 'ok'}")
            self._stop.wait(self.spec.interval)
