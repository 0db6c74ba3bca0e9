"""The store: model values in, model values out, revisioned writes committed in groups."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from operator import attrgetter
from types import TracebackType
from typing import Any, Literal, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from interlock.model import health
from interlock.model.errors import Conflict, FieldError, InvalidInput, NotFound
from interlock.model.policy.registry import ResourceKind
from interlock.model.resource import Resource, ResourceKey
from interlock.model.service import Instance, Service
from interlock.model.state import MeshState, StateChange
from interlock.store import _resources, _sql
from interlock.store._batch import Finish, GroupCommit, Operation, Write
from interlock.store._engine import DEFAULT_TIMEOUT_S, Database, normalize_url, unavailable
from interlock.store._feed import PgListener, Subscribers
from interlock.store._migrate import upgrade
from interlock.store._validate import check_instance, check_resource, check_service
from interlock.store.health import HealthStore
from interlock.store.records import (
    AppliedResource,
    ApplyResult,
    Change,
    RevisionInfo,
    WriteResult,
)
from interlock.store.security import SecurityStore, forget_instances

log = logging.getLogger(__name__)

_instance_id = attrgetter("instance_id")

#: Past this many changes since the last load, reading everything is as cheap as reading them
#: (each changed instance is read by its key; a full read decodes every row).
INCREMENTAL_CHANGES = 5000


class ReadView:
    """A consistent read view of the store at one revision.

    Obtained from :meth:`Store.read_view` and valid only inside its ``with`` block: every method
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

        When only instances changed since ``previous`` (and not too many changes were made),
        only the changed instances are read and everything else is shared with ``previous``
        (unchanged instances object for object); otherwise everything is read.
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
        # Read only the instances that changed and merge them into the previous lists.
        touched: dict[str, set[str]] = {}
        for c in changes:
            service, _, instance_id = c.name.partition("/")
            touched.setdefault(service, set()).add(instance_id)
        reloaded: dict[str, list[Instance]] = {}
        for service, ids in touched.items():
            # A state's instances are sorted by id: find each changed one by bisection.
            merged = list(previous.instances_of(service))
            for instance_id in ids:
                at = bisect.bisect_left(merged, instance_id, key=_instance_id)
                if at < len(merged) and merged[at].instance_id == instance_id:
                    del merged[at]
            for instance in _sql.fetch_instances_direct(self._conn, service, sorted(ids)):
                bisect.insort(merged, instance, key=_instance_id)
            reloaded[service] = merged
        return (
            previous.with_instances(self.revision, reloaded),
            StateChange(instances_only=True, instance_services=frozenset(touched)),
        )


class Store:
    """The mesh's storage on SQLite or PostgreSQL.

    Every write runs in a transaction that also bumps the mesh revision and records what
    changed; a write that changes nothing creates no revision. Writes that arrive while another
    is being committed are *grouped*: they share one transaction, one revision (recording all
    their changes, in order) and one commit, each in its own savepoint, so each still gets its
    own result or its own error and a failed write never affects the others (see
    :mod:`interlock.store._batch`). A result's ``revision`` is the committed revision that
    carries the write. Committed revisions are numbered 1, 2, 3… without gaps, even with
    concurrent writers in several processes. Every method raises only
    :class:`interlock.model.errors.InterlockError` subclasses: :class:`NotFound`,
    :class:`Conflict`, :class:`InvalidInput` (a model value the rules in
    :mod:`interlock.model.names` reject), :class:`Forbidden` (a write confined to one namespace,
    ``in_namespace``, that would touch a service of another; nothing was changed) and
    :class:`Unavailable` (the database cannot be used; nothing was changed — or, if the
    connection dropped during the commit, the write may have committed). Safe to share between
    threads.

    ``in_namespace`` (service and instance writes) confines a write to one namespace, checked in
    the write's own transaction: for a caller that may act only there (a registration token).
    """

    def __init__(self, db: Database, channel: str | None) -> None:
        """Use :meth:`open`."""
        self._db = db
        self._channel = channel
        self._subscribers = Subscribers()
        self._listener: PgListener | None = None
        # SQLite: the change feed is called by the writer right after each commit.
        self._group = GroupCommit(
            db, channel, self._subscribers.notify if channel is None else _ignore
        )
        #: The CA, tokens and SVIDs (see :mod:`interlock.store.security`).
        self.security = SecurityStore(db, self._group.run)
        #: The wall clock health is written with (a test may replace it).
        self.clock: Callable[[], float] = time.time
        #: Instances' checks, proxy liveness and the sweep (see :mod:`interlock.store.health`).
        self.health = HealthStore(db, self._group, self._now)

    def _now(self) -> float:
        return self.clock()

    @classmethod
    def open(cls, url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Store:
        """Connect to ``url`` (``sqlite:///path.db``, ``sqlite://`` for memory, or
        ``postgresql+psycopg://…``) and upgrade its schema to the newest migration. Every
        wait on the database is bounded by ``timeout`` seconds (see
        :mod:`interlock.store._engine`).

        Idempotent, and safe when several replicas open one database at once. Raises
        :class:`InvalidInput` for an unsupported URL, :class:`Unavailable` when the database
        cannot be reached or migrated.
        """
        db = Database(normalize_url(url), timeout)
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
        params: dict[str, Any] = {
            **cparams,
            "autocommit": True,
            "connect_timeout": self._db.connect_params()["connect_timeout"],
        }

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(*cargs, **params)

        listener = PgListener(connect, self._channel, self._subscribers.notify)
        try:
            listener.start()
        except psycopg.Error as e:
            raise unavailable(e) from e
        self._listener = listener

    def feed_problem(self) -> str | None:
        """Why the change feed is not running (None while it is: always on SQLite, where the
        writer itself announces each commit)."""
        if self._channel is None:
            return None
        listener = self._listener
        if listener is None:
            return "the change feed is stopped"
        if not listener.running:
            return "the change feed's listener thread has ended"
        return None

    def close(self) -> None:
        """Stop the change feed and close every connection. Idempotent."""
        self._group.close()
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
    def read_view(self) -> Iterator[ReadView]:
        """A :class:`ReadView`: several reads in one transaction, at one revision."""
        with self._db.read() as conn:
            yield ReadView(conn)

    def revision(self) -> int:
        """The current mesh revision (0 for a new database)."""
        with self.read_view() as view:
            return view.revision

    def get_service(self, name: str) -> Service:
        with self.read_view() as view:
            return view.get_service(name)

    def list_services(self) -> list[Service]:
        with self.read_view() as view:
            return view.list_services()

    def get_instance(self, service: str, instance_id: str) -> Instance:
        with self.read_view() as view:
            return view.get_instance(service, instance_id)

    def list_instances(self, service: str) -> list[Instance]:
        with self.read_view() as view:
            return view.list_instances(service)

    def get_resource(self, key: ResourceKey) -> Resource:
        with self.read_view() as view:
            return view.get_resource(key)

    def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[Resource]:
        with self.read_view() as view:
            return view.list_resources(kind, namespace)

    def load_state(self) -> MeshState:
        """Everything at one revision, read in one transaction (REPEATABLE READ on
        PostgreSQL), as an immutable :class:`MeshState`."""
        with self.read_view() as view:
            return view.state()

    def load_state_since(self, previous: MeshState | None) -> tuple[MeshState, StateChange]:
        """Like :meth:`load_state`, reading only what changed since ``previous`` when that is
        cheaper (see :meth:`ReadView.state_since`)."""
        with self.read_view() as view:
            return view.state_since(previous)

    def get_revision(self, rev: int) -> RevisionInfo:
        """What revision ``rev`` changed and when; :class:`NotFound` if it never committed."""
        with self._db.read() as conn:
            info = _sql.fetch_revision(conn, rev)
        if info is None:
            raise NotFound(f"revision {rev} does not exist")
        return info

    # --- writes -----------------------------------------------------------------------
    #
    # Every write is an operation run by the group committer (see interlock.store._batch):
    # concurrent writes share one transaction and one revision, each in its own savepoint.

    def put_service(
        self, service: Service, *, in_namespace: str | None = None
    ) -> WriteResult[Service]:
        """Create or replace ``service``. An identical body changes nothing (``changed`` is
        false and ``revision`` is the current one). With ``in_namespace``, :class:`Forbidden`
        unless both ``service`` and the service stored under its name (if any) are in it."""
        check_service(service)
        return self._group.run(_put_service(service, in_namespace))

    async def put_service_async(
        self, service: Service, *, in_namespace: str | None = None
    ) -> WriteResult[Service]:
        """:meth:`put_service` for a caller on an event loop (it waits without a thread)."""
        check_service(service)
        return await asyncio.wrap_future(self._group.submit(_put_service(service, in_namespace)))

    async def delete_service_async(self, name: str, *, cascade: bool = False) -> int:
        """:meth:`delete_service` for a caller on an event loop."""
        return await asyncio.wrap_future(self._group.submit(_delete_service(name, cascade)))

    def delete_service(self, name: str, *, cascade: bool = False) -> int:
        """Delete service ``name``; with ``cascade`` its instances too (in the same revision),
        revoking their proxy tokens and forgetting their SVIDs in the same transaction.

        :class:`NotFound` if it does not exist; :class:`Conflict` if it has instances and
        ``cascade`` is false. Returns the revision that carries the deletion.
        """
        return self._group.run(_delete_service(name, cascade))

    def put_instance(
        self, instance: Instance, *, in_namespace: str | None = None
    ) -> WriteResult[Instance]:
        """Create or replace ``instance``; :class:`NotFound` if its service does not exist.
        An identical registration changes nothing. With ``in_namespace``, :class:`Forbidden`
        unless its service is in that namespace."""
        check_instance(instance)
        return self._group.run(_put_instance(instance, in_namespace, self._now))

    async def put_instance_async(
        self, instance: Instance, *, in_namespace: str | None = None
    ) -> WriteResult[Instance]:
        """:meth:`put_instance` for a caller on an event loop (it waits without a thread)."""
        check_instance(instance)
        op = _put_instance(instance, in_namespace, self._now)
        return await asyncio.wrap_future(self._group.submit(op))

    def delete_instance(
        self, service: str, instance_id: str, *, in_namespace: str | None = None
    ) -> int:
        """Delete one instance, and in the same transaction revoke its proxy tokens and forget
        its SVID (so no token outlives its instance); :class:`NotFound` if it (or its service)
        does not exist; with ``in_namespace``, :class:`Forbidden` unless its service is in that
        namespace. Returns the revision that carries the deletion."""
        return self._group.run(_delete_instance(service, instance_id, in_namespace))

    async def delete_instance_async(
        self, service: str, instance_id: str, *, in_namespace: str | None = None
    ) -> int:
        """:meth:`delete_instance` for a caller on an event loop."""
        op = _delete_instance(service, instance_id, in_namespace)
        return await asyncio.wrap_future(self._group.submit(op))

    def apply_resources(
        self, resources: Sequence[Resource], *, dry_run: bool = False
    ) -> ApplyResult:
        """Create or replace every resource in one revision: all or none.

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

        def op(w: Write) -> Finish[ApplyResult]:
            planned = _plan(w.conn, resources, w.revision + 1)
            for applied in planned:
                if applied.outcome == "created":
                    _resources.insert_resource(w.conn, applied.resource)
                elif applied.outcome == "configured":
                    _resources.update_resource(w.conn, applied.resource)
                else:
                    continue
                w.changes.append(_change(applied.resource.key, "upsert"))
            return lambda revision: ApplyResult(revision, tuple(planned))

        return self._group.run(op)

    def delete_resource(self, key: ResourceKey) -> int:
        """Delete one policy resource; :class:`NotFound` if it does not exist. Returns the
        revision that carries the deletion."""

        def op(w: Write) -> Finish[int]:
            _resources.require_resource(w.conn, key)
            _resources.delete_resource_row(w.conn, key)
            w.changes.append(_change(key, "delete"))
            return _revision

        return self._group.run(op)

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


def _revision(revision: int) -> int:
    return revision


_confined = _sql.confined


def _put_service(service: Service, in_namespace: str | None) -> Operation[WriteResult[Service]]:
    def op(w: Write) -> Finish[WriteResult[Service]]:
        _confined(service.name, service.namespace, in_namespace)
        existing = _sql.fetch_service(w.conn, service.name)
        if existing is not None:
            _confined(service.name, existing.namespace, in_namespace)
        if existing is None:
            _sql.insert_service(w.conn, service)
        elif existing != service:
            _sql.update_service(w.conn, service)
        created, changed = existing is None, existing != service
        if changed:
            w.changes.append(Change("Service", service.name, "upsert"))
        return lambda revision: WriteResult(service, revision, created=created, changed=changed)

    return op


def _delete_service(name: str, cascade: bool) -> Operation[int]:
    def op(w: Write) -> Finish[int]:
        _sql.require_service(w.conn, name)
        ids = [i.instance_id for i in _sql.fetch_instances(w.conn, name)]
        if ids and not cascade:
            message = (
                f"service {name!r} still has {len(ids)} instance(s); delete them first "
                "or delete the service with cascade"
            )
            raise Conflict(message, errors=(FieldError("cascade", message),))
        _sql.delete_instance_rows(w.conn, name, ids)
        forget_instances(w.conn, name, ids)
        _sql.delete_service_row(w.conn, name)
        w.changes.extend(Change("Instance", f"{name}/{i}", "delete") for i in ids)
        w.changes.append(Change("Service", name, "delete"))
        return _revision

    return op


def _put_instance(
    instance: Instance, in_namespace: str | None, clock: Callable[[], float]
) -> Operation[WriteResult[Instance]]:
    def op(w: Write) -> Finish[WriteResult[Instance]]:
        namespace, existing = _sql.fetch_registration(
            w.conn, instance.service, instance.instance_id
        )
        if namespace is None:
            raise _sql.service_not_found(instance.service)
        _confined(instance.service, namespace, in_namespace)
        stored = instance if existing is None else existing
        if existing is None or not existing.same_as(instance):
            stored, deadline = registered(existing, instance, clock())
            if existing is None:
                _sql.insert_instance_direct(w.conn, stored, deadline)
            else:
                _sql.update_instance_direct(w.conn, stored, deadline)
        created = existing is None
        changed = existing is None or not existing.same_as(instance)
        if changed:
            name = f"{instance.service}/{instance.instance_id}"
            w.changes.append(Change("Instance", name, "upsert"))
        return lambda revision: WriteResult(stored, revision, created=created, changed=changed)

    return op


def registered(
    existing: Instance | None, instance: Instance, now: float
) -> tuple[Instance, float | None]:
    """``instance`` as stored by a registration that changes ``existing`` (None: a new one)
    at ``now``, and the deadline of its next heartbeat when that restarts (None: unchanged).

    The checks are runtime state a registration keeps, except that a new or changed ``ttl``
    starts a new period (its missed heartbeat is forgotten)."""
    ttl_restarts = existing is None or existing.ttl != instance.ttl
    deadline = now + instance.ttl if instance.ttl is not None and ttl_restarts else None
    if existing is None:
        reason = health.REGISTERED if instance.healthy else health.REGISTERED_UNHEALTHY
        return replace(instance, health=health.Health({}, reason, now)), deadline
    failing = dict(existing.health.failing)
    if ttl_restarts:
        failing.pop(health.Check.TTL, None)
    why = health.NEW_TTL if instance.healthy == existing.healthy else health.REGISTERED_HEALTHY
    settled = health.settle(existing.health, existing.routable, instance.healthy, failing, now, why)
    return replace(instance, health=settled), deadline


def _delete_instance(service: str, instance_id: str, in_namespace: str | None) -> Operation[int]:
    def op(w: Write) -> Finish[int]:
        if in_namespace is not None:
            _confined(service, _sql.require_service(w.conn, service).namespace, in_namespace)
        _sql.require_instance(w.conn, service, instance_id)
        _sql.delete_instance_rows(w.conn, service, [instance_id])
        forget_instances(w.conn, service, [instance_id])
        w.changes.append(Change("Instance", f"{service}/{instance_id}", "delete"))
        return _revision

    return op


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


def _ignore(_revision: int) -> None:
    pass


def _change(key: ResourceKey, op: Literal["upsert", "delete"]) -> Change:
    return Change(cast(ResourceKind, key.kind), f"{key.namespace}/{key.name}", op)


def _channel_for(schema: str) -> str:
    """The NOTIFY channel of one schema's store (a channel name is at most 63 bytes)."""
    channel = f"interlock:{schema}"
    if len(channel.encode()) > 63:
        channel = "interlock:" + hashlib.sha256(schema.encode()).hexdigest()[:32]
    return channel
