"""MeshState: one immutable, consistent view of everything stored, at one revision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from interlock.model.service import Instance, Service


@dataclass(frozen=True, eq=False)
class MeshState:
    """Everything the translator may read. Built by the store from one transaction."""

    revision: int
    services: Mapping[str, Service] = field(default_factory=lambda: MappingProxyType({}))
    instances: Mapping[str, tuple[Instance, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def build(
        cls, revision: int, services: Iterable[Service], instances: Iterable[Instance]
    ) -> MeshState:
        """Index ``services`` by name and ``instances`` by service, both sorted."""
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
        )

    def instances_of(self, service: str) -> tuple[Instance, ...]:
        return self.instances.get(service, ())

    def healthy_instances_of(self, service: str) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances_of(service) if i.healthy)
