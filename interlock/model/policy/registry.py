"""The kind registry: every policy kind Interlock stores, its API group and versions, the names
users may call it by, and its spec schema (which validates and parses to a typed dataclass).

To add a kind: write its module (a dataclass and a ``SPEC`` schema), add a :class:`KindInfo`
to :data:`KINDS` and a field to :class:`interlock.model.policy.policies.Policies`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from interlock.model.errors import FieldError
from interlock.model.policy import (
    authorization_policy,
    destination_rule,
    gateway,
    peer_authentication,
    rate_limit,
    request_authentication,
    service_entry,
    sidecar,
    telemetry,
    virtual_service,
)
from interlock.model.schema import INVALID, Obj

S = TypeVar("S")

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
INTERLOCK = "interlock.io"

#: The kinds, as :class:`interlock.store.Change` records them.
ResourceKind = Literal[
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "Sidecar",
    "PeerAuthentication",
    "RequestAuthentication",
    "AuthorizationPolicy",
    "RateLimit",
    "Telemetry",
]


@dataclass(frozen=True)
class KindInfo(Generic[S]):
    """One kind. ``versions`` are the accepted API versions, the first preferred; ``state_field`` is
    the attribute of :class:`~interlock.model.policy.policies.Policies` holding its objects;
    ``name_error`` is an extra rule for ``metadata.name`` (Gateway names are DNS labels)."""

    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str
    short_names: tuple[str, ...]
    schema: Obj[S] = field(repr=False)
    state_field: str
    summary: str
    name_error: Callable[[str], str | None] | None = field(default=None, repr=False)
    #: Extra rules for ``metadata.annotations`` that the kind gives a meaning (annotations,
    #: the spec as given, the annotations' path) → errors.
    annotation_errors: Callable[[Mapping[str, str], object, str], list[FieldError]] | None = field(
        default=None, repr=False
    )

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" for v in self.versions)

    @property
    def preferred_api_version(self) -> str:
        return self.api_versions[0]

    @property
    def aliases(self) -> tuple[str, ...]:
        """Lower-case names that mean this kind (``virtualservice``, ``virtualservices``,
        ``vs``, and the same with ``.group``)."""
        base = (self.kind.lower(), self.plural, *self.short_names)
        return (*base, *(f"{name}.{self.group}" for name in base[:2]))

    @property
    def qualified_name(self) -> str:
        """kubectl's ``virtualservice.networking.istio.io``."""
        return f"{self.kind.lower()}.{self.group}"

    def validate_spec(self, spec: object, path: str = "spec") -> list[FieldError]:
        """Every error in ``spec`` (empty when valid), with paths under ``path``."""
        return self.parse_spec(spec, path)[1]

    def parse_spec(self, spec: object, path: str = "spec") -> tuple[S | None, list[FieldError]]:
        """The typed spec, or ``None`` and every error (with paths under ``path``)."""
        errors: list[FieldError] = []
        parsed = self.schema.parse(spec, path, errors)
        if errors or parsed is INVALID:
            return None, errors or [FieldError(path, "is not valid")]
        return parsed, []


KINDS: tuple[KindInfo[Any], ...] = (
    KindInfo(
        "VirtualService",
        NETWORKING,
        ("v1", "v1beta1", "v1alpha3"),
        "virtualservices",
        ("vs",),
        virtual_service.SPEC,
        "virtual_services",
        "HTTP and TCP routing for a set of hosts",
    ),
    KindInfo(
        "DestinationRule",
        NETWORKING,
        ("v1", "v1beta1", "v1alpha3"),
        "destinationrules",
        ("dr",),
        destination_rule.SPEC,
        "destination_rules",
        "subsets, load balancing, connection pools, outlier detection and TLS for a host",
    ),
    KindInfo(
        "Gateway",
        NETWORKING,
        ("v1", "v1beta1", "v1alpha3"),
        "gateways",
        ("gw",),
        gateway.SPEC,
        "gateways",
        "the listeners of a gateway proxy",
        gateway.gateway_name_error,
    ),
    KindInfo(
        "ServiceEntry",
        NETWORKING,
        ("v1", "v1beta1", "v1alpha3"),
        "serviceentries",
        ("se",),
        service_entry.SPEC,
        "service_entries",
        "hosts outside the registry",
    ),
    KindInfo(
        "Sidecar",
        NETWORKING,
        ("v1", "v1beta1", "v1alpha3"),
        "sidecars",
        (),
        sidecar.SPEC,
        "sidecars",
        "which services and hosts a workload's proxy may reach",
    ),
    KindInfo(
        "PeerAuthentication",
        SECURITY,
        ("v1", "v1beta1"),
        "peerauthentications",
        ("pa",),
        peer_authentication.SPEC,
        "peer_authentications",
        "the mutual-TLS mode of inbound traffic",
    ),
    KindInfo(
        "RequestAuthentication",
        SECURITY,
        ("v1", "v1beta1"),
        "requestauthentications",
        ("ra",),
        request_authentication.SPEC,
        "request_authentications",
        "which JWTs a workload accepts",
    ),
    KindInfo(
        "AuthorizationPolicy",
        SECURITY,
        ("v1", "v1beta1"),
        "authorizationpolicies",
        ("ap",),
        authorization_policy.SPEC,
        "authorization_policies",
        "who may call what",
        annotation_errors=authorization_policy.annotation_errors,
    ),
    KindInfo(
        "RateLimit",
        INTERLOCK,
        ("v1",),
        "ratelimits",
        ("rl",),
        rate_limit.SPEC,
        "rate_limits",
        "local token-bucket rate limits per service or route",
    ),
    KindInfo(
        "Telemetry",
        INTERLOCK,
        ("v1",),
        "telemetries",
        (),
        telemetry.SPEC,
        "telemetries",
        "access logs and tracing, mesh-wide or per service",
    ),
)

_BY_KIND = {k.kind: k for k in KINDS}
_BY_ALIAS = {alias: k for k in KINDS for alias in k.aliases}


def kind_info(kind: str) -> KindInfo[Any]:
    """The registry entry of ``kind`` (exact name, e.g. ``VirtualService``); ``KeyError``."""
    return _BY_KIND[kind]


def lookup_kind(word: str) -> KindInfo[Any] | None:
    """The kind ``word`` names, case-insensitively: ``VirtualService``, ``virtualservices``,
    ``vs``, ``virtualservice.networking.istio.io`` ...; ``None`` if none."""
    return _BY_ALIAS.get(word.lower())


def known_kind_names() -> list[str]:
    """Every word :func:`lookup_kind` knows, lowercase, sorted."""
    return sorted(_BY_ALIAS)


def known_kinds_text() -> str:
    """For messages: ``VirtualService (vs), DestinationRule (dr), ...``."""
    return ", ".join(
        f"{k.kind} ({', '.join(k.short_names)})" if k.short_names else k.kind for k in KINDS
    )
