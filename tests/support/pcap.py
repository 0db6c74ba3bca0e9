"""What crossed the wire: capture with tcpdump, then read the capture in pure Python.

:class:`Capture` runs ``tcpdump -U -s 0 -w FILE tcp`` on an interface (a test bridge); the
reader understands classic pcap files (not pcapng) with Ethernet, Linux cooked (SLL, SLL2) or
raw IP frames, IPv4 and IPv6 (without reassembling IP fragments, which it reports) and TCP.
:func:`analyze` groups segments into connections (4-tuple; the client is who sent the SYN),
reassembles each direction in sequence order (retransmissions and reordering included), tells
for each connection whether each side's first bytes are a TLS handshake record, and searches
every reassembled stream for secrets: PEM private keys, Interlock tokens (``ila_``, ``ilp_``,
``ilr_`` followed by token characters) and exact byte strings the caller passes in.

A secret inside an HTTP/2 header may be HPACK-Huffman coded and escape the byte search; the
TLS check is what proves such a connection private. :func:`assert_encrypted_wire` is the
target state of a mesh's wire: every connection opens with TLS both ways, no secret in clear.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

APT_TIMEOUT = 240.0

PEM_PRIVATE_KEY = re.compile(rb"PRIVATE KEY-----")
TOKEN = re.compile(rb"il[apr]_[A-Za-z0-9_-]{8,}")

_LINKTYPE_ETHERNET, _LINKTYPE_RAW, _LINKTYPE_SLL, _LINKTYPE_IPV4, _LINKTYPE_IPV6 = (
    1,
    101,
    113,
    228,
    229,
)
_LINKTYPE_SLL2 = 276
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


class PcapError(ValueError):
    """The file is not a capture this reader understands."""


# -- capturing ---------------------------------------------------------------------------------


def install_tcpdump() -> str | None:
    """Make sure ``tcpdump`` is installed (``apt-get update && apt-get install -y tcpdump``, as
    root, bounded in time). None when it is there, else why it cannot be."""
    if shutil.which("tcpdump"):
        return None
    how = "apt-get update && apt-get install -y tcpdump"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"tcpdump is missing and cannot be installed here; as root: {how}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "tcpdump"]):
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=APT_TIMEOUT, env=env,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return f"installing tcpdump: `{' '.join(cmd)}` took over {APT_TIMEOUT:g}s"
        if out.returncode != 0:
            tail = (out.stdout + out.stderr)[-2000:]
            return f"installing tcpdump: `{' '.join(cmd)}` exited {out.returncode}:\n{tail}"
    return None if shutil.which("tcpdump") else f"`{how}` succeeded but tcpdump is missing"


class Capture:
    """``tcpdump`` writing every TCP packet seen on ``interface`` to ``path`` (optionally
    inside network namespace ``netns``), from ``start`` (which waits until it listens) until
    ``stop``. A context manager; the process runs in its own group and is always stopped."""

    def __init__(
        self, interface: str, path: Path, *, netns: str | None = None, bpf: str = "tcp"
    ) -> None:
        self.interface = interface
        self.path = path
        self.netns = netns
        self.bpf = bpf
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = path.with_suffix(".tcpdump.log")

    def start(self, timeout: float = 10.0) -> Capture:
        # -Z root: tcpdump would otherwise drop to its own user and fail to write into a
        # directory only root may write to. --immediate-mode: without it packets wait in the
        # kernel's ring for up to a second, and the last ones are lost when tcpdump stops.
        argv = ["tcpdump", "-i", self.interface, "-U", "-s", "0", "-n", "-Z", "root"]
        argv += ["--immediate-mode"]
        argv += ["-w", str(self.path), self.bpf]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with self._stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while b"listening on" not in self._stderr.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self._stderr.read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"tcpdump did not start on {self.interface}: {log}")
            time.sleep(0.05)
        return self

    def stop(self, settle: float = 0.2) -> Path:
        """Stop tcpdump (SIGINT: it flushes and closes the file) after ``settle`` seconds for
        the last packets to be written; the capture file."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                time.sleep(settle)
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return self.path

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One TCP segment as captured."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    flags: int
    payload: bytes


def read_pcap(path: Path, problems: list[str] | None = None) -> Iterator[Segment]:
    """Every TCP segment in the pcap file at ``path``, in file order. Frames it cannot read
    (IP fragments, truncated packets, other link types' oddities) are described in
    ``problems`` when given."""
    data = path.read_bytes()
    if len(data) < 24:
        raise PcapError(f"{path}: {len(data)} bytes is no pcap file")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise PcapError(f"{path}: not a classic pcap file (magic {magic.hex()})")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    offset, number = 24, 0
    noted = problems if problems is not None else []
    while offset + 16 <= len(data):
        sec, frac, caplen, wirelen = record.unpack_from(data, offset)
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        number += 1
        if caplen < wirelen:
            noted.append(f"frame {number}: truncated to {caplen} of {wirelen} bytes")
            continue
        stamp = sec + frac / (1e9 if nano else 1e6)
        try:
            segment = _frame(frame, linktype, stamp, number, noted)
        except (struct.error, IndexError):
            noted.append(f"frame {number}: malformed")
            continue
        if segment is not None:
            yield segment


def _frame(
    frame: bytes, linktype: int, stamp: float, number: int, problems: list[str]
) -> Segment | None:
    if linktype == _LINKTYPE_ETHERNET:
        ethertype, at = struct.unpack_from("!H", frame, 12)[0], 14
        while ethertype in (0x8100, 0x88A8):  # VLAN tags
            ethertype, at = struct.unpack_from("!H", frame, at + 2)[0], at + 4
    elif linktype == _LINKTYPE_SLL:
        ethertype, at = struct.unpack_from("!H", frame, 14)[0], 16
    elif linktype == _LINKTYPE_SLL2:
        ethertype, at = struct.unpack_from("!H", frame, 0)[0], 20
    elif linktype in (_LINKTYPE_RAW, _LINKTYPE_IPV4, _LINKTYPE_IPV6):
        ethertype, at = (0x0800 if frame[0] >> 4 == 4 else 0x86DD), 0
    else:
        raise PcapError(f"link type {linktype} is not supported")
    if ethertype == 0x0800:
        return _ipv4(frame[at:], stamp, number, problems)
    if ethertype == 0x86DD:
        return _ipv6(frame[at:], stamp, number, problems)
    return None


def _ipv4(packet: bytes, stamp: float, number: int, problems: list[str]) -> Segment | None:
    ihl = (packet[0] & 0x0F) * 4
    total, frag, proto = struct.unpack_from("!H", packet, 2)[0], packet[6:8], packet[9]
    if proto != 6:
        return None
    flags_offset = struct.unpack("!H", frag)[0]
    if flags_offset & 0x3FFF:  # more fragments, or a fragment offset
        problems.append(f"frame {number}: an IPv4 fragment (not reassembled)")
        return None
    src, dst = _ip4(packet[12:16]), _ip4(packet[16:20])
    return _tcp(packet[ihl:total], src, dst, stamp)


def _ipv6(packet: bytes, stamp: float, number: int, problems: list[str]) -> Segment | None:
    length, header = struct.unpack_from("!H", packet, 4)[0], packet[6]
    src, dst = _ip6(packet[8:24]), _ip6(packet[24:40])
    at, end = 40, 40 + length
    while header in (0, 43, 60):  # hop-by-hop, routing, destination options
        header, at = packet[at], at + (packet[at + 1] + 1) * 8
    if header == 44:
        problems.append(f"frame {number}: an IPv6 fragment (not reassembled)")
        return None
    return _tcp(packet[at:end], src, dst, stamp) if header == 6 else None


def _ip4(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def _ip6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


def _tcp(segment: bytes, src: str, dst: str, stamp: float) -> Segment:
    sport, dport, seq, _ack, off_flags = struct.unpack_from("!HHIIH", segment, 0)
    header = (off_flags >> 12) * 4
    return Segment(stamp, (src, sport), (dst, dport), seq, off_flags & 0x3F, segment[header:])


# -- connections ---------------------------------------------------------------------------------


def is_tls_handshake(data: bytes) -> bool:
    """Whether ``data`` starts with a TLS handshake record (content type 22, version 3.1-3.4)."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and 0x01 <= data[2] <= 0x04


@dataclass
class _Stream:
    """One direction's payload, placed by sequence number relative to the first byte."""

    base: int | None = None
    chunks: list[tuple[int, bytes]] = field(default_factory=list)

    def add(self, seq: int, flags: int, payload: bytes) -> None:
        if flags & _SYN:
            self.base = (seq + 1) & 0xFFFFFFFF
        if not payload:
            return
        if self.base is None:
            self.base = seq
        offset = (seq - self.base) & 0xFFFFFFFF
        if offset >= 1 << 31:  # before the first byte seen: retransmission of older data
            return
        self.chunks.append((offset, payload))

    def assemble(self) -> tuple[bytes, int]:
        """The bytes in order (overlaps kept once) and how many gaps there were."""
        out = bytearray()
        gaps = 0
        for offset, payload in sorted(self.chunks, key=lambda c: c[0]):
            if offset > len(out):
                gaps += 1
                out += payload
            elif offset + len(payload) > len(out):
                out += payload[len(out) - offset :]
        return bytes(out), gaps


@dataclass
class Connection:
    """One TCP connection: who opened it, and each direction's payload in order."""

    client: tuple[str, int]
    server: tuple[str, int]
    saw_syn: bool
    client_data: bytes = b""
    server_data: bytes = b""
    gaps: int = 0
    packets: int = 0

    @property
    def client_tls(self) -> bool | None:
        """Whether the client's first bytes are a TLS handshake (None: it sent nothing)."""
        return is_tls_handshake(self.client_data) if self.client_data else None

    @property
    def server_tls(self) -> bool | None:
        """Whether the server's first bytes are a TLS handshake (None: it sent nothing)."""
        return is_tls_handshake(self.server_data) if self.server_data else None

    def __str__(self) -> str:
        def side(data: bytes, tls: bool | None) -> str:
            if tls is None:
                return "silent"
            return f"{'TLS' if tls else 'clear'} {len(data)}B {data[:12]!r}"

        c, s = self.client, self.server
        return (
            f"{c[0]}:{c[1]} -> {s[0]}:{s[1]}{'' if self.saw_syn else ' (no SYN seen)'}: "
            f"client {side(self.client_data, self.client_tls)}, "
            f"server {side(self.server_data, self.server_tls)}"
            + (f", {self.gaps} gap(s)" if self.gaps else "")
        )


def tcp_connections(segments: Iterable[Segment]) -> list[Connection]:
    """The connections in ``segments``, in the order they were first seen. A new SYN for a
    4-tuple whose connection ended (or that had another initial sequence number) starts a new
    connection; without a SYN, the first sender counts as the client."""
    open_: dict[frozenset[tuple[str, int]], _Building] = {}
    done: list[_Building] = []
    for seg in segments:
        key = frozenset((seg.src, seg.dst))
        building = open_.get(key)
        is_open = bool(seg.flags & _SYN) and not seg.flags & _ACK
        if building is not None and is_open and building.isn != seg.seq:
            done.append(open_.pop(key))
            building = None
        if building is None:
            building = _Building(seg.src, seg.dst, seg.seq if is_open else None)
            open_[key] = building
        building.packets += 1
        side = building.to_server if seg.src == building.client else building.to_client
        side.add(seg.seq, seg.flags, seg.payload)
    done.extend(open_.values())
    done.sort(key=lambda b: b.order)
    return [b.finish() for b in done]


_ORDER = iter(range(1 << 62))


@dataclass
class _Building:
    client: tuple[str, int]
    server: tuple[str, int]
    isn: int | None
    packets: int = 0
    to_server: _Stream = field(default_factory=_Stream)
    to_client: _Stream = field(default_factory=_Stream)
    order: int = field(default_factory=lambda: next(_ORDER))

    def finish(self) -> Connection:
        client_data, g1 = self.to_server.assemble()
        server_data, g2 = self.to_client.assemble()
        return Connection(
            self.client, self.server, self.isn is not None, client_data, server_data,
            g1 + g2, self.packets,
        )  # fmt: skip


# -- secrets ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A secret seen in clear: what kind, in which connection and direction, how often."""

    kind: str
    connection: Connection
    direction: str
    offset: int
    count: int
    sample: str
    """A redacted hint (a token's prefix and first characters), never the secret."""

    def __str__(self) -> str:
        return (
            f"{self.kind} x{self.count} sent by the {self.direction} at byte {self.offset} "
            f"({self.sample}) in {self.connection}"
        )


def find_secrets(connections: Sequence[Connection], exact: Iterable[bytes] = ()) -> list[Finding]:
    """Every secret in clear in ``connections``: PEM private keys, Interlock tokens, and each
    of the ``exact`` byte strings (empty ones are ignored)."""
    patterns: list[tuple[str, re.Pattern[bytes]]] = [
        ("PEM private key", PEM_PRIVATE_KEY),
        ("Interlock token", TOKEN),
    ]
    for i, secret in enumerate(s for s in exact if s):
        patterns.append((f"given secret #{i + 1}", re.compile(re.escape(secret))))
    findings = []
    for conn in connections:
        for direction, data in (("client", conn.client_data), ("server", conn.server_data)):
            for kind, pattern in patterns:
                matches = list(pattern.finditer(data))
                if matches:
                    first = matches[0].group(0)
                    sample = first[:8].decode(errors="replace") + "…"
                    findings.append(
                        Finding(kind, conn, direction, matches[0].start(), len(matches), sample)
                    )
    return findings


@dataclass
class Analysis:
    """A capture's connections, the secrets found in clear, and what could not be read."""

    connections: list[Connection]
    findings: list[Finding]
    problems: list[str]

    @property
    def with_payload(self) -> list[Connection]:
        return [c for c in self.connections if c.client_data or c.server_data]

    @property
    def tls(self) -> list[Connection]:
        """Connections that open with a TLS handshake from both sides."""
        return [c for c in self.with_payload if c.client_tls and c.server_tls]

    @property
    def clear(self) -> list[Connection]:
        """Connections where some side's first bytes are not a TLS handshake."""
        return [c for c in self.with_payload if False in (c.client_tls, c.server_tls)]

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def summary(self, limit: int = 40) -> str:
        lines = [f"{len(self.connections)} connection(s), {len(self.findings)} finding(s)"]
        lines += [f"  {c}" for c in self.connections[:limit]]
        lines += [f"  secret: {f}" for f in self.findings[:limit]]
        lines += [f"  unreadable: {p}" for p in self.problems[:limit]]
        return "\n".join(lines)


def analyze(path: Path, secrets: Iterable[bytes] = ()) -> Analysis:
    """Read the capture at ``path``: its connections and the secrets seen in clear."""
    problems: list[str] = []
    connections = tcp_connections(read_pcap(path, problems))
    return Analysis(connections, find_secrets(connections, secrets), problems)


def assert_encrypted_wire(analysis: Analysis) -> None:
    """The target state of a mesh's wire. Raises AssertionError (with the capture's summary)
    unless: at least one connection was captured; every connection was seen from its SYN and
    read whole; every connection that carried data opens with a TLS handshake from the client
    and, when the server sent anything, from the server; and no private key, token or given
    secret appears in clear anywhere."""
    wrong: list[str] = []
    if not analysis.with_payload:
        wrong.append("no TCP connection with data was captured")
    wrong += [f"unreadable: {p}" for p in analysis.problems]
    for conn in analysis.with_payload:
        if not conn.saw_syn or conn.gaps:
            wrong.append(f"not seen whole: {conn}")
        elif not conn.client_tls or conn.server_tls is False:
            wrong.append(f"not TLS: {conn}")
    wrong += [f"in clear: {f}" for f in analysis.findings]
    if wrong:
        raise AssertionError(
            "the wire is not all TLS:\n  " + "\n  ".join(wrong) + "\n" + analysis.summary()
        )
