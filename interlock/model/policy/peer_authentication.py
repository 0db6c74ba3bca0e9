"""PeerAuthentication (security.istio.io): which mutual-TLS mode a workload's inbound traffic
requires — for the whole mesh, a namespace or selected instances, optionally per port."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock.model.errors import FieldError
from interlock.model.frozen import EMPTY_MAP
from interlock.model.policy.common import WORKLOAD_SELECTOR, WorkloadSelector
from interlock.model.schema import INVALID, Enum, Errors, MapOf, Node, Obj, child


class MTLSMode(enum.StrEnum):
    UNSET = "UNSET"
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


@dataclass(frozen=True)
class MutualTLS:
    """``UNSET`` inherits the mode of the parent scope (namespace, then mesh)."""

    mode: MTLSMode = MTLSMode.UNSET


def _no_ports() -> Mapping[int, MutualTLS]:
    return EMPTY_MAP


@dataclass(frozen=True)
class PeerAuthentication:
    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    port_level_mtls: Mapping[int, MutualTLS] = field(default_factory=_no_ports)


class PortKey(Node):
    """A map key naming a port (``"8080"`` in JSON, ``8080`` in YAML), parsed to an int."""

    describe = "a port number from 1 to 65535"

    def parse(self, value: object, path: str, errors: Errors) -> object:
        text = str(value)
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            errors.append(FieldError(path, f"{text!r} is not a port number from 1 to 65535"))
            return INVALID
        return int(text)


def _check(policy: PeerAuthentication, path: str, errors: Errors) -> None:
    if policy.port_level_mtls and policy.selector is None:
        errors.append(
            FieldError(
                child(path, "portLevelMtls"),
                "needs a selector: mesh- and namespace-wide policies cannot set per-port modes",
            )
        )


MUTUAL_TLS: Obj[MutualTLS] = Obj(MutualTLS, {"mode": Enum(MTLSMode)})

SPEC: Obj[PeerAuthentication] = Obj(
    PeerAuthentication,
    {
        "selector": WORKLOAD_SELECTOR,
        "mtls": MUTUAL_TLS,
        "portLevelMtls": MapOf(PortKey(), MUTUAL_TLS, min_items=1, what="port"),
    },
    checks=[_check],
)
