"""The store: model values in, model values out, one revisioned transaction per write."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from interlock.model.errors import Conflict, FieldError, InvalidInput, NotFound
from interlock.model.policy.registry import ResourceKind
from interlock.model.resource import Resource, ResourceKey
from interlock.model.service import Instance, Service
from interlock.model.state import MeshState, StateChange
from interlock.store import _resources, _sql
from interlock.store._engine import Database, normalize_url, unavailable
from interlock.store._feed import PgListener, Subscribers
from interlock.store._migrate import upgrade
from interlock.store._validate import check_instance, check_resource, check_service
from interlock.store.records import (
    AppliedResource,
    ApplyResult,
    Change,
    RevisionInfo,
    WriteResult,
)
from interlock.store.security import SecurityStore

log = logging.getLogger(__name__)

#: Past this many changes since the last load, reading everything is as cheap as reading them.
INCREMENTAL_CHANGES = 500


class Snapshot:
    """A consistent read view of the store at one revision.

    Obtained from :meth:`Store.snapshot` and valid only inside its ``with`` block: every method
    reads the same snapshot, taken when the view was opened (``revision``).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.revision: int = _sql.current_revision(conn)

    def get_service(self, name: str) -> Service:
        """The service ``name``; :class:`NotFound` if there is none."""
        return _sql.require_service(self._conn, name)

    def list_services(self) -> list[Service]:
        """Every service, sorted by name."""
        return _sql.fetch_services(self._conn)

    def get_instance(self, service: str, instance_id: str) -> Instance:
        """One instance; :class:`NotFound` if it (or its service) does not exist."""
        return _sql.require_instance(self._conn, service, instance_id)

    def list_instances(self, service: str) -> list[Instance]:
        """The instances of ``service`` sorted by id; :class:`NotFound` if it does not exist."""
        _sql.require_service(self._conn, service)
        return _sql.fetch_instances(self._conn, service)

    def get_resource(self, key: ResourceKey) -> Resource:
        """One policy resource; :class:`NotFound` if there is none."""
        return _resources.require_resource(self._conn, key)

    def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[Resource]:
        """The policy resources (of ``kind`` and/or in ``namespace`` when given), sorted by
        kind, namespace and name."""
        return _resources.fetch_resources(self._conn, kind, namespace)

    def state(self) -> MeshState:
        """Everything, as the immutable :class:`MeshState` the translator reads."""
        return MeshState.build(
            self.revision,
            _sql.fetch_services(self._conn),
            _sql.fetch_instances(self._conn),
            _resources.fetch_resources(self._conn),
        )

    def state_since(self, previous: MeshState | None) -> tuple[MeshState, StateChange]:
        """The state at this snapshot's revision, and what changed since ``previous``.

        When only instances changed since ``previous`` (and not too many revisions passed),
        only the instances of the services they belong to are read and everything else is
        shared with ``previous``; otherwise everything is read.
        """
        if previous is not None and previous.revision == self.revision:
            return previous, StateChange(instances_only=True)
        changes = None
        if previous is not None and previous.revision < self.revision:
            changes = _sql.fetch_changes(
                self._conn, previous.revision, self.revision, INCREMENTAL_CHANGES
            )
        if previous is None or changes is None or any(c.kind != "Instance" for c in changes):
            return self.state(), StateChange.everything()
        touched = sorted({c.name.split("/", 1)[0] for c in changes})
        reloaded = {name: _sql.fetch_instances(self._conn, name) for name in touched}
        return (
            previous.with_instances(self.revision, reloaded),
            StateChange(instances_only=True, instance_services=frozenset(touched)),
        )


@dataclass
class _Write:
    conn: Connection
    revision: int
    changes: list[Change] = field(default_factory=list)


class Store:
    """The mesh's storage on SQLite or PostgreSQL.

    Every write is one transaction that also bumps the mesh revision and records what changed;
    a write that changes nothing creates no revision. Committed revisions are numbered 1, 2, 3…
    without gaps, even with concurrent writers in several processes. Every method raises only
    :class:`interlock.model.errors.InterlockError` subclasses: :class:`NotFound`,
    :class:`Conflict`, :class:`InvalidInput` (a model value the rules in
    :mod:`interlock.model.names` reject) and :class:`Unavailable` (the database cannot be
    used; nothing was changed — or, if the connection dropped during the commit, the write may
    have committed). Safe to share between threads.
    """

    def __init__(self, db: Database, channel: str | None) -> None:
        """Use :meth:`open`."""
        self._db = db
        self._channel = channel
        self._subscribers = Subscribers()
        self._listener: PgListener | None = None
        #: The CA, tokens and SVIDs (see :mod:`interlock.store.security`).
        self.security = SecurityStore(db, self._writing)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to ``url`` (``sqlite:///path.db``, ``sqlite://`` for memory, or
        ``postgresql+psycopg://…``) and upgrade its schema to the newest migration.

        Idempotent, and safe when several replicas open one database at once. Raises
        :class:`InvalidInput` for an unsupported URL, :class:`Unavailable` when the database
        cannot be reached or migrated.
        """
        db = Database(normalize_url(url))
        try:
            upgrade(db)
            if db.dialect != "postgresql":
                return cls(db, None)
            with db.read() as conn:
                schema = conn.execute(sa.select(sa.func.current_schema())).scalar_one()
            store = cls(db, _channel_for(str(schema)))
            store._start_listener()
            return store
        except BaseException:
            db.dispose()
            raise

    def _start_listener(self) -> None:
        assert self._channel is not None
        engine = self._db.engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        params: dict[str, Any] = {**cparams, "autocommit": True, "connect_timeout": 10}

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(*cargs, **params)

        listener = PgListener(connect, self._channel, self._subscribers.notify)
        try:
            listener.start()
        except psycopg.Error as e:
            raise unavailable(e) from e
        self._listener = listener

    def close(self) -> None:
        """Stop the change feed and close every connection. Idempotent."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._db.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- reads ------------------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A :class:`Snapshot`: several reads in one transaction, at one revision."""
        with self._db.read() as conn:
            yield Snapshot(conn)

    def revision(self) -> int:
        """The current mesh revision (0 for a new database)."""
        with self.snapshot() as snap:
            return snap.revision

    def get_service(self, name: str) -> Service:
        with self.snapshot() as snap:
            return snap.get_service(name)

    def list_services(self) -> list[Service]:
        with self.snapshot() as snap:
            return snap.list_services()

    def get_instance(self, service: str, instance_id: str) -> Instance:
        with self.snapshot() as snap:
            return snap.get_instance(service, instance_id)

    def list_instances(self, service: str) -> list[Instance]:
        with self.snapshot() as snap:
            return snap.list_instances(service)

    def get_resource(self, key: ResourceKey) -> Resource:
        with self.snapshot() as snap:
            return snap.get_resource(key)

    def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[Resource]:
        with self.snapshot() as snap:
            return snap.list_resources(kind, namespace)

    def load_state(self) -> MeshState:
        """Everything at one revision, read in one transaction (REPEATABLE READ on
        PostgreSQL), as an immutable :class:`MeshState`."""
        with self.snapshot() as snap:
            return snap.state()

    def load_state_since(self, previous: MeshState | None) -> tuple[MeshState, StateChange]:
        """Like :meth:`load_state`, reading only what changed since ``previous`` when that is
        cheaper (see :meth:`Snapshot.state_since`)."""
        with self.snapshot() as snap:
            return snap.state_since(previous)

    def get_revision(self, rev: int) -> RevisionInfo:
        """What revision ``rev`` changed and when; :class:`NotFound` if it never committed."""
        with self._db.read() as conn:
            info = _sql.fetch_revision(conn, rev)
        if info is None:
            raise NotFound(f"revision {rev} does not exist")
        return info

    # --- writes -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[_Write]:
        """A write transaction holding the write lock; ``revision`` is the new revision after
        the block if it recorded changes, else the current one."""
        with self._db.write() as conn:
            write = _Write(conn, _sql.current_revision(conn, lock=True))
            yield write
            if write.changes:
                write.revision = _sql.commit_revision(conn, write.changes, self._channel)
        if write.changes and self._channel is None:
            self._subscribers.notify(write.revision)

    def put_service(self, service: Service) -> WriteResult[Service]:
        """Create or replace ``service``. An identical body changes nothing (``changed`` is
        false and ``revision`` is the current one)."""
        check_service(service)
        with self._writing() as w:
            existing = _sql.fetch_service(w.conn, service.name)
            if existing is None:
                _sql.insert_service(w.conn, service)
            elif existing != service:
                _sql.update_service(w.conn, service)
            if existing != service:
                w.changes.append(Change("Service", service.name, "upsert"))
        return WriteResult(service, w.revision, created=existing is None, changed=bool(w.changes))

    def delete_service(self, name: str, *, cascade: bool = False) -> int:
        """Delete service ``name``; with ``cascade`` its instances too (in the same revision).

        :class:`NotFound` if it does not exist; :class:`Conflict` if it has instances and
        ``cascade`` is false. Returns the new revision.
        """
        with self._writing() as w:
            _sql.require_service(w.conn, name)
            ids = [i.instance_id for i in _sql.fetch_instances(w.conn, name)]
            if ids and not cascade:
                raise Conflict(
                    f"service {name!r} still has {len(ids)} instance(s); delete them first "
                    "or delete the service with cascade"
                )
            _sql.delete_instance_rows(w.conn, name, ids)
            _sql.delete_service_row(w.conn, name)
            w.changes.extend(Change("Instance", f"{name}/{i}", "delete") for i in ids)
            w.changes.append(Change("Service", name, "delete"))
        return w.revision

    def put_instance(self, instance: Instance) -> WriteResult[Instance]:
        """Create or replace ``instance``; :class:`NotFound` if its service does not exist.
        An identical registration changes nothing."""
        check_instance(instance)
        with self._writing() as w:
            _sql.require_service(w.conn, instance.service)
            existing = _sql.fetch_instance(w.conn, instance.service, instance.instance_id)
            if existing is None:
                _sql.insert_instance(w.conn, instance)
            elif not existing.same_as(instance):
                _sql.update_instance(w.conn, instance)
            if existing is None or not existing.same_as(instance):
                name = f"{instance.service}/{instance.instance_id}"
                w.changes.append(Change("Instance", name, "upsert"))
        return WriteResult(instance, w.revision, created=existing is None, changed=bool(w.changes))

    def delete_instance(self, service: str, instance_id: str) -> int:
        """Delete one instance; :class:`NotFound` if it (or its service) does not exist.
        Returns the new revision."""
        with self._writing() as w:
            _sql.require_instance(w.conn, service, instance_id)
            _sql.delete_instance_rows(w.conn, service, [instance_id])
            w.changes.append(Change("Instance", f"{service}/{instance_id}", "delete"))
        return w.revision

    def apply_resources(
        self, resources: Sequence[Resource], *, dry_run: bool = False
    ) -> ApplyResult:
        """Create or replace every resource in one transaction and one revision: all or none.

        A resource identical to the stored one (same apiVersion, spec, labels, annotations) is
        ``unchanged``; if every one is, no revision is created. A changed resource gets the
        next ``generation``. With ``dry_run`` nothing is written: the result says what would
        happen, at the current revision. Raises :class:`InvalidInput` for a resource the
        model's rules reject, or when two of them have the same kind, namespace and name.
        """
        seen: set[ResourceKey] = set()
        for index, resource in enumerate(resources):
            check_resource(resource)
            if resource.key in seen:
                message = f"{resource.ref} appears twice"
                raise InvalidInput(message, errors=(FieldError(f"[{index}]", message),))
            seen.add(resource.key)
        if dry_run:
            with self._db.read() as conn:
                revision = _sql.current_revision(conn)
                planned = _plan(conn, resources, revision + 1)
            return ApplyResult(revision, tuple(planned), dry_run=True)
        with self._writing() as w:
            planned = _plan(w.conn, resources, w.revision + 1)
            for applied in planned:
                if applied.outcome == "created":
                    _resources.insert_resource(w.conn, applied.resource)
                elif applied.outcome == "configured":
                    _resources.update_resource(w.conn, applied.resource)
                else:
                    continue
                w.changes.append(_change(applied.resource.key, "upsert"))
        return ApplyResult(w.revision, tuple(planned))

    def delete_resource(self, key: ResourceKey) -> int:
        """Delete one policy resource; :class:`NotFound` if it does not exist. Returns the new
        revision."""
        with self._writing() as w:
            _resources.require_resource(w.conn, key)
            _resources.delete_resource_row(w.conn, key)
            w.changes.append(_change(key, "delete"))
        return w.revision

    # --- change feed ------------------------------------------------------------------

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(revision)`` after every committed write that changed something.

        SQLite: called in the writing thread right after its commit. PostgreSQL: called from
        this store's listener thread for every write by any replica on the same database and
        schema (in commit order), and once with the current revision after the listener
        reconnects. Callbacks may run on any thread, must be quick and must not raise (an
        exception is logged and ignored). Returns a function that unsubscribes.
        """
        return self._subscribers.add(callback)


def _plan(
    conn: Connection, resources: Sequence[Resource], next_revision: int
) -> list[AppliedResource]:
    """What storing ``resources`` at ``next_revision`` does to each, given what is stored."""
    planned: list[AppliedResource] = []
    for resource in resources:
        existing = _resources.fetch_resource(conn, resource.key)
        if existing is None:
            stored = replace(
                resource, generation=1, created_revision=next_revision, revision=next_revision
            )
            planned.append(AppliedResource(stored, "created"))
        elif existing.same_content(resource):
            planned.append(AppliedResource(existing, "unchanged"))
        else:
            stored = replace(
                resource,
                generation=existing.generation + 1,
                created_revision=existing.created_revision,
                revision=next_revision,
            )
            planned.append(AppliedResource(stored, "configured"))
    return planned


def _change(key: ResourceKey, op: Literal["upsert", "delete"]) -> Change:
    return Change(cast(ResourceKind, key.kind), f"{key.namespace}/{key.name}", op)


def _channel_for(schema: str) -> str:
    """The NOTIFY channel of one schema's store (a channel name is at most 63 bytes)."""
    channel = f"interlock:{schema}"
    if len(channel.encode()) > 63:
        channel = "interlock:" + hashlib.sha256(schema.encode()).hexdigest()[:32]
    return channel
