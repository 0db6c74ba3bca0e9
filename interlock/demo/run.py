"""`interlock demo`: a whole mesh on this machine, cleaned up on exit.

A control plane on a temporary SQLite database, a `frontend` and a `backend` with two instances
(labelled v1 and v2), each app behind its own `interlock sidecar`, then traffic, a tally of where
it landed, and the URLs to poke. Runs until Ctrl-C; leaves no process or temp file behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from interlock.app import ServerInfo, ServerSettings, SettingsError, parse_address, serve
from interlock.model.addresses import HostPort
from interlock.sidecar import EnvoyNotFound, find_envoy


class DemoError(Exception):
    """Why the demo could not run, fit to show a user."""


@dataclass(frozen=True)
class DemoInstance:
    service: str
    instance_id: str
    version: str
    app_port: int
    inbound_port: int
    outbound_port: int
    admin_port: int


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(host: str, port: int) -> bool:
    if port == 0:
        return True
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _address_or_any(value: str, option: str, say: _Say) -> HostPort:
    try:
        address = parse_address(value, option)
    except SettingsError as exc:
        raise DemoError(str(exc)) from None
    if _port_free(address.host, address.port):
        return address
    say(f"  {address} is busy; the demo's {option[2:]} takes a free port instead")
    return HostPort(address.host, 0)


class _Say:
    def __call__(self, message: str) -> None:
        print(message, flush=True)


class Demo:
    def __init__(self, workdir: Path, info: ServerInfo, envoy: str, say: _Say) -> None:
        self.workdir = workdir
        self.info = info
        self.envoy = envoy
        self.say = say
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs: list[IO[bytes]] = []
        ports = iter(_free_ports(12))
        self.instances = [
            DemoInstance("frontend", "frontend-1", "v1", *(next(ports) for _ in range(4))),
            DemoInstance("backend", "backend-v1", "v1", *(next(ports) for _ in range(4))),
            DemoInstance("backend", "backend-v2", "v2", *(next(ports) for _ in range(4))),
        ]

    @property
    def frontend(self) -> DemoInstance:
        return self.instances[0]

    def _spawn(self, label: str, args: list[str]) -> None:
        log = (self.workdir / f"{label}.log").open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.procs.append((label, proc))

    @property
    def token_file(self) -> Path:
        return Path(self.info.admin_token_file)

    @property
    def ca_file(self) -> Path:
        """The CA bundle the server wrote: what every client here verifies it with."""
        return Path(self.info.ca_file)

    def start(self) -> None:
        token = self.token_file.read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        verify = ssl.create_default_context(cafile=str(self.ca_file))
        with httpx.Client(
            base_url=self.info.api_url, timeout=5, headers=headers, verify=verify
        ) as api:
            for name in ("frontend", "backend"):
                r = api.put(
                    f"/v1/services/{name}",
                    json={"namespace": "default", "protocol": "http", "port": 8080},
                )
                r.raise_for_status()
        for inst in self.instances:
            app = [
                sys.executable,
                "-m",
                "interlock.demo.apps",
                "--name",
                inst.service,
                "--instance",
                inst.instance_id,
                "--version",
                inst.version,
                "--port",
                str(inst.app_port),
            ]
            if inst.service == "frontend":
                app += ["--outbound", str(inst.outbound_port)]
            self._spawn(f"app-{inst.instance_id}", app)
            self._spawn(
                f"sidecar-{inst.instance_id}",
                [
                    sys.executable,
                    "-m",
                    "interlock.cli",
                    "sidecar",
                    "--service",
                    inst.service,
                    "--instance-id",
                    inst.instance_id,
                    "--app-port",
                    str(inst.app_port),
                    "--inbound-port",
                    str(inst.inbound_port),
                    "--outbound-port",
                    str(inst.outbound_port),
                    "--admin-port",
                    str(inst.admin_port),
                    "--labels",
                    f"version={inst.version}",
                    "--control-plane",
                    self.info.api_url,
                    "--xds",
                    self.info.xds_address,
                    "--envoy",
                    self.envoy,
                    "--drain-seconds",
                    "0.5",
                    "--token-file",
                    str(self.token_file),
                    "--ca-file",
                    str(self.ca_file),
                ],
            )

    def check_alive(self) -> None:
        for label, proc in self.procs:
            if proc.poll() is not None:
                log = self.workdir / f"{label}.log"
                raise DemoError(f"{label} exited with code {proc.returncode}; see {log}")

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        """Until requests through the frontend's sidecar have reached both backends."""
        url = f"http://127.0.0.1:{self.frontend.inbound_port}/"
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        self.say("waiting for the sidecars to receive their configuration ...")
        while len(seen) < 2:
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the mesh did not come up in {timeout:.0f}s; logs are in {self.workdir}"
                )
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                r = httpx.get(url, timeout=2)
                if r.status_code == 200:
                    seen.add(r.json()["backend"]["instance"])
                    continue
            time.sleep(0.2)

    def send_traffic(self, count: int) -> collections.Counter[str]:
        url = f"http://127.0.0.1:{self.frontend.inbound_port}/"
        landed: collections.Counter[str] = collections.Counter()
        with httpx.Client(timeout=5) as client:
            for _ in range(count):
                try:
                    r = client.get(url)
                    body = r.json()
                    landed[
                        body["backend"]["instance"]
                        if r.status_code == 200
                        else f"HTTP {r.status_code}"
                    ] += 1
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    landed[f"error: {type(exc).__name__}"] += 1
        return landed

    def describe(self, landed: collections.Counter[str], count: int) -> None:
        f = self.frontend
        api = self.info.api_url
        path = " -> ".join(
            (
                "client",
                "frontend sidecar",
                "frontend",
                "frontend sidecar",
                "backend sidecar",
                "backend",
            )
        )
        lines = ["", f"{count} requests: {path}"]
        for where, n in sorted(landed.items()):
            lines.append(f"  {where:<14} {n:>4}  {'#' * n}")
        lines += [
            "",
            "Poke it:",
            "  # the frontend, through its sidecar:",
            f"  curl http://127.0.0.1:{f.inbound_port}/",
            "  # the backend, from the frontend's side (curl reads lower-case http_proxy only):",
            f"  curl -H 'Host: backend' http://127.0.0.1:{f.outbound_port}/",
            f"  http_proxy=http://127.0.0.1:{f.outbound_port} curl http://backend/",
            "  # the registry, over TLS verified with the CA bundle the server wrote (reads",
            "  # are open in the demo; writes need the admin token):",
            f"  export INTERLOCK_CA_FILE={self.ca_file}",
            f"  interlock get instances backend --control-plane {api}",
            f"  export INTERLOCK_TOKEN=$(cat {self.token_file})",
            "  # take backend-v2 out, then curl the frontend again:",
            f'  curl --cacert "$INTERLOCK_CA_FILE" -X DELETE -H "Authorization: Bearer '
            f'$INTERLOCK_TOKEN" {api}/v1/services/backend/instances/backend-v2',
            "  # the certificates each sidecar holds (mTLS between sidecars, PERMISSIVE):",
            f'  curl --cacert "$INTERLOCK_CA_FILE" {api}/v1/ca',
        ]
        for inst in self.instances:
            lines.append(
                f"  Envoy admin of {inst.instance_id:<11} http://127.0.0.1:{inst.admin_port}/config_dump"
            )
        lines.append(f"  its certificates: http://127.0.0.1:{f.admin_port}/certs")
        lines += ["", f"Logs: {self.workdir}", "Press Ctrl-C to stop."]
        self.say("\n".join(lines))

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


def run_demo(*, api: str, xds: str, requests: int, exit_after: float | None = None) -> int:
    """Run the demo until Ctrl-C (or ``exit_after`` seconds); returns the exit code."""
    say = _Say()
    try:
        envoy = find_envoy()
    except EnvoyNotFound as exc:
        raise DemoError(str(exc)) from None
    api_address = _address_or_any(api, "--api", say)
    xds_address = _address_or_any(xds, "--xds", say)
    workdir = Path(tempfile.mkdtemp(prefix="interlock-demo-"))
    settings = ServerSettings(
        db_url=f"sqlite:///{workdir / 'demo.db'}",
        api=api_address,
        xds=xds_address,
        debounce_quiet=0.02,
        debounce_max=0.2,
        log_level="warning",
        # A sandbox on this machine: anyone here may read; writes need the admin token,
        # written (0600) into the demo's temporary directory and removed with it.
        open_reads=True,
        admin_token_file=workdir / "admin-token",
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready: asyncio.Future[ServerInfo] = loop.create_future()
        server = asyncio.create_task(
            serve(settings, stop, ready.set_result, say=lambda _line: None)
        )
        waiters: set[asyncio.Future[object]] = {server, ready}  # type: ignore[arg-type]
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if server in done:
            server.result()  # raises the start-up error
            return 1
        info = ready.result()
        say(f"control plane: REST API {info.api_url}, xDS {info.xds_address}")
        demo = Demo(workdir, info, envoy, say)
        try:
            await asyncio.to_thread(demo.start)
            await asyncio.to_thread(demo.wait_until_serving)
            landed = await asyncio.to_thread(demo.send_traffic, requests)
            demo.describe(landed, requests)
            stop_wait = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {stop_wait, server}, timeout=exit_after, return_when=asyncio.FIRST_COMPLETED
            )
            stop_wait.cancel()
            say("\nstopping ...")
            return 0
        finally:
            await asyncio.to_thread(demo.stop)
            stop.set()
            await server

    try:
        return asyncio.run(main())
    except OSError as exc:
        raise DemoError(f"the control plane could not start: {exc}") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
