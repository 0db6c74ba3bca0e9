"""Statements on one open connection, translating rows to model values and back.

The ``*_direct`` functions are the hot paths of registration: they skip SQLAlchemy's statement
building and compilation and hand fixed SQL to the DBAPI driver (:func:`driver_execute`).

Everything here runs inside a transaction opened by :class:`interlock.store._engine.Database`;
nothing commits. Lists are sorted in Python (not by the database's collation) so both backends
return the same order as :meth:`MeshState.build`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from interlock.model.errors import FieldError, Forbidden, NotFound
from interlock.model.health import Check, Health, proxy_down_reason, ttl_missed_reason
from interlock.model.service import HealthCheck, Instance, Service, ServiceProtocol
from interlock.store._schema import instances, mesh, revision_changes, revisions, services
from interlock.store.records import Change, RevisionInfo


def current_revision(conn: Connection, *, lock: bool = False) -> int:
    """The mesh revision; with ``lock`` the row stays locked until the transaction ends (the
    write lock on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds one)."""
    query = sa.select(mesh.c.revision).where(mesh.c.id == 1)
    if lock:
        query = query.with_for_update()
    return int(conn.execute(query).scalar_one())


def fetch_revision(conn: Connection, revision: int) -> RevisionInfo | None:
    committed_at = conn.execute(
        sa.select(revisions.c.committed_at).where(revisions.c.revision == revision)
    ).scalar_one_or_none()
    if committed_at is None:
        return None
    rows = conn.execute(
        sa.select(revision_changes.c.kind, revision_changes.c.name, revision_changes.c.op)
        .where(revision_changes.c.revision == revision)
        .order_by(revision_changes.c.seq)
    ).all()
    return RevisionInfo(
        rev=revision,
        committed_at=float(committed_at),
        changes=tuple(Change(kind=r.kind, name=r.name, op=r.op) for r in rows),
    )


def fetch_changes(conn: Connection, after: int, upto: int, limit: int) -> list[Change] | None:
    """Every change of the revisions after ``after`` up to ``upto``, in order; None when
    there are more than ``limit`` of them or a revision's record is missing."""
    if upto - after > limit:
        return None
    committed = conn.execute(
        sa.select(sa.func.count())
        .select_from(revisions)
        .where(revisions.c.revision > after, revisions.c.revision <= upto)
    ).scalar_one()
    if committed != upto - after:
        return None
    rows = conn.execute(
        sa.select(revision_changes.c.kind, revision_changes.c.name, revision_changes.c.op)
        .where(revision_changes.c.revision > after, revision_changes.c.revision <= upto)
        .order_by(revision_changes.c.revision, revision_changes.c.seq)
        .limit(limit + 1)
    ).all()
    if len(rows) > limit:
        return None
    return [Change(kind=r.kind, name=r.name, op=r.op) for r in rows]


# --- services ---------------------------------------------------------------------------


def _service(row: RowMapping) -> Service:
    check = row["health_check"]
    return Service(
        name=row["name"],
        namespace=row["namespace"],
        protocol=ServiceProtocol(row["protocol"]),
        port=int(row["port"]),
        health_check=None if check is None else HealthCheck(**check),
        export_to=tuple(row["export_to"] or ()),
    )


def _service_values(service: Service) -> dict[str, Any]:
    check = service.health_check
    return {
        "namespace": service.namespace,
        "protocol": service.protocol.value,
        "port": service.port,
        "health_check": None if check is None else dataclasses.asdict(check),
        "export_to": list(service.export_to) or None,
    }


def fetch_service(conn: Connection, name: str) -> Service | None:
    row = conn.execute(sa.select(services).where(services.c.name == name)).mappings().first()
    return None if row is None else _service(row)


def fetch_services(conn: Connection) -> list[Service]:
    rows = conn.execute(sa.select(services)).mappings().all()
    return sorted((_service(r) for r in rows), key=lambda s: s.name)


def insert_service(conn: Connection, service: Service) -> None:
    conn.execute(sa.insert(services).values(name=service.name, **_service_values(service)))


def update_service(conn: Connection, service: Service) -> None:
    conn.execute(
        sa.update(services)
        .where(services.c.name == service.name)
        .values(**_service_values(service))
    )


def delete_service_row(conn: Connection, name: str) -> None:
    conn.execute(sa.delete(services).where(services.c.name == name))


# --- instances --------------------------------------------------------------------------


def health_of(
    ttl: float | None,
    proxy_down: Any,
    app_failing: str | None,
    ttl_missed: Any,
    reason: str,
    since: float,
) -> Health:
    """An instance's :class:`Health` from its columns."""
    failing: dict[Check, str] = {}
    if proxy_down:
        failing[Check.PROXY] = proxy_down_reason()
    if app_failing is not None:
        failing[Check.APP] = app_failing
    if ttl_missed:
        failing[Check.TTL] = ttl_missed_reason(ttl)
    return Health(failing, reason, float(since))


def _ttl(value: Any) -> float | None:
    return None if value is None else float(value)


def _instance(row: RowMapping) -> Instance:
    ttl = _ttl(row["ttl"])
    return Instance(
        service=row["service"],
        instance_id=row["instance_id"],
        address=row["address"],
        port=int(row["port"]),
        labels=dict(row["labels"]),
        locality=row["locality"],
        healthy=bool(row["healthy"]),
        ttl=ttl,
        health=health_of(
            ttl,
            row["proxy_down"],
            row["app_failing"],
            row["ttl_missed"],
            row["health_reason"],
            row["health_since"],
        ),
        sidecar=bool(row["sidecar"]),
    )


def _sorted_instances(rows: Iterable[RowMapping]) -> list[Instance]:
    return sorted((_instance(r) for r in rows), key=lambda i: (i.service, i.instance_id))


def fetch_instance(conn: Connection, service: str, instance_id: str) -> Instance | None:
    row = (
        conn.execute(
            sa.select(instances).where(
                instances.c.service == service, instances.c.instance_id == instance_id
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _instance(row)


def fetch_instances(conn: Connection, service: str | None = None) -> list[Instance]:
    """The instances of ``service`` (every instance when ``None``), sorted."""
    query = sa.select(instances)
    if service is not None:
        query = query.where(instances.c.service == service)
    return _sorted_instances(conn.execute(query).mappings().all())


def delete_instance_rows(conn: Connection, service: str, instance_ids: Sequence[str]) -> None:
    if instance_ids:
        conn.execute(
            sa.delete(instances).where(
                instances.c.service == service, instances.c.instance_id.in_(instance_ids)
            )
        )


# --- the registration hot path, on the driver's connection -------------------------------
#
# A registration is a handful of tiny statements; built, cached and executed through
# SQLAlchemy Core each costs ~100 us of Python, twenty times the statement itself. These run
# the same SQL on the transaction's DB-API connection (psycopg also prepares them after a few
# uses). Driver errors are translated like SQLAlchemy's (see ``_engine.translated_errors``).

_INSTANCE_COLUMNS = (
    "service, instance_id, address, port, labels, locality, healthy, sidecar, ttl, "
    "proxy_down, app_failing, ttl_missed, health_reason, health_since"
)


@cache
def _pg(statement: str) -> str:
    return statement.replace("?", "%s")


def driver_execute(conn: Connection, statement: str, params: Sequence[Any] = ()) -> Any:
    """Run ``statement`` (``?`` placeholders) on ``conn``'s DB-API connection, in its
    transaction; returns the driver's cursor."""
    if conn.dialect.name == "postgresql":
        statement = _pg(statement)
    return conn.connection.driver_connection.execute(statement, params)  # type: ignore[union-attr]


def driver_executemany(conn: Connection, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """:func:`driver_execute` once per row of parameters."""
    if conn.dialect.name == "postgresql":
        with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.executemany(_pg(statement), rows)
    else:
        conn.connection.driver_connection.executemany(statement, rows)  # type: ignore[union-attr]


def lock_revision(conn: Connection) -> int:
    """:func:`current_revision` with ``lock``, on the driver's connection."""
    lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    row = driver_execute(conn, f"SELECT revision FROM mesh WHERE id = 1{lock}").fetchone()
    return int(row[0])


def record_revision(
    conn: Connection, current: int, changes: Sequence[Change], channel: str | None
) -> int:
    """Bump the mesh revision from ``current`` (read under the write lock the caller holds),
    record ``changes`` under the new one and (PostgreSQL) queue a NOTIFY on ``channel``, all
    in the caller's transaction; returns the new revision."""
    revision = current + 1
    driver_execute(conn, "UPDATE mesh SET revision = ? WHERE id = 1", (revision,))
    driver_execute(
        conn,
        "INSERT INTO revisions (revision, committed_at) VALUES (?, ?)",
        (revision, time.time()),
    )
    driver_executemany(
        conn,
        "INSERT INTO revision_changes (revision, seq, kind, name, op) VALUES (?, ?, ?, ?, ?)",
        [(revision, seq, c.kind, c.name, c.op) for seq, c in enumerate(changes)],
    )
    if channel is not None:
        driver_execute(conn, "SELECT pg_notify(?, ?)", (channel, str(revision)))
    return revision


def _labels_in(labels: Any) -> dict[str, str]:
    """A ``labels`` column as read by the driver: JSON text (SQLite) or decoded (psycopg)."""
    return dict(json.loads(labels) if isinstance(labels, str | bytes) else labels)


def _row_instance(row: Sequence[Any]) -> Instance:
    service, instance_id, address, port, labels, locality, healthy, sidecar, ttl, *health = row
    ttl = _ttl(ttl)
    return Instance(
        service=service,
        instance_id=instance_id,
        address=address,
        port=int(port),
        labels=_labels_in(labels),
        locality=locality,
        healthy=bool(healthy),
        ttl=ttl,
        health=health_of(ttl, *health),
        sidecar=bool(sidecar),
    )


def fetch_registration(
    conn: Connection, service: str, instance_id: str
) -> tuple[str | None, Instance | None]:
    """The namespace of ``service`` (None if it does not exist) and its instance
    ``instance_id`` (None if there is none), in one statement."""
    row = driver_execute(
        conn,
        "SELECT s.namespace, i.service, i.instance_id, i.address, i.port, i.labels, "
        "i.locality, i.healthy, i.sidecar, i.ttl, i.proxy_down, i.app_failing, i.ttl_missed, "
        "i.health_reason, i.health_since FROM services s LEFT JOIN instances i "
        "ON i.service = s.name AND i.instance_id = ? WHERE s.name = ?",
        (instance_id, service),
    ).fetchone()
    if row is None:
        return None, None
    return str(row[0]), None if row[1] is None else _row_instance(row[1:])


def fetch_instances_direct(
    conn: Connection, service: str, instance_ids: Sequence[str]
) -> list[Instance]:
    """The stored instances among ``instance_ids`` of ``service`` (any order)."""
    found: list[Instance] = []
    for start in range(0, len(instance_ids), 200):
        chunk = instance_ids[start : start + 200]
        marks = ", ".join("?" * len(chunk))
        cursor = driver_execute(
            conn,
            f"SELECT {_INSTANCE_COLUMNS} FROM instances "
            f"WHERE service = ? AND instance_id IN ({marks})",
            (service, *chunk),
        )
        found.extend(_row_instance(row) for row in cursor.fetchall())
    return found


def _instance_params(instance: Instance, heartbeat_deadline: float | None) -> tuple[Any, ...]:
    health = instance.health
    return (
        instance.address,
        instance.port,
        json.dumps(dict(instance.labels)),
        instance.locality,
        instance.healthy,
        instance.sidecar,
        instance.ttl,
        Check.PROXY in health.failing,
        health.failing.get(Check.APP),
        Check.TTL in health.failing,
        health.reason,
        health.since,
        heartbeat_deadline,
    )


def insert_instance_direct(
    conn: Connection, instance: Instance, heartbeat_deadline: float | None
) -> None:
    """Insert ``instance``, its health as it says, and the deadline of its first heartbeat."""
    driver_execute(
        conn,
        f"INSERT INTO instances ({_INSTANCE_COLUMNS}, heartbeat_deadline) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (instance.service, instance.instance_id, *_instance_params(instance, heartbeat_deadline)),
    )


def update_instance_direct(
    conn: Connection, instance: Instance, heartbeat_deadline: float | None
) -> None:
    """Replace the stored ``instance``: its registration and health, and its heartbeat
    deadline when ``heartbeat_deadline`` is not None (else the stored one stays)."""
    driver_execute(
        conn,
        "UPDATE instances SET address = ?, port = ?, labels = ?, locality = ?, healthy = ?, "
        "sidecar = ?, ttl = ?, proxy_down = ?, app_failing = ?, ttl_missed = ?, health_reason = ?, "
        "health_since = ?, heartbeat_deadline = COALESCE(?, heartbeat_deadline) "
        "WHERE service = ? AND instance_id = ?",
        (
            *_instance_params(instance, heartbeat_deadline),
            instance.service,
            instance.instance_id,
        ),
    )


# --- lookups that raise -----------------------------------------------------------------


def service_not_found(name: str) -> NotFound:
    """``errors`` names the field ``service``."""
    message = f"service {name!r} does not exist"
    return NotFound(message, errors=(FieldError("service", message),))


def instance_not_found(service: str, instance_id: str) -> NotFound:
    """``errors`` names the field ``instance_id``."""
    message = f"instance {instance_id!r} of service {service!r} does not exist"
    return NotFound(message, errors=(FieldError("instance_id", message),))


def confined(service: str, namespace: str, in_namespace: str | None) -> None:
    """:class:`Forbidden` (naming ``namespace``) when a write confined to ``in_namespace``
    would touch service ``service`` of ``namespace``."""
    if in_namespace is not None and namespace != in_namespace:
        message = f"service {service!r} is in namespace {namespace!r}, not {in_namespace!r}"
        raise Forbidden(message, errors=(FieldError("namespace", message),))


def require_service(conn: Connection, name: str) -> Service:
    service = fetch_service(conn, name)
    if service is None:
        raise service_not_found(name)
    return service


def require_instance(conn: Connection, service: str, instance_id: str) -> Instance:
    instance = fetch_instance(conn, service, instance_id)
    if instance is None:
        if fetch_service(conn, service) is None:
            raise service_not_found(service)
        raise instance_not_found(service, instance_id)
    return instance
