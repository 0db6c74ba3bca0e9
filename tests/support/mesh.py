"""Processes for end-to-end tests: a real `interlock server`, real `interlock sidecar`s (each
running a real Envoy), tiny upstream apps, and the Envoy admin API as the oracle.

Every process is started by the test run itself and stopped by pid (or by the process group it
was started in) in a finalizer, even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx

from tests.support.net import free_ports

INTERLOCK = [sys.executable, "-m", "interlock.cli"]


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else "")
    )


def _stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process, wait, then SIGKILL its whole group (it was started in its own)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


class ServerProcess:
    """`interlock server` as a child process on ephemeral ports, restartable on the same ports.

    The admin token (written by the server on first start) is read from ``admin_token_file``;
    replicas of one database share that file and the KEK (``kek_file``, made here for
    PostgreSQL, which needs one given). The server serves TLS (the default) and writes its CA
    bundle to ``ca_file``. While the server runs, ``INTERLOCK_TOKEN`` holds its admin token and
    ``INTERLOCK_CA_FILE`` its bundle in this process's environment, so the CLI commands a test
    runs are authenticated and verify the server as in a user's shell (``stop`` puts the
    previous values back)."""

    def __init__(
        self,
        workdir: Path,
        db_url: str | None = None,
        extra: list[str] | None = None,
        *,
        admin_token_file: Path | None = None,
        kek_file: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.db_url = db_url or f"sqlite:///{workdir / 'interlock.db'}"
        self.api_port, self.xds_port = free_ports(2)
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.starts = 0
        self.admin_token_file = admin_token_file or workdir / "admin-token"
        self.ca_file = workdir / "interlock-ca.pem"
        self._env_set = False
        self._previous_env: dict[str, str | None] = {}
        self.kek_file = kek_file
        if self.kek_file is None and not self.db_url.startswith("sqlite"):
            self.kek_file = workdir / "ca.kek"
        if self.kek_file is not None and not self.kek_file.exists():
            fd = os.open(self.kek_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32))

    @property
    def admin_token(self) -> str:
        """The admin token the server (or the first replica) wrote on its first start."""
        return self.admin_token_file.read_text().strip()

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def tls(self) -> ssl.SSLContext:
        """A client context trusting this server's CA bundle (as `--ca-file` does)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def xds_channel(self, **options: Any) -> Any:
        """A grpc.aio channel to the xDS port, over TLS verified like a proxy's."""
        return xds_channel(self.xds_address, self.ca_file, **options)

    @property
    def xds_address(self) -> str:
        return f"127.0.0.1:{self.xds_port}"

    def start(self, timeout: float = 20.0) -> None:
        ready = self.workdir / f"ready-{self.starts}.json"
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *INTERLOCK,
                "server",
                "--db",
                self.db_url,
                "--api",
                f"127.0.0.1:{self.api_port}",
                "--xds",
                self.xds_address,
                "--ready-file",
                str(ready),
                "--debounce-quiet",
                "0.02",
                "--debounce-max",
                "0.2",
                "--admin-token-file",
                str(self.admin_token_file),
                "--ca-bundle-file",
                str(self.ca_file),
                *(["--ca-kek-file", str(self.kek_file)] if self.kek_file else []),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"interlock server exited {self.proc.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"interlock server not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        if not self._env_set:
            self._previous_env = {k: os.environ.get(k) for k in CLIENT_ENV}
            self._env_set = True
        os.environ["INTERLOCK_TOKEN"] = self.admin_token
        os.environ["INTERLOCK_CA_FILE"] = str(self.ca_file)

    def kill(self) -> None:
        """SIGKILL: a crash, not a clean stop."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self._env_set:
            self._env_set = False
            restore_env(self._previous_env)
        if self.proc is None:
            return None
        _stop_process_group(self.proc)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self) -> httpx.Client:
        """A client of the REST API with the admin token."""
        return httpx.Client(
            base_url=self.api_url,
            # Long polls (`?wait=` up to 10 s) answer by themselves; reads wait longer.
            timeout=httpx.Timeout(5.0, read=15.0),
            headers={"Authorization": f"Bearer {self.admin_token}"},
            verify=self.tls(),
        )


def xds_channel(address: str, ca_file: Path, **options: Any) -> Any:
    """A grpc.aio channel to a control plane's xDS port, over TLS verified with its bundle."""
    credentials = grpc.ssl_channel_credentials(ca_file.read_bytes())
    return grpc.aio.secure_channel(address, credentials, options=list(options.items()))


CLIENT_ENV = ("INTERLOCK_TOKEN", "INTERLOCK_CA_FILE")
"""What a user's shell sets for the CLI, and the test servers set while they run."""


def restore_env(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


HEALTH_PATH = "/healthz"


class UpstreamApp:
    """A tiny HTTP app in a thread: answers ``{"service", "instance", "path", "host", "xfcc"}``
    (``xfcc``: the ``x-forwarded-client-cert`` its sidecar set: who called, over mTLS) and
    counts hits. :data:`HEALTH_PATH` answers ``health_status`` (set it to fail a probe) and is
    not counted."""

    def __init__(
        self, service: str, instance: str, status: int = 200, statuses: list[int] | None = None
    ) -> None:
        """``statuses`` (if given) is cycled through, one per request: a deterministic error
        rate, e.g. ``[200, 200, 200, 200, 500]`` fails exactly one request in five."""
        self.service = service
        self.instance = instance
        self.status = status
        self.statuses = statuses or [status]
        self._served = 0
        self.health_status = 200
        self.hits: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out without a 40 ms stall

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path == HEALTH_PATH:
                    self.send_response(app.health_status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with app._lock:
                    app.hits.append((time.monotonic(), self.path))
                    status = app.statuses[app._served % len(app.statuses)]
                    app._served += 1
                body = json.dumps(
                    {
                        "service": app.service,
                        "instance": app.instance,
                        "path": self.path,
                        "host": self.headers.get("Host", ""),
                        "xfcc": self.headers.get("x-forwarded-client-cert", ""),
                    }
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    def hits_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for ts, _ in self.hits if ts >= t)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Sidecar:
    """`interlock sidecar` (and its Envoy) for one instance."""

    service: str
    instance_id: str
    app_port: int
    server: ServerProcess
    workdir: Path
    xds_protocol: str = "delta"
    labels: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.inbound_port, self.outbound_port, self.admin_port = free_ports(3)
        self.log_path = self.workdir / f"sidecar-{self.instance_id}.log"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> Sidecar:
        log = self.log_path.open("ab")
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        self.proc = subprocess.Popen(
            [
                *INTERLOCK,
                "sidecar",
                "--service",
                self.service,
                "--instance-id",
                self.instance_id,
                "--app-port",
                str(self.app_port),
                "--inbound-port",
                str(self.inbound_port),
                "--outbound-port",
                str(self.outbound_port),
                "--admin-port",
                str(self.admin_port),
                "--labels",
                labels,
                "--control-plane",
                self.server.api_url,
                "--xds",
                self.server.xds_address,
                "--xds-protocol",
                self.xds_protocol,
                "--drain-seconds",
                "0.3",
                "--service-port",
                "8080",
                "--token-file",
                str(self.server.admin_token_file),
                "--ca-file",
                str(self.server.ca_file),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # The sidecar's private directory (bootstrap, proxy token) lives in the test's.
            env={**os.environ, "TMPDIR": str(self.workdir)},
        )
        log.close()
        return self

    def wait_listening(self, timeout: float = 20.0) -> Sidecar:
        """Until Envoy is LIVE and has its inbound and outbound listeners from the control plane."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"sidecar {self.instance_id} exited:\n{self.log()}")
            names = set(dynamic_listener_names(self.config_dump()))
            return {"inbound", "outbound|http"} <= names

        wait_until(ready, timeout, what=f"sidecar {self.instance_id} listeners")
        return self

    def config_dump(self) -> dict[str, Any]:
        r = httpx.get(f"{self.admin_url}/config_dump", params={"include_eds": ""}, timeout=2)
        r.raise_for_status()
        return dict(r.json())

    def stats(self) -> dict[str, int]:
        r = httpx.get(f"{self.admin_url}/stats", timeout=2)
        r.raise_for_status()
        out: dict[str, int] = {}
        for line in r.text.splitlines():
            name, _, value = line.partition(": ")
            with contextlib.suppress(ValueError):
                out[name] = int(value)
        return out

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process_group(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def dynamic_listener_names(dump: dict[str, Any]) -> list[str]:
    names = []
    for cfg in dump.get("configs", []):
        for item in cfg.get("dynamic_listeners", []):
            if "active_state" in item:
                names.append(item["name"])
    return names


def strip_volatile(value: Any) -> Any:
    """A config dump without the fields that change on every (re)connect: timestamps."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in {"last_updated"}}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


class Traffic:
    """A bounded background client: GETs ``url`` with ``host`` at one request per ``interval`` s
    (as far as responses allow) and records each outcome (time, status or exception, instance
    that answered)."""

    def __init__(
        self, url: str, host: str, interval: float = 0.01, max_seconds: float = 120.0
    ) -> None:
        self.url = url
        self.host = host
        self.interval = interval
        self.max_seconds = max_seconds
        self.results: list[tuple[float, int | str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        end = start + self.max_seconds
        sent = 0
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set() and time.monotonic() < end:
                t = time.monotonic()
                sent += 1
                try:
                    r = client.get(self.url, headers={"Host": self.host})
                    instance = r.json().get("instance", "") if r.status_code == 200 else ""
                    self.results.append((t, r.status_code, instance))
                except Exception as exc:
                    self.results.append((t, type(exc).__name__, ""))
                # A fixed rate (one request per interval), not a fixed pause between requests.
                self._stop.wait(max(0.0, start + sent * self.interval - time.monotonic()))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def failures(self) -> list[tuple[float, int | str, str]]:
        return [r for r in self.results if r[1] != 200]

    def landed_since(self, t: float) -> set[str]:
        return {inst for ts, status, inst in self.results if ts >= t and status == 200}


@contextlib.contextmanager
def running(*things: Any) -> Iterator[None]:
    """Stop ``things`` (anything with stop() or close()) in reverse order on exit."""
    try:
        yield
    finally:
        for thing in reversed(things):
            (getattr(thing, "stop", None) or thing.close)()
