"""A real `interlock server` for benchmarks: started pinned to one core, observed from outside
(RSS and CPU time from /proc, histograms from /metrics), stopped by pid — always.

Also the core layout: the control plane gets CPU 0 and everything else the benchmark starts
(the fleet, real Envoys, load generators) gets CPU 1, when ``taskset``/``sched_setaffinity``
exist and the machine has at least two cores.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.net import free_ports

INTERLOCK = [sys.executable, "-m", "interlock.cli"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@functools.cache
def cores() -> tuple[set[int] | None, set[int] | None]:
    """(control plane cores, everything else's cores); (None, None) when pinning is off.
    Decided once, before this process pins itself."""
    if not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None:
        return None, None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return {available[0]}, set(available[1:])


def pin_self() -> set[int] | None:
    """Pin this process (and so every child it starts from now on) to the non-control-plane
    cores; returns them (None when pinning is off)."""
    _, rest = cores()
    if rest is not None:
        os.sched_setaffinity(0, rest)
    return rest


def taskset_prefix(cpus: set[int] | None) -> list[str]:
    if not cpus:
        return []
    return ["taskset", "-c", ",".join(str(c) for c in sorted(cpus))]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid: int) -> int:
    """Resident set size of ``pid``."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL the process group it was started in."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@contextlib.contextmanager
def workdir(prefix: str = "interlock-bench-", *, memory: bool = False) -> Iterator[Path]:
    """A temporary directory removed afterwards, whatever happens. ``memory``: on /dev/shm
    (no fsync cost: for setting up fleets, never for figures about the store)."""
    base = "/dev/shm" if memory and Path("/dev/shm").is_dir() else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


PLAINTEXT_ENV = "BENCH_PLAINTEXT"


class ControlPlane:
    """`interlock server` as a child process on ephemeral ports, pinned to ``cpus``."""

    def __init__(
        self,
        workdir: Path,
        db_url: str | None = None,
        *,
        cpus: set[int] | None = None,
        debounce_quiet: float = 0.02,
        debounce_max: float = 0.2,
        extra: list[str] | None = None,
        kek_file: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.db_url = db_url or f"sqlite:///{workdir / 'interlock.db'}"
        self.api_port, self.xds_port = free_ports(2)
        self.cpus = cpus
        self.debounce = (debounce_quiet, debounce_max)
        self.extra = extra or []
        self.admin_token_file = workdir / "admin-token"
        self.ca_file = workdir / "interlock-ca.pem"
        #: TLS on both ports (the default); BENCH_PLAINTEXT=1 (bench.run --plaintext) measures
        #: the same figures without it, for comparison.
        self.plaintext = os.environ.get(PLAINTEXT_ENV) == "1"
        self.log_path = workdir / "server.log"
        self.kek_file = kek_file
        if self.kek_file is None and not self.db_url.startswith("sqlite"):
            self.kek_file = workdir / "ca.kek"
            fd = os.open(self.kek_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32))
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self._client: httpx.Client | None = None

    # -- what the sidecar helpers of tests/support/mesh.py read -------------------------------
    @property
    def api_url(self) -> str:
        scheme = "http" if self.plaintext else "https"
        return f"{scheme}://127.0.0.1:{self.api_port}"

    @property
    def ca_pem(self) -> bytes | None:
        """The CA bundle clients verify the server with (None without TLS)."""
        return None if self.plaintext else self.ca_file.read_bytes()

    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client of the API verifies the server with."""
        if self.plaintext:
            return True
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def xds_address(self) -> str:
        return f"127.0.0.1:{self.xds_port}"

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> ControlPlane:
        ready = self.workdir / f"ready-{self._starts}.json"
        self._starts += 1
        quiet, most = self.debounce
        command = [
            *taskset_prefix(self.cpus),
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
            str(quiet),
            "--debounce-max",
            str(most),
            "--admin-token-file",
            str(self.admin_token_file),
            "--ca-bundle-file",
            str(self.ca_file),
            *(["--plaintext"] if self.plaintext else []),
            "--log-level",
            # BENCH_SERVER_LOG=debug shows every stream the server opens (to debug a figure)
            os.environ.get("BENCH_SERVER_LOG", "warning"),
            *(["--ca-kek-file", str(self.kek_file)] if self.kek_file else []),
            *self.extra,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"interlock server exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"interlock server not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None:
            stop_process(self.proc)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-4000:]

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observing -----------------------------------------------------------------------------
    def api(self) -> httpx.Client:
        """A shared client of the REST API with the admin token."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.api_url,
                timeout=60,
                headers={"Authorization": f"Bearer {self.admin_token}"},
                verify=self.verify(),
            )
        return self._client

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss(self) -> int:
        return proc_rss_bytes(self.pid)

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{sample name with labels: value}``."""
        text = self.api().get("/metrics").text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
        return out


def histogram(metrics: dict[str, float], name: str, labels: str = "") -> list[tuple[float, float]]:
    """Cumulative ``(le, count)`` buckets of histogram ``name`` (``labels``: e.g.
    ``type="endpoints"``, matched as a substring)."""
    out = []
    prefix = f"{name}_bucket{{"
    for key, value in metrics.items():
        if key.startswith(prefix) and labels in key:
            le = key.rsplit('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if le == "+Inf" else float(le), value))
    return sorted(out)


def histogram_delta(
    before: dict[str, float], after: dict[str, float], name: str, labels: str = ""
) -> tuple[int, float, list[tuple[float, float]]]:
    """(count, sum, buckets) observed by histogram ``name`` between two scrapes."""
    b = dict(histogram(before, name, labels))
    buckets = [(le, n - b.get(le, 0.0)) for le, n in histogram(after, name, labels)]

    def total(m: dict[str, float], suffix: str) -> float:
        return sum(
            v
            for k, v in m.items()
            if k.startswith(f"{name}_{suffix}") and (labels in k or not labels)
        )

    count = int(total(after, "count") - total(before, "count"))
    return count, total(after, "sum") - total(before, "sum"), buckets


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None without observations)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    wanted = q * buckets[-1][1]
    for le, n in buckets:
        if n >= wanted:
            return le
    return buckets[-1][0]
