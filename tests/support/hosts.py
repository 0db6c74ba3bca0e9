"""Test hosts without Docker: Linux network namespaces on a bridge the test run creates.

A :class:`HostNetwork` makes one Linux bridge in the root namespace (``198.18.0.1/24``) and,
per host, a network namespace joined to the bridge by a veth pair (the host's end is ``eth0``,
addresses ``198.18.0.2``, ``.3``, ... in the order hosts are added), with ``lo`` up. Every
host's names resolve in every namespace through ``/etc/netns/<ns>/hosts``, which
``ip netns exec`` bind-mounts over ``/etc/hosts`` (``/etc/netns/<ns>/resolv.conf`` names only
the namespace's own loopback, so no lookup ever leaves it). A namespace has no default route:
from inside, only its loopback and ``198.18.0.0/24`` are reachable.

Names are unique per run (``ilk<pid in hex><run>``: the bridge ``…b``, host-side veths ``…v<i>``
(Linux allows 15 characters), namespaces ``…-<host name>``), so concurrent runs do not collide;
their namespaces talk only over their own bridge (concurrent runs give their bridges the same
address, which only matters to traffic from the root namespace).

:meth:`HostNetwork.close` undoes everything it made, in reverse, even after a partial setup:
processes still inside its namespaces (started by this run, through it) are SIGKILLed, the
veths, the bridge and the namespaces are deleted, the ``/etc/netns/<ns>`` directories removed.
Use it as a context manager.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = ipaddress.IPv4Network("198.18.0.0/24")
"""The only addresses test hosts get (RFC 2544 benchmarking space, never routed)."""
BRIDGE_ADDRESS = SUBNET.network_address + 1
NETNS_ETC = Path("/etc/netns")
_RUNS = itertools.count()
_IP_TIMEOUT = 10.0


class HostError(RuntimeError):
    """Setting up or using a test host failed (the message names the command and its output)."""


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n NETNS] ARGS...`` (bounded in time); its stdout, or HostError when it fails
    and ``check`` is set."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    try:
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=_IP_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise HostError(f"`{' '.join(argv)}` took over {_IP_TIMEOUT:g}s") from None
    if check and out.returncode != 0:
        raise HostError(f"`{' '.join(argv)}` exited {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def namespaces_unavailable() -> str | None:
    """Why this process cannot make network namespaces (a reason to skip a test), or None.

    It tries for real: adds a probe namespace and deletes it."""
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add`); run the test as root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    probe = f"ilk{os.getpid():x}probe"
    try:
        ip("netns", "add", probe)
    except HostError as exc:
        return f"cannot make a network namespace: {exc}"
    with contextlib.suppress(HostError):
        ip("netns", "del", probe)
    return None


@dataclass(frozen=True)
class Host:
    """One test host: its network namespace, address on the bridge, and names."""

    name: str
    netns: str
    address: str
    veth: str
    names: tuple[str, ...]

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's network namespace (``ip netns exec``). The command
        sees this host's ``/etc/hosts``; ``ip`` execs it, so the process is the command."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class HostNetwork:
    """A bridge and the hosts on it. ``add_host`` before ``write_hosts_files``; ``close`` (or
    leaving the ``with`` block) removes everything."""

    prefix: str = field(default_factory=lambda: f"ilk{os.getpid():x}{next(_RUNS)}")
    hosts: dict[str, Host] = field(default_factory=dict)
    isolated: dict[str, str] = field(default_factory=dict)
    _made_netns: list[str] = field(default_factory=list)
    _made_links: list[str] = field(default_factory=list)
    _made_dirs: list[Path] = field(default_factory=list)
    _bridge_made: bool = False

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every network namespace this network made (and has not deleted yet)."""
        return tuple(self._made_netns)

    @property
    def bridge(self) -> str:
        """The bridge's interface name (capture on it to see what crosses between hosts)."""
        return f"{self.prefix}b"

    def __enter__(self) -> HostNetwork:
        try:
            self.create_bridge()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_bridge(self) -> None:
        """Make the bridge (up, ``198.18.0.1/24``)."""
        if self._bridge_made:
            return
        ip("link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        ip("addr", "add", f"{BRIDGE_ADDRESS}/{SUBNET.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def _netns_name(self, name: str) -> str:
        clean = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
        return f"{self.prefix}-{clean}"[:48]

    def _add_netns(self, name: str) -> str:
        netns = self._netns_name(name)
        if netns in self._made_netns:
            raise HostError(f"two hosts map to the namespace name {netns!r}")
        ip("netns", "add", netns)
        self._made_netns.append(netns)
        ip("link", "set", "lo", "up", netns=netns)
        return netns

    def add_host(self, name: str, aliases: Sequence[str] = ()) -> Host:
        """A new namespace on the bridge with the next free address; ``name`` and ``aliases``
        resolve to it (once ``write_hosts_files`` ran)."""
        if name in self.hosts or name in self.isolated:
            raise HostError(f"host {name!r} exists already")
        index = len(self.hosts)
        address = SUBNET.network_address + 2 + index
        if address >= SUBNET.broadcast_address:
            raise HostError(f"no address left in {SUBNET} for host {name!r}")
        self.create_bridge()
        netns = self._add_netns(name)
        veth = f"{self.prefix}v{index}"
        if len(veth) > 15:
            raise HostError(f"interface name {veth!r} is longer than Linux allows")
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        self._made_links.append(veth)
        ip("link", "set", veth, "master", self.bridge, "up")
        ip("addr", "add", f"{address}/{SUBNET.prefixlen}", "dev", "eth0", netns=netns)
        ip("link", "set", "eth0", "up", netns=netns)
        host = Host(name, netns, str(address), veth, (name, *aliases))
        self.hosts[name] = host
        return host

    def add_isolated(self, name: str) -> str:
        """A namespace with only ``lo`` (compose's ``network_mode: none``); returns its name."""
        if name in self.hosts or name in self.isolated:
            raise HostError(f"host {name!r} exists already")
        self.isolated[name] = self._add_netns(name)
        return self.isolated[name]

    def hosts_file(self) -> str:
        """The ``/etc/hosts`` every namespace sees: localhost, then each host's names."""
        lines = [
            "# written by tests/support/hosts.py for one test run",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
        ]
        lines += [f"{h.address}\t{' '.join(h.names)}" for h in self.hosts.values()]
        return "\n".join(lines) + "\n"

    def write_hosts_files(self) -> None:
        """Write ``/etc/netns/<ns>/hosts`` (and a loopback-only ``resolv.conf``) for every
        namespace; call again after adding hosts."""
        text = self.hosts_file()
        for netns in self._made_netns:
            directory = NETNS_ETC / netns
            if directory not in self._made_dirs:
                directory.mkdir(parents=True, exist_ok=False)
                self._made_dirs.append(directory)
            (directory / "hosts").write_text(text)
            (directory / "resolv.conf").write_text(
                "# no DNS for test hosts: names come from /etc/hosts only\nnameserver 127.0.0.1\n"
            )

    def netns_pids(self) -> list[int]:
        """Every process inside one of this run's namespaces (all started through this run)."""
        pids: set[int] = set()
        for netns in self._made_netns:
            out = ip("netns", "pids", netns, check=False)
            pids.update(int(p) for p in out.split() if p.isdigit())
        return sorted(pids)

    def close(self) -> None:
        """Remove everything this network made; safe to call twice and after a partial setup.
        Errors are collected and raised together at the end, after every step was tried."""
        errors: list[str] = []
        # Nothing of this run may outlive it: anything still inside its namespaces was started
        # through it (the namespaces are this run's own).
        for attempt in range(20):
            pids = self.netns_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05 * (attempt + 1))
        else:
            errors.append(f"processes still in the namespaces: {self.netns_pids()}")
        for veth in reversed(self._made_links):
            with contextlib.suppress(HostError):
                ip("link", "del", veth, check=True)  # deletes its peer too
        self._made_links.clear()
        if self._bridge_made:
            try:
                ip("link", "del", self.bridge)
                self._bridge_made = False
            except HostError as exc:
                errors.append(str(exc))
        for netns in reversed(self._made_netns):
            try:
                ip("netns", "del", netns)
            except HostError as exc:
                errors.append(str(exc))
        self._made_netns.clear()
        for directory in reversed(self._made_dirs):
            shutil.rmtree(directory, ignore_errors=True)
        self._made_dirs.clear()
        if errors:
            raise HostError("cleaning up test hosts: " + "; ".join(errors))
