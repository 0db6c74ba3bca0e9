"""`interlock gateway` (and its Envoy) as a child process for end-to-end tests; stopped by its
process group in a finalizer, like the sidecars of tests.support.mesh."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from tests.support.mesh import INTERLOCK, _stop_process_group, dynamic_listener_names, wait_until
from tests.support.net import free_ports


class ControlPlane(Protocol):
    @property
    def api_url(self) -> str: ...
    @property
    def xds_address(self) -> str: ...
    @property
    def admin_token_file(self) -> Path: ...
    @property
    def ca_file(self) -> Path: ...


@dataclass
class GatewayProcess:
    """A gateway serving the Gateway ``ports`` (each on a free loopback port of its own)."""

    name: str
    ports: list[int]
    server: ControlPlane
    workdir: Path
    xds_protocol: str = "delta"
    labels: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        *listen, self.admin_port = free_ports(len(self.ports) + 1)
        self.listen = dict(zip(self.ports, listen, strict=True))
        self.log_path = self.workdir / f"gateway-{self.name}.log"

    def start(self) -> GatewayProcess:
        log = self.log_path.open("ab")
        ports = [arg for p in self.ports for arg in ("--port", f"{p}:{self.listen[p]}")]
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        self.proc = subprocess.Popen(
            [
                *INTERLOCK,
                "gateway",
                "--name",
                self.name,
                *ports,
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
                "--token-file",
                str(self.server.admin_token_file),
                "--ca-file",
                str(self.server.ca_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    def config_dump(self) -> dict[str, Any]:
        r = httpx.get(f"http://127.0.0.1:{self.admin_port}/config_dump", timeout=2)
        r.raise_for_status()
        return dict(r.json())

    def wait_listening(self, *names: str, timeout: float = 20.0) -> GatewayProcess:
        """Until Envoy has the listeners ``names`` (``gateway|<port>``) from the control plane."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"gateway {self.name} exited:\n{self.log()}")
            return set(names) <= set(dynamic_listener_names(self.config_dump()))

        wait_until(ready, timeout, what=f"gateway {self.name} listeners {names}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop_process_group(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
