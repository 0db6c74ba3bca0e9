"""The pure-Python pcap reader on captures built byte by byte: reassembly in sequence order
(reordering, retransmission, sequence wrap), who the client is, TLS detection, and the secret
search — the properties the multi-host test relies on to judge what crossed the wire."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from tests.support.pcap import (
    Analysis,
    PcapError,
    analyze,
    assert_encrypted_wire,
    find_secrets,
    is_tls_handshake,
)

SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
CLIENT, SERVER = ("198.18.0.3", 40000), ("198.18.0.2", 8080)
HELLO = b"\x16\x03\x01\x00\x05hello"


def tcp(src: tuple[str, int], dst: tuple[str, int], seq: int, flags: int, payload: bytes) -> bytes:
    header = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, 0, 5 << 4, flags, 65535, 0, 0)
    return header + payload


def ipv4(src: tuple[str, int], dst: tuple[str, int], segment: bytes, frag: int = 0) -> bytes:
    addr = [bytes(int(p) for p in a[0].split(".")) for a in (src, dst)]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, frag, 64, 6, 0, *addr)
    return header + segment


def ether(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + packet


def pcap(frames: list[bytes], linktype: int = 1) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", 1000 + i, 0, len(frame), len(frame)) + frame
    return out


def segment(
    src: tuple[str, int], dst: tuple[str, int], seq: int, flags: int, data: bytes = b""
) -> bytes:
    return ether(ipv4(src, dst, tcp(src, dst, seq, flags, data)))


def write(tmp_path: Path, frames: list[bytes], linktype: int = 1) -> Path:
    path = tmp_path / "test.pcap"
    path.write_bytes(pcap(frames, linktype))
    return path


def test_reorders_and_deduplicates_each_direction_and_knows_the_client(tmp_path: Path) -> None:
    c_isn, s_isn = 0xFFFFFFF0, 500  # the client's sequence numbers wrap past 2**32
    frames = [
        segment(CLIENT, SERVER, c_isn, SYN),
        segment(SERVER, CLIENT, s_isn, SYN | ACK),
        segment(CLIENT, SERVER, c_isn + 1, ACK),
        # "GET / HTTP/1.1\r\n" in three pieces: the last first (overlapping the second by two
        # bytes), the first twice
        segment(CLIENT, SERVER, (c_isn + 1 + 8) & 0xFFFFFFFF, PSH | ACK, b"TP/1.1\r\n"),
        segment(CLIENT, SERVER, c_isn + 1, PSH | ACK, b"GET / "),
        segment(CLIENT, SERVER, c_isn + 1 + 6, PSH | ACK, b"HTTP"),
        segment(CLIENT, SERVER, c_isn + 1, PSH | ACK, b"GET / "),
        segment(SERVER, CLIENT, s_isn + 1, PSH | ACK, b"HTTP/1.1 200 OK\r\n"),
        segment(CLIENT, SERVER, (c_isn + 1 + 16) & 0xFFFFFFFF, FIN | ACK),
    ]
    analysis = analyze(write(tmp_path, frames))
    assert analysis.problems == []
    [conn] = analysis.connections
    assert (conn.client, conn.server, conn.saw_syn) == (CLIENT, SERVER, True)
    assert conn.client_data == b"GET / HTTP/1.1\r\n"
    assert conn.server_data == b"HTTP/1.1 200 OK\r\n"
    assert (conn.client_tls, conn.server_tls, conn.gaps) == (False, False, 0)
    assert analysis.clear == [conn] and analysis.tls == []


def test_tls_both_ways_passes_the_target_and_clear_text_does_not(tmp_path: Path) -> None:
    other = ("198.18.0.4", 40001)
    frames = [
        segment(CLIENT, SERVER, 1, SYN),
        segment(SERVER, CLIENT, 9, SYN | ACK),
        segment(CLIENT, SERVER, 2, PSH | ACK, HELLO),
        segment(SERVER, CLIENT, 10, PSH | ACK, b"\x16\x03\x03\x00\x02hi"),
    ]
    tls_only = analyze(write(tmp_path, frames))
    assert [c.client_tls and c.server_tls for c in tls_only.connections] == [True]
    assert_encrypted_wire(tls_only)

    frames += [
        segment(other, SERVER, 1, SYN),
        segment(SERVER, other, 9, SYN | ACK),
        segment(other, SERVER, 2, PSH | ACK, b"GET / HTTP/1.1\r\n\r\n"),
    ]
    mixed = analyze(write(tmp_path, frames))
    assert len(mixed.tls) == 1 and len(mixed.clear) == 1
    with pytest.raises(
        AssertionError, match=re.escape("not TLS: 198.18.0.4:40001 -> 198.18.0.2:8080")
    ):
        assert_encrypted_wire(mixed)


def test_finds_keys_tokens_and_given_secrets_but_never_prints_them(tmp_path: Path) -> None:
    token = "ila_" + "A1b2" * 10
    given = b"\x00kek-bytes\xff"
    key = b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"
    frames = [
        segment(CLIENT, SERVER, 1, SYN),
        segment(CLIENT, SERVER, 2, PSH | ACK, f"Authorization: Bearer {token}\r\n".encode()),
        segment(SERVER, CLIENT, 100, PSH | ACK, key + given),
    ]
    analysis = analyze(write(tmp_path, frames), [given, b""])
    found = {(f.kind, f.direction, f.count) for f in analysis.findings}
    assert found == {
        ("Interlock token", "client", 1),
        ("PEM private key", "server", 2),
        ("given secret #1", "server", 1),
    }
    with pytest.raises(AssertionError) as caught:
        assert_encrypted_wire(analysis)
    assert token not in str(caught.value) and "in clear: Interlock token" in str(caught.value)
    # A token prefix without a token after it is not a token.
    assert (
        find_secrets(
            analyze(write(tmp_path, [segment(CLIENT, SERVER, 1, SYN, b"ila_x")])).connections
        )
        == []
    )
    assert not is_tls_handshake(b"\x16\x03\x05") and is_tls_handshake(HELLO)


def test_a_connection_without_its_syn_or_with_a_hole_fails_the_target(tmp_path: Path) -> None:
    frames = [
        segment(CLIENT, SERVER, 77, PSH | ACK, HELLO),  # the handshake happened before capture
        segment(SERVER, CLIENT, 5, PSH | ACK, HELLO),
        segment(("198.18.0.5", 1), SERVER, 1, SYN),
        segment(("198.18.0.5", 1), SERVER, 2, PSH | ACK, HELLO),
        segment(("198.18.0.5", 1), SERVER, 200, PSH | ACK, b"later"),
    ]
    analysis = analyze(write(tmp_path, frames))
    first, second = analysis.connections
    assert not first.saw_syn and first.client == CLIENT
    assert second.gaps == 1
    with pytest.raises(AssertionError, match="not seen whole") as caught:
        assert_encrypted_wire(analysis)
    assert str(caught.value).count("not seen whole") == 2


def test_fragments_ipv6_cooked_captures_and_a_reused_port(tmp_path: Path) -> None:
    fragment = ether(ipv4(CLIENT, SERVER, tcp(CLIENT, SERVER, 1, PSH | ACK, b"x"), frag=0x2000))
    v6 = struct.pack(
        "!IHBB16s16s", 6 << 28, 20 + 5, 6, 64, b"\x00" * 15 + b"\x01", b"\x00" * 15 + b"\x02"
    )
    v6 += tcp(("::1", 5555), ("::2", 443), 1, PSH | ACK, b"hello")
    frames = [
        fragment,
        ether(v6, 0x86DD),
        segment(CLIENT, SERVER, 1, SYN),
        segment(CLIENT, SERVER, 2, PSH | ACK, b"one"),
        segment(CLIENT, SERVER, 5000, SYN),  # the same 4-tuple again, later
        segment(CLIENT, SERVER, 5001, PSH | ACK, b"two"),
    ]
    analysis = analyze(write(tmp_path, frames))
    assert analysis.problems == ["frame 1: an IPv4 fragment (not reassembled)"]
    assert [c.client_data for c in analysis.connections] == [b"hello", b"one", b"two"]
    assert analysis.connections[0].server == ("::2", 443)

    cooked = [
        b"\x00\x00\x00\x01\x00\x06"
        + b"\x02" * 8
        + b"\x08\x00"
        + ipv4(CLIENT, SERVER, tcp(CLIENT, SERVER, 1, PSH | ACK, b"sll"))
    ]
    assert analyze(write(tmp_path, cooked, linktype=113)).connections[0].client_data == b"sll"

    (tmp_path / "ng.pcap").write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 40)
    with pytest.raises(PcapError, match="not a classic pcap"):
        analyze(tmp_path / "ng.pcap")
    assert isinstance(analysis, Analysis)
