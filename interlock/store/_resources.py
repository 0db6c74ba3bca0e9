"""Statements on the ``resources`` table (policy objects), inside the caller's transaction.

Lists are sorted in Python by (kind, namespace, name) so both backends return one order.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from interlock.model.errors import FieldError, NotFound
from interlock.model.frozen import thaw
from interlock.model.resource import Resource, ResourceKey
from interlock.store._schema import resources


def _resource(row: RowMapping) -> Resource:
    return Resource(
        api_version=row["api_version"],
        kind=row["kind"],
        namespace=row["namespace"],
        name=row["name"],
        spec=dict(row["spec"]),
        labels=dict(row["labels"] or {}),
        annotations=dict(row["annotations"] or {}),
        generation=int(row["generation"]),
        created_revision=int(row["created_revision"]),
        revision=int(row["updated_revision"]),
    )


def _where(key: ResourceKey) -> Any:
    return sa.and_(
        resources.c.kind == key.kind,
        resources.c.namespace == key.namespace,
        resources.c.name == key.name,
    )


def _content(resource: Resource) -> dict[str, Any]:
    return {
        "api_version": resource.api_version,
        "spec": thaw(resource.spec),
        "labels": thaw(resource.labels),
        "annotations": thaw(resource.annotations),
    }


def fetch_resource(conn: Connection, key: ResourceKey) -> Resource | None:
    row = conn.execute(sa.select(resources).where(_where(key))).mappings().first()
    return None if row is None else _resource(row)


def fetch_resources(
    conn: Connection, kind: str | None = None, namespace: str | None = None
) -> list[Resource]:
    """The stored resources, optionally of one kind and/or namespace, sorted by key."""
    query = sa.select(resources)
    if kind is not None:
        query = query.where(resources.c.kind == kind)
    if namespace is not None:
        query = query.where(resources.c.namespace == namespace)
    rows = conn.execute(query).mappings().all()
    return sorted((_resource(r) for r in rows), key=lambda r: r.key)


def insert_resource(conn: Connection, resource: Resource) -> None:
    """Insert ``resource`` with its own generation and revisions."""
    conn.execute(
        sa.insert(resources).values(
            kind=resource.kind,
            namespace=resource.namespace,
            name=resource.name,
            generation=resource.generation,
            created_revision=resource.created_revision,
            updated_revision=resource.revision,
            **_content(resource),
        )
    )


def update_resource(conn: Connection, resource: Resource) -> None:
    conn.execute(
        sa.update(resources)
        .where(_where(resource.key))
        .values(
            generation=resource.generation,
            updated_revision=resource.revision,
            **_content(resource),
        )
    )


def delete_resource_row(conn: Connection, key: ResourceKey) -> None:
    conn.execute(sa.delete(resources).where(_where(key)))


def resource_not_found(key: ResourceKey) -> NotFound:
    """``errors`` names the field ``name``."""
    message = f"{key.kind} {key.namespace}/{key.name} does not exist"
    return NotFound(message, errors=(FieldError("name", message),))


def require_resource(conn: Connection, key: ResourceKey) -> Resource:
    found = fetch_resource(conn, key)
    if found is None:
        raise resource_not_found(key)
    return found
