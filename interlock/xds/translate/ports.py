"""Ports: which listener may bind which address:port on one proxy.

Envoy refuses a listener it cannot bind, and two listeners on one address:port make it reject
the whole update. So every listener claims its address first; the first claim wins and a later
one learns what it collides with, to be reported as a Problem and left out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.listener.v3 import listener_pb2

from interlock.model import Proxy

APP_ADDRESS = "127.0.0.1"
"""Where a sidecar finds its app: the app listens on loopback, beside its Envoy."""


@dataclass(frozen=True)
class Binding:
    """``owner`` (in words, e.g. ``the inbound listener``) wants ``address:port``."""

    address: str
    port: int
    owner: str

    @property
    def endpoint(self) -> str:
        """``address:port`` (IPv6 in brackets)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def overlaps(self, other: Binding) -> bool:
        """True when both cannot be bound at once: same port, and the same address or a
        wildcard (``0.0.0.0``, ``::``) of the same IP family on either side."""
        if self.port != other.port:
            return False
        try:
            mine = ipaddress.ip_address(self.address)
            theirs = ipaddress.ip_address(other.address)
        except ValueError:  # validated where it enters; compare as text if it was not
            return self.address == other.address
        if mine.version != theirs.version:
            return False
        return mine == theirs or mine.is_unspecified or theirs.is_unspecified


class PortTable:
    """The address:ports taken on one proxy, in the order they were claimed."""

    def __init__(self) -> None:
        self._taken: list[Binding] = []

    def claim(self, binding: Binding) -> Binding | None:
        """Take ``binding`` and return ``None``, or return the earlier binding it collides
        with (and take nothing)."""
        for taken in self._taken:
            if taken.overlaps(binding):
                return taken
        self._taken.append(binding)
        return None


def bound_table(listeners: Iterable[listener_pb2.Listener], proxy: Proxy) -> PortTable:
    """The address:ports ``listeners`` (and the app) already hold."""
    table = PortTable()
    if proxy.app_port is not None:
        table.claim(Binding(APP_ADDRESS, proxy.app_port, "the app's own port"))
    for listener in listeners:
        address = listener.address.socket_address
        table.claim(Binding(address.address, address.port_value, f"listener {listener.name}"))
    return table
