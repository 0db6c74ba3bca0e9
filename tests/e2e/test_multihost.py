"""docker-compose.yml, run as written on one test host per container (Linux network namespaces
on a bridge, no Docker): the frontend answers through the mesh from every backend version, a
SIGKILLed control plane comes back without one request failing and the sidecars find it again,
and a capture of the bridge shows what crossed the wire between hosts.

Everything the test knows about the topology comes from the compose file: which service is the
control plane (``interlock server``), which are the demo apps and their versions, the frontend's
published port, the sidecars' node ids and the URL they reach the control plane at. Requests are
sent from inside the frontend's namespace to its own address, so they never cross the bridge:
every byte on the capture is mesh traffic.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from interlock.demo import apps
from tests.support.compose import ComposeHosts, alive, compose_hosts
from tests.support.hosts import namespaces_unavailable
from tests.support.mesh import wait_until
from tests.support.pcap import Capture, analyze, assert_encrypted_wire, install_tcpdump

# The first run may install tcpdump (bounded by APT_TIMEOUT per apt-get command).
# Test hosts share the 198.18.0.0/24 subnet: one test at a time makes them (pytest-xdist).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600), pytest.mark.xdist_group("netns")]

PROBE = Path(__file__).resolve().parents[1] / "support" / "http_probe.py"
SECRET_FILE_WORDS = ("token", "kek", "key")


@pytest.fixture(scope="module")
def prerequisites() -> None:
    """Skip (with the reason) where test hosts cannot be made; install tcpdump if missing."""
    if reason := namespaces_unavailable():
        pytest.skip(reason)
    if reason := install_tcpdump():
        pytest.skip(reason)


@pytest.fixture
def stack(prerequisites: None, tmp_path: Path) -> Iterator[ComposeHosts]:
    """docker-compose.yml on test hosts (not started); its logs end up in ``tmp_path/logs``."""
    with compose_hosts(logs_to=tmp_path / "logs") as hosts:
        yield hosts


# -- what the compose file says --------------------------------------------------------------


def option(argv: Sequence[str], name: str) -> str:
    """The value of ``--name VALUE`` (or ``--name=VALUE``) in ``argv``."""
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    raise KeyError(f"{name} is not in {list(argv)}")


@dataclass
class Topology:
    """The demo as docker-compose.yml lays it out."""

    control_plane: str
    control_plane_url: str
    ca_file: str
    """the CA bundle the control plane writes beside its database (a path in its volume)"""
    frontend: str
    frontend_port: int
    versions: dict[str, str]
    """backend app service -> the version it answers with"""
    sidecars: dict[str, str] = field(default_factory=dict)
    """sidecar service -> the app service whose network it shares"""
    node_ids: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, hosts: ComposeHosts) -> Topology:
        services = hosts.project.services
        [control_plane] = [
            n for n, s in services.items() if s.command[:2] == ("interlock", "server")
        ]
        demo = {
            n: apps.build_parser().parse_args(list(s.command[3:]))
            for n, s in services.items()
            if s.command[:3] == ("python", "-m", "interlock.demo.apps")
        }
        [frontend] = [n for n, a in demo.items() if a.outbound is not None]
        sidecars = {
            n: s.network_mode.removeprefix("service:")
            for n, s in services.items()
            if s.command[:2] == ("interlock", "sidecar") and s.network_mode
        }
        urls = {option(services[n].command, "--control-plane") for n in sidecars}
        assert len(urls) == 1, f"the sidecars disagree on the control plane's URL: {urls}"
        db = option(services[control_plane].command, "--db").removeprefix("sqlite:///")
        return cls(
            control_plane=control_plane,
            control_plane_url=urls.pop(),
            ca_file=hosts.rewrite(control_plane, db + ".ca.pem"),
            frontend=frontend,
            frontend_port=services[frontend].ports[0][1],
            versions={n: a.version for n, a in demo.items() if n != frontend},
            sidecars=sidecars,
            node_ids={option(services[n].command, "--instance-id") for n in sidecars},
        )

    def frontend_url(self, hosts: ComposeHosts) -> str:
        # The frontend's own address, from inside its namespace: loopback, not the bridge.
        return f"http://{hosts.address(self.frontend)}:{self.frontend_port}/"


# -- driving it ---------------------------------------------------------------------------------


def wait_for(hosts: ComposeHosts, predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """``wait_until`` whose failure message ends with every service's state and log tail."""
    try:
        wait_until(predicate, timeout, 0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{hosts.describe()}") from None


def probe(hosts: ComposeHosts, topo: Topology, count: int) -> list[dict[str, Any]]:
    """``count`` requests to the frontend from inside its namespace; one result per request."""
    out = hosts.run(
        topo.frontend,
        ["python", str(PROBE), topo.frontend_url(hosts), "--count", str(count), "--timeout", "2"],
        timeout=5 + 3 * count,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def backend_version(result: dict[str, Any]) -> str | None:
    body = result.get("body") or {}
    return body.get("backend", {}).get("version") if result.get("status") == 200 else None


class ProbeLoop:
    """The probe running in the background in the frontend's namespace (bounded by count and
    time), each answer stamped with when it arrived."""

    def __init__(self, hosts: ComposeHosts, topo: Topology, seconds: float) -> None:
        argv = ["python", str(PROBE), topo.frontend_url(hosts), "--count", str(int(seconds * 20))]
        argv += ["--interval", "0.05", "--max-seconds", str(seconds), "--timeout", "2"]
        self.proc: subprocess.Popen[str] = hosts.popen(topo.frontend, argv)
        self.results: list[tuple[float, dict[str, Any]]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.results.append((time.monotonic(), json.loads(line)))

    def count_between(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.results if start <= t <= end)

    def stop(self) -> list[dict[str, Any]]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self._reader.join(10)
        return [r for _, r in self.results]


def proxy_status(hosts: ComposeHosts, topo: Topology) -> dict[str, set[str]]:
    """``interlock proxy-status`` run on the control plane's host (with the bundle it wrote,
    as a user of that host would): node id -> its xDS states."""
    argv = ["interlock", "proxy-status", "-o", "json", "--control-plane", topo.control_plane_url]
    out = hosts.run(topo.control_plane, [*argv, "--ca-file", topo.ca_file], timeout=15)
    if out.returncode != 0:
        return {}
    return {p["node_id"]: {t["state"] for t in p["types"]} for p in json.loads(out.stdout)["items"]}


def all_synced(hosts: ComposeHosts, topo: Topology) -> bool:
    status = proxy_status(hosts, topo)
    return set(status) == topo.node_ids and all(s == {"SYNCED"} for s in status.values())


def secrets_on_disk(hosts: ComposeHosts) -> set[bytes]:
    """Every token, key-encryption key and private key file the services hold right now (in
    volumes and in their private directories, e.g. a sidecar's proxy token)."""
    found: set[bytes] = set()
    for path in hosts.run_dir.rglob("*"):
        name = path.name.lower()
        if any(w in name for w in SECRET_FILE_WORDS) and path.is_file():
            found.add(path.read_bytes()[:65536].strip())
    return found


# -- the test ------------------------------------------------------------------------------


def test_compose_topology_across_hosts_survives_a_control_plane_crash(
    stack: ComposeHosts,
) -> None:
    hosts = stack
    topo = Topology.of(hosts)
    secrets: set[bytes] = set()
    capture = Capture(hosts.network.bridge, hosts.run_dir / "bridge.pcap")
    with capture:
        hosts.up(timeout=30)

        # 1. The frontend answers through the mesh, from every backend version.
        wanted = set(topo.versions.values())
        seen: set[str | None] = set()

        def every_version() -> bool:
            seen.update(backend_version(r) for r in probe(hosts, topo, 8))
            return wanted <= seen

        wait_for(hosts, every_version, 45, f"answers from {wanted}")
        wait_for(hosts, lambda: all_synced(hosts, topo), 10, "every proxy SYNCED")
        secrets |= secrets_on_disk(hosts)

        # 2. SIGKILL the control plane (every process of it) and start it again while the
        # frontend keeps calling: the data plane does not need it to serve.
        loop = ProbeLoop(hosts, topo, seconds=30)
        wait_for(hosts, lambda: len(loop.results) >= 10, 10, "the background requests")
        pids = hosts.pids(topo.control_plane)
        assert pids
        killed_at = time.monotonic()
        hosts.kill(topo.control_plane)
        assert not any(alive(p) for p in pids), f"still alive after SIGKILL: {pids}"
        time.sleep(1.5)
        restarted_at = time.monotonic()
        hosts.start(topo.control_plane)
        # The sidecars' Envoys reconnect on their own to the new process (over TLS, verified
        # against the bundle they hold), and are in sync with it at once.
        wait_for(hosts, lambda: all_synced(hosts, topo), 20, "every proxy reconnected, SYNCED")
        time.sleep(0.5)
        results = loop.stop()
        failed = [r for r in results if r["status"] != 200]
        assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
        assert loop.count_between(killed_at, restarted_at) >= 10, "no traffic while it was down"
        assert len(results) >= 40

        # 3. A registry change after the restart reaches the frontend's sidecar: a backend's
        # sidecar leaves (it deregisters through the restarted control plane) and comes back.
        newest = max(topo.versions, key=lambda app: topo.versions[app])
        leaving = next(s for s, app in topo.sidecars.items() if app == newest)
        staying = set(topo.versions.values()) - {topo.versions[newest]}
        hosts.stop(leaving)

        def only(versions: set[str]) -> bool:
            return {backend_version(r) for r in probe(hosts, topo, 10)} == versions

        wait_for(hosts, lambda: only(staying), 20, f"answers only from {staying}")
        hosts.start(leaving)
        seen.clear()
        wait_for(hosts, every_version, 30, f"answers from {wanted} again")
        secrets |= secrets_on_disk(hosts)
        kinds = {s[:4] for s in secrets}
        assert {b"ila_", b"ilr_", b"ilp_"} <= kinds, "admin, registration and proxy tokens"
        capture.stop()

    analysis = analyze(capture.path, secrets)
    # Sidecar to sidecar, sidecar to the control plane (REST and xDS, with the SVIDs' keys over
    # SDS), after the restart too: every connection on the bridge opens with TLS both ways, and
    # none of the tokens or keys the hosts hold is on the wire.
    assert analysis.connections, "nothing crossed the bridge"
    assert_encrypted_wire(analysis)
