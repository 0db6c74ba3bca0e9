"""An instance's health: what the registry's checks found, why, and since when.

An instance receives traffic (is *routable*) while it is registered healthy (the registration's
``healthy``, which an operator may set to false to take it out by hand) and no check fails.
The checks are runtime state, never part of a registration:

- :attr:`Check.PROXY` — liveness: its proxy (sidecar, gateway or an Envoy run by hand with the
  instance's proxy token) holds an xDS stream to the control plane. It fails once every
  stream of the instance's proxy has been gone for the instance TTL (``--instance-ttl``), and
  passes again when the proxy reconnects.
- :attr:`Check.APP` — the sidecar's probe of its app (``interlock sidecar --health-path`` or
  ``--health-tcp``): the verdict it reports, with its reason.
- :attr:`Check.TTL` — an instance registered with a ``ttl`` must be sent a heartbeat within it.

:func:`settle` is the one rule for what a change of checks does to the status, its reason and
its ``since``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Check(enum.StrEnum):
    """The registry's checks of an instance, in the order their reasons are shown."""

    PROXY = "proxy"
    APP = "app"
    TTL = "ttl"


REGISTERED = "registered"
"""The reason of a new healthy instance's status."""
REGISTERED_UNHEALTHY = "registered with healthy: false"
REGISTERED_HEALTHY = "registered with healthy: true"
NEW_TTL = "registered with a new ttl"
PROXY_RECONNECTED = "its proxy reconnected"
APP_PASSING = "its app probe passes"
HEARTBEAT = "a heartbeat arrived within its ttl"

DEFAULT_INSTANCE_TTL = 15.0
"""Seconds without any xDS stream from an instance's proxy before its proxy check fails."""

MAX_REASON = 512
"""The longest reason stored (a longer one is cut)."""


def proxy_down_reason() -> str:
    return (
        "its proxy has had no xDS stream to the control plane for the instance TTL "
        "(--instance-ttl): is its sidecar or Envoy gone?"
    )


def ttl_missed_reason(ttl: float | None) -> str:
    return f"no heartbeat within its ttl of {format_seconds(ttl or 0.0)}"


def format_seconds(seconds: float) -> str:
    """``30s``, ``1.5s``, ``250ms``: how durations are written back to users."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


def _no_checks() -> Mapping[Check, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Health:
    """The checks that fail now (each with its reason), the reason of the instance's current
    status and when that status began (epoch seconds)."""

    failing: Mapping[Check, str] = field(default_factory=_no_checks)
    reason: str = REGISTERED
    since: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.failing, MappingProxyType):
            ordered = {c: self.failing[c] for c in Check if c in self.failing}
            object.__setattr__(self, "failing", MappingProxyType(ordered))

    @property
    def passing(self) -> bool:
        """True when no check fails."""
        return not self.failing


HEALTHY = Health()


def settle(
    previous: Health,
    was_routable: bool,
    registered_healthy: bool,
    failing: Mapping[Check, str],
    now: float,
    why: str,
) -> Health:
    """The health after a change: ``failing`` checks and the ``registered_healthy`` flag, where
    the instance was ``was_routable`` with ``previous`` health before it.

    Unhealthy: the reason lists what fails (the registration first, then each check).
    Healthy: the reason is ``why`` when the change made it healthy, else it stays as it was.
    ``since`` moves to ``now`` only when routability changed.
    """
    routable = registered_healthy and not failing
    if not routable:
        parts = [] if registered_healthy else [REGISTERED_UNHEALTHY]
        parts += [failing[c] for c in Check if c in failing]
        reason = "; ".join(parts)
    elif was_routable:
        reason = previous.reason
    else:
        reason = why
    since = previous.since if routable == was_routable else now
    return Health(failing, reason[:MAX_REASON], since)
