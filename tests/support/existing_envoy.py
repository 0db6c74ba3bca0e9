"""Envoys of an existing fleet: bootstraps written by hand, taken as they are from the
examples of docs/existing-envoy.md, and their tokens from ``interlock credentials``."""

from __future__ import annotations

import re
import string
import subprocess
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.support.mesh import INTERLOCK, ServerProcess, _stop_process_group, wait_until

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "existing-envoy.md"


def guide_example(name: str) -> str:
    """The code block marked ``<!-- example: NAME -->`` in the guide, as written there."""
    text = GUIDE.read_text()
    found = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", text, re.DOTALL
    )
    assert found, f"no example {name!r} in {GUIDE}"
    return found.group(1) + "\n"


def fill(text: str, values: Mapping[str, object]) -> str:
    """The ``${NAME}`` fields filled in, as ``envsubst`` does (every one must be given)."""
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


def fleet_credentials(
    server: ServerProcess, out: Path, service: str, instances: Mapping[str, str], *extra: str
) -> None:
    """``interlock credentials SERVICE --out OUT --instance ID=ADDRESS:PORT ...``, as a user."""
    args = [f"--instance={i}={where}" for i, where in instances.items()]
    done = subprocess.run(
        [
            *INTERLOCK,
            "credentials",
            service,
            "--out",
            str(out),
            *args,
            *extra,
            "--control-plane",
            server.api_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class FleetEnvoy:
    """A real Envoy run from a hand-written bootstrap; ``stop()`` always reaps it."""

    def __init__(self, binary: str, bootstrap: Path, admin_port: int) -> None:
        self.log_path = bootstrap.with_suffix(".log")
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [binary, "-c", str(bootstrap), "--disable-hot-restart", "-l", "warning"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        assert self.proc.poll() is None, f"envoy exited {self.proc.returncode}:\n{self.log()}"
        return True

    def config_dump(self) -> dict[str, object]:
        r = httpx.get(f"{self.admin_url}/config_dump", params={"include_eds": ""}, timeout=2)
        r.raise_for_status()
        return dict(r.json())

    def wait_live(self, timeout: float = 20.0) -> FleetEnvoy:
        def live() -> bool:
            self.alive()
            return httpx.get(f"{self.admin_url}/ready", timeout=2).status_code == 200

        wait_until(live, timeout, interval=0.1, what="the fleet Envoy LIVE")
        return self

    def stop(self) -> None:
        _stop_process_group(self.proc)
