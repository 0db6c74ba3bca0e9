"""A stored policy resource: an Istio-style object (apiVersion, kind, metadata, spec).

:class:`Resource` is kind-agnostic: its ``spec`` is the deep-frozen JSON the user wrote (after
validation). The typed view of a spec, and which kinds exist, live in
:mod:`interlock.model.policy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interlock.model.frozen import EMPTY_MAP, FrozenMap, freeze, thaw


@dataclass(frozen=True, order=True)
class ResourceKey:
    """What names a resource: its kind (``VirtualService``), namespace and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        """``VirtualService/default/reviews`` (the form :class:`Problem` uses)."""
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Resource:
    """One policy object.

    ``spec``, ``labels`` and ``annotations`` are deep-frozen (see :mod:`interlock.model.frozen`).
    ``generation`` counts changes to the stored content (1 when created), ``created_revision``
    is the mesh revision that created it and ``revision`` the one that last changed it; all
    three are 0 for a resource not (yet) stored.
    """

    api_version: str
    kind: str
    namespace: str
    name: str
    spec: Mapping[str, Any] = field(default_factory=lambda: EMPTY_MAP)
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAP)
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAP)
    generation: int = 0
    created_revision: int = 0
    revision: int = 0

    def __post_init__(self) -> None:
        for name in ("spec", "labels", "annotations"):
            value = getattr(self, name)
            if not isinstance(value, FrozenMap):
                object.__setattr__(self, name, freeze(value))

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """``Kind/namespace/name``."""
        return str(self.key)

    @property
    def group(self) -> str:
        """The API group of ``api_version`` (``networking.istio.io``)."""
        return self.api_version.partition("/")[0]

    def same_content(self, other: Resource) -> bool:
        """True when ``other`` would store exactly what this one does (bookkeeping aside)."""
        return (
            self.key == other.key
            and self.api_version == other.api_version
            and self.spec == other.spec
            and self.labels == other.labels
            and self.annotations == other.annotations
        )

    def to_document(self) -> dict[str, Any]:
        """The resource as a plain Kubernetes-style object (JSON-ready)."""
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.generation:
            metadata["generation"] = self.generation
        if self.labels:
            metadata["labels"] = thaw(self.labels)
        if self.annotations:
            metadata["annotations"] = thaw(self.annotations)
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": metadata,
            "spec": thaw(self.spec),
        }
