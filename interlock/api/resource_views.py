"""Wire schemas of the resource routes: a resource as stored (Kubernetes style: apiVersion,
kind, metadata, spec) plus the ``problems`` other resources cause it, and what a write did."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from interlock.model.frozen import thaw
from interlock.model.problem import Problem
from interlock.model.resource import Resource
from interlock.store import AppliedResource


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ProblemView(_Out):
    """A cross-resource problem: ``error`` — part of the resource cannot take effect;
    ``warning`` — probably a mistake, or waiting for something not registered yet."""

    field: str
    message: str
    severity: Literal["warning", "error"]


class MetadataView(_Out):
    name: str
    namespace: str
    generation: int = Field(description="counts changes to the stored content (1 when created)")
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ResourceView(_Out):
    """A resource as stored, and the problems found with it in the current mesh."""

    apiVersion: str
    kind: str
    metadata: MetadataView
    spec: dict[str, Any]
    problems: list[ProblemView]

    @classmethod
    def of(cls, resource: Resource, problems: Iterable[Problem] = ()) -> ResourceView:
        return cls(**_fields(resource, problems))


def _fields(resource: Resource, problems: Iterable[Problem]) -> dict[str, Any]:
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": MetadataView(
            name=resource.name,
            namespace=resource.namespace,
            generation=resource.generation,
            labels=thaw(resource.labels) or None,
            annotations=thaw(resource.annotations) or None,
        ),
        "spec": thaw(resource.spec),
        "problems": [
            ProblemView(field=p.field, message=p.message, severity=p.severity.value)
            for p in problems
        ],
    }


Result = Literal["created", "configured", "unchanged"]


class ResourceResponse(ResourceView):
    """One resource and the mesh revision it was read at."""

    revision: int


class ResourceWritten(ResourceResponse):
    """A PUT's outcome: ``revision`` after the write (the current one if nothing changed)."""

    result: Result
    dryRun: bool = False


class AppliedView(ResourceView):
    result: Result


class ApplyResponse(_Out):
    """A POST's outcome: one item per document, in order."""

    revision: int
    dryRun: bool
    items: list[AppliedView]


class ResourceList(_Out):
    revision: int
    items: list[ResourceView]


def applied_views(
    items: Iterable[AppliedResource], problems: Mapping[str, tuple[Problem, ...]]
) -> list[AppliedView]:
    return [
        AppliedView(result=i.outcome, **_fields(i.resource, problems.get(i.resource.ref, ())))
        for i in items
    ]
