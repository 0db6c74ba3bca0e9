"""What the store returns besides model values: write results and revision records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

ChangeKind = Literal["Service", "Instance"]
ChangeOp = Literal["upsert", "delete"]


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
    """One thing a revision changed: ``kind`` ``Service`` (name ``b``) or ``Instance``
    (name ``b/b-1``), ``op`` ``upsert`` or ``delete``."""

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
