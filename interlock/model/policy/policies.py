"""The stored policies of a :class:`~interlock.model.MeshState`: typed, grouped by kind.

Each stored :class:`~interlock.model.resource.Resource` becomes a :class:`Policy` — the
resource (name, namespace, generation, revisions) and its spec parsed into the kind's frozen
dataclass. A stored spec that no longer parses (a newer Interlock tightened a rule) is kept
aside in :attr:`Policies.invalid`, so it is reported as a problem instead of breaking every
translation.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from interlock.model.errors import FieldError
from interlock.model.frozen import thaw
from interlock.model.policy.authorization_policy import AuthorizationPolicy
from interlock.model.policy.destination_rule import DestinationRule
from interlock.model.policy.gateway import Gateway
from interlock.model.policy.peer_authentication import PeerAuthentication
from interlock.model.policy.rate_limit import RateLimit
from interlock.model.policy.registry import KINDS, kind_info
from interlock.model.policy.request_authentication import RequestAuthentication
from interlock.model.policy.service_entry import ServiceEntry
from interlock.model.policy.sidecar import Sidecar
from interlock.model.policy.telemetry import Telemetry
from interlock.model.policy.virtual_service import VirtualService
from interlock.model.resource import Resource, ResourceKey

S = TypeVar("S")


@dataclass(frozen=True)
class Policy(Generic[S]):
    """A stored resource and its typed spec."""

    resource: Resource
    spec: S

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def namespace(self) -> str:
        return self.resource.namespace

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def key(self) -> ResourceKey:
        return self.resource.key

    @property
    def ref(self) -> str:
        return self.resource.ref


@dataclass(frozen=True)
class InvalidPolicy:
    """A stored resource whose spec no longer parses, and why."""

    resource: Resource
    errors: tuple[FieldError, ...]


@functools.lru_cache(maxsize=4096)
def _parse(kind: str, spec_json: str) -> tuple[Any, tuple[FieldError, ...]]:
    try:
        info = kind_info(kind)
    except KeyError:
        return None, (FieldError("kind", f"{kind!r} is not a kind Interlock knows"),)
    parsed, errors = info.parse_spec(json.loads(spec_json))
    return parsed, tuple(errors)


def parse_policy(resource: Resource) -> Policy[Any] | InvalidPolicy:
    """``resource`` with its spec parsed. Parses are cached by the spec's exact JSON (specs
    are immutable, and equal JSON parses to equal values), so rebuilding a ``MeshState``
    after every write re-parses only what changed."""
    key = json.dumps(thaw(resource.spec), sort_keys=True, separators=(",", ":"))
    spec, errors = _parse(resource.kind, key)
    if errors:
        return InvalidPolicy(resource, errors)
    return Policy(resource, spec)


@dataclass(frozen=True)
class Policies:
    """Every stored policy, one tuple per kind, each sorted by namespace and name."""

    virtual_services: tuple[Policy[VirtualService], ...] = ()
    destination_rules: tuple[Policy[DestinationRule], ...] = ()
    gateways: tuple[Policy[Gateway], ...] = ()
    service_entries: tuple[Policy[ServiceEntry], ...] = ()
    sidecars: tuple[Policy[Sidecar], ...] = ()
    peer_authentications: tuple[Policy[PeerAuthentication], ...] = ()
    request_authentications: tuple[Policy[RequestAuthentication], ...] = ()
    authorization_policies: tuple[Policy[AuthorizationPolicy], ...] = ()
    rate_limits: tuple[Policy[RateLimit], ...] = ()
    telemetries: tuple[Policy[Telemetry], ...] = ()
    invalid: tuple[InvalidPolicy, ...] = ()

    @classmethod
    def build(cls, resources: Iterable[Resource]) -> Policies:
        groups: dict[str, list[Policy[Any]]] = {k.state_field: [] for k in KINDS}
        invalid: list[InvalidPolicy] = []
        for resource in sorted(resources, key=lambda r: (r.kind, r.namespace, r.name)):
            policy = parse_policy(resource)
            if isinstance(policy, InvalidPolicy):
                invalid.append(policy)
            else:
                groups[kind_info(resource.kind).state_field].append(policy)
        return cls(**{name: tuple(items) for name, items in groups.items()}, invalid=tuple(invalid))

    def of_kind(self, kind: str) -> tuple[Policy[Any], ...]:
        """The valid policies of ``kind`` (``VirtualService``)."""
        policies: tuple[Policy[Any], ...] = getattr(self, kind_info(kind).state_field)
        return policies

    def all(self) -> tuple[Policy[Any], ...]:
        """Every valid policy, kind by kind in registry order."""
        return tuple(p for k in KINDS for p in self.of_kind(k.kind))

    def resources(self) -> tuple[Resource, ...]:
        """Every stored resource (valid or not), sorted by kind, namespace and name."""
        found = [p.resource for p in self.all()] + [p.resource for p in self.invalid]
        return tuple(sorted(found, key=lambda r: r.key))

    def get(self, key: ResourceKey) -> Policy[Any] | None:
        for policy in self.of_kind(key.kind) if key.kind in _KIND_NAMES else ():
            if policy.key == key:
                return policy
        return None

    def with_changes(
        self, put: Iterable[Resource] = (), delete: Iterable[ResourceKey] = ()
    ) -> Policies:
        """These policies with ``put`` stored (replacing same-named ones) and ``delete``
        removed — for "what would happen if" questions such as a dry run."""
        current = {r.key: r for r in self.resources()}
        for key in delete:
            current.pop(key, None)
        for resource in put:
            current[resource.key] = resource
        return Policies.build(current.values())


_KIND_NAMES = frozenset(k.kind for k in KINDS)
