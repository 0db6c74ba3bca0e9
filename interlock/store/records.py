"""What the store returns besides model values: write results and revision records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from interlock.model.policy.registry import ResourceKind
from interlock.model.resource import Resource

T = TypeVar("T")

#: ``Service``, ``Instance``, ``CertificateAuthority`` (a CA rotation step) or a policy kind
#: (``VirtualService``, ...).
ChangeKind = Literal["Service", "Instance", "CertificateAuthority"] | ResourceKind
ChangeOp = Literal["upsert", "delete"]
#: What applying a resource did (or, in a dry run, would do), in kubectl's words.
Outcome = Literal["created", "configured", "unchanged"]


@dataclass(frozen=True)
class WriteResult(Generic[T]):
    """The outcome of an upsert.

    ``value`` is what is stored now; ``revision`` the mesh revision after the call (the current
    one when nothing changed); ``created`` is true when the thing did not exist before;
    ``changed`` is false when the stored body was already identical (no new revision).
    """

    value: T
    revision: int
    created: bool
    changed: bool


@dataclass(frozen=True, order=True)
class Change:
    """One thing a revision changed: ``kind`` ``Service`` (name ``b``), ``Instance``
    (name ``b/b-1``) or a policy kind (name ``namespace/name``, e.g. ``VirtualService``
    ``default/reviews``); ``op`` ``upsert`` or ``delete``."""

    kind: ChangeKind
    name: str
    op: ChangeOp


@dataclass(frozen=True)
class RevisionInfo:
    """A committed revision: its number, when it committed (seconds since the epoch, from the
    writer's clock) and its changes in the order they were made."""

    rev: int
    committed_at: float
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class AppliedResource:
    """One resource of an apply: as stored after it (as it would be, in a dry run) and what
    happened to it."""

    resource: Resource
    outcome: Outcome


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of applying resources in one transaction: ``revision`` is the new revision
    if anything changed (the current one otherwise, and always in a dry run)."""

    revision: int
    items: tuple[AppliedResource, ...]
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return any(i.outcome != "unchanged" for i in self.items)
