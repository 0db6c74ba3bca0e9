"""MeshState: one immutable, consistent view of everything stored, at one revision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from interlock.model.policy.policies import Policies
from interlock.model.policy.request_authentication import FetchedKeys
from interlock.model.resource import Resource, ResourceKey
from interlock.model.service import Instance, Service


@dataclass(frozen=True, eq=False)
class MeshState:
    """Everything the translator may read. Built by the store from one transaction.

    ``policies`` holds the stored policy resources, typed and grouped by kind (see
    :class:`~interlock.model.policy.Policies`). ``fetched_keys`` is the one part that is not
    stored: the key sets the control plane fetched for RequestAuthentications' ``jwksUri``,
    by URI (the reconciler adds them; a state loaded from the store has none).
    """

    revision: int
    services: Mapping[str, Service] = field(default_factory=lambda: MappingProxyType({}))
    instances: Mapping[str, tuple[Instance, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    policies: Policies = field(default_factory=Policies)
    fetched_keys: Mapping[str, FetchedKeys] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls,
        revision: int,
        services: Iterable[Service],
        instances: Iterable[Instance],
        resources: Iterable[Resource] = (),
    ) -> MeshState:
        """Index ``services`` by name and ``instances`` by service, both sorted; parse
        ``resources`` into :attr:`policies`."""
        by_service: dict[str, list[Instance]] = {}
        for inst in instances:
            by_service.setdefault(inst.service, []).append(inst)
        return cls(
            revision=revision,
            services=MappingProxyType({s.name: s for s in sorted(services, key=lambda s: s.name)}),
            instances=MappingProxyType(
                {
                    name: tuple(sorted(insts, key=lambda i: i.instance_id))
                    for name, insts in sorted(by_service.items())
                }
            ),
            policies=Policies.build(resources),
        )

    def with_resources(
        self, put: Iterable[Resource] = (), delete: Iterable[ResourceKey] = ()
    ) -> MeshState:
        """This state with ``put`` stored and ``delete`` removed (same revision): what the
        mesh would be after a write, for dry runs and problem reports."""
        return replace(self, policies=self.policies.with_changes(put, delete))

    def with_instances(
        self, revision: int, instances: Mapping[str, Iterable[Instance]]
    ) -> MeshState:
        """This state at ``revision`` with the instances of the services in ``instances``
        replaced (an empty iterable removes them). Everything else is shared, object for
        object, so a consumer can tell what did not change by identity."""
        merged = dict(self.instances)
        for name, insts in instances.items():
            ordered = tuple(sorted(insts, key=lambda i: i.instance_id))
            if ordered:
                merged[name] = ordered
            else:
                merged.pop(name, None)
        return replace(
            self, revision=revision, instances=MappingProxyType(dict(sorted(merged.items())))
        )

    def instances_of(self, service: str) -> tuple[Instance, ...]:
        return self.instances.get(service, ())

    def healthy_instances_of(self, service: str) -> tuple[Instance, ...]:
        """The instances of ``service`` that receive traffic (see :attr:`Instance.routable`)."""
        return tuple(i for i in self.instances_of(service) if i.routable)


@dataclass(frozen=True)
class StateChange:
    """What moved between a previous :class:`MeshState` and a newer one.

    ``instances_only`` is True when nothing but instances changed, and then
    ``instance_services`` names the services whose instances did; otherwise anything may have
    changed (services, policies, the CA, or more revisions than were worth reading one by
    one) and a consumer must treat the new state as new.
    """

    instances_only: bool
    instance_services: frozenset[str] = frozenset()

    @classmethod
    def everything(cls) -> StateChange:
        return cls(instances_only=False)
