"""Network addresses as settings give them: ``HOST:PORT``, parsed once where they enter."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True)
class HostPort:
    """A host (name or IP literal, without brackets) and a port."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: str, *, allow_any_port: bool = False) -> HostPort:
        """``HOST:PORT`` or ``[v6]:PORT`` with a port 1-65535 (0 too with ``allow_any_port``:
        "any free port"). ValueError saying what is expected otherwise."""
        host, sep, port_text = value.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        low = 0 if allow_any_port else 1
        if (
            not sep
            or not host
            or not port_text.isdigit()
            or not low <= int(port_text) <= 65535
            or any(c.isspace() for c in host)
        ):
            raise ValueError(f"expected HOST:PORT with a port {low}-65535, got {value!r}")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an IP address, or None for a name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def is_loopback(self) -> bool:
        """Only this machine can reach it (127.0.0.0/8, ::1, or localhost)."""
        ip = self.ip
        return ip.is_loopback if ip is not None else self.host.lower() in LOOPBACK_NAMES

    @property
    def is_wildcard(self) -> bool:
        """Every address of the machine (0.0.0.0 or ::)."""
        ip = self.ip
        return ip is not None and ip.is_unspecified


__all__ = ["HostPort"]
