"""The health half of the store: instances' checks, proxy liveness leases and the sweep.

Reached as ``Store.health``. Everything that changes whether an instance is routable (see
:mod:`interlock.model.health`) is an ``Instance`` change of a mesh revision, so it takes the
incremental path to every proxy like a registration. What only keeps liveness evidence —
leases, the replica's own lease, heartbeat deadlines — is written without a revision.

**Liveness across replicas.** A proxy's streams live on one replica. Each replica keeps a
lease of its own (``replicas``: renewed while it runs) and, per proxy token, a row saying it
holds a stream of that token (``connected``) or, once the last one ended, until when the
proxy is given to come back (``expires_at``: the end plus the instance TTL). Issuing a proxy
token leaves such a row too (replica ``""``), so a proxy that never connects is noticed.
An instance's proxy is *held* while some replica whose own lease is current holds a stream of
one of its active tokens, and *within grace* while some ended or issued lease has not
expired. Every replica sweeps: an instance with leases that is neither held nor within grace
gets its :attr:`~interlock.model.health.Check.PROXY` check failed; a held one gets it cleared.
A write re-reads the leases in its own transaction, so replicas that sweep together change
an instance once. Lease writes are batched by the caller (one transaction per sweep interval
for every connect and disconnect of that interval), never one per stream or per heartbeat.

Times are the replicas' wall clocks (``time.time``): keep them in sync (NTP), to well within
the instance TTL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from interlock.model import health
from interlock.model.errors import Conflict, FieldError
from interlock.model.service import Instance
from interlock.store import _sql
from interlock.store._batch import Finish, GroupCommit, Operation, Write
from interlock.store._engine import Database
from interlock.store._health_schema import proxy_leases, replicas
from interlock.store._schema import instances
from interlock.store._security_schema import tokens
from interlock.store.records import Change, WriteResult

InstanceKey = tuple[str, str]
"""(service, instance id)"""

#: Leases and replicas whose time ended this long ago are deleted by :meth:`HealthStore.prune`.
PRUNE_AFTER = 3600.0


@dataclass(frozen=True)
class SweepResult:
    """What one sweep changed: instances whose proxy went down or came back, and those that
    missed their heartbeat (each at most once), and the revision that carries them (or the
    current one when nothing changed)."""

    proxy_down: tuple[InstanceKey, ...] = ()
    proxy_up: tuple[InstanceKey, ...] = ()
    ttl_missed: tuple[InstanceKey, ...] = ()
    revision: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.proxy_down or self.proxy_up or self.ttl_missed)


def start_lease(conn: Connection, token_id: str, expires_at: float) -> None:
    """In ``conn``'s transaction: give a just-issued proxy token's proxy until ``expires_at``
    to connect (the lease of replica ``""``)."""
    _put_leases(conn, "", {token_id: (False, expires_at)})


_CHUNK = 500


def _put_leases(conn: Connection, replica: str, leases: Mapping[str, tuple[bool, float]]) -> None:
    """Replace ``replica``'s leases of these tokens (token → connected, expires_at): one
    delete and one multi-row insert per chunk, not a statement per token (a replica may
    record thousands of connects at once, after a restart)."""
    items = sorted(leases.items())
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        conn.execute(
            sa.delete(proxy_leases).where(
                proxy_leases.c.replica == replica,
                proxy_leases.c.token_id.in_([token_id for token_id, _ in chunk]),
            )
        )
        conn.execute(
            sa.insert(proxy_leases),
            [
                {"token_id": t, "replica": replica, "connected": c, "expires_at": e}
                for t, (c, e) in chunk
            ],
        )


class HealthStore:
    """See the module docstring. Safe to share between threads; raises only
    :class:`~interlock.model.errors.InterlockError` subclasses."""

    def __init__(self, db: Database, group: GroupCommit, clock: Callable[[], float]) -> None:
        """Built by :class:`~interlock.store.Store`; ``clock`` is its wall clock."""
        self._db = db
        self._group = group
        self._clock = clock

    # --- checks reported through the API ------------------------------------------------

    def heartbeat(
        self, service: str, instance_id: str, *, in_namespace: str | None = None
    ) -> WriteResult[Instance]:
        """A heartbeat of an instance registered with a ``ttl``: its next one is due within
        the ttl from now, and a missed one is forgiven. :class:`Conflict` (field ``ttl``) for
        an instance without a ttl; :class:`NotFound`; :class:`Forbidden` (``in_namespace``).
        Only a change of health is a revision."""
        return self._group.run(self._heartbeat(service, instance_id, in_namespace))

    async def heartbeat_async(
        self, service: str, instance_id: str, *, in_namespace: str | None = None
    ) -> WriteResult[Instance]:
        """:meth:`heartbeat` for a caller on an event loop."""
        op = self._heartbeat(service, instance_id, in_namespace)
        return await asyncio.wrap_future(self._group.submit(op))

    def _heartbeat(
        self, service: str, instance_id: str, in_namespace: str | None
    ) -> Operation[WriteResult[Instance]]:
        def op(w: Write) -> Finish[WriteResult[Instance]]:
            instance = _confined_instance(w.conn, service, instance_id, in_namespace)
            if instance.ttl is None:
                message = (
                    f"instance {instance_id!r} of service {service!r} has no ttl: register it "
                    'with one ("ttl": "30s") to send heartbeats'
                )
                raise Conflict(message, errors=(FieldError("ttl", message),))
            now = self._clock()
            w.conn.execute(
                sa.update(instances)
                .where(_key(service, instance_id))
                .values(heartbeat_deadline=now + instance.ttl)
            )
            after = _set_check(w, instance, health.Check.TTL, None, now, health.HEARTBEAT)
            return _result(after, after is not instance)

        return op

    def report_app(
        self,
        service: str,
        instance_id: str,
        failing: str | None,
        *,
        in_namespace: str | None = None,
    ) -> WriteResult[Instance]:
        """The verdict of an instance's app probe: ``failing`` is why it fails, or None when
        it passes. :class:`NotFound`; :class:`Forbidden` (``in_namespace``). Only a change is
        a revision."""
        return self._group.run(self._report_app(service, instance_id, failing, in_namespace))

    async def report_app_async(
        self,
        service: str,
        instance_id: str,
        failing: str | None,
        *,
        in_namespace: str | None = None,
    ) -> WriteResult[Instance]:
        """:meth:`report_app` for a caller on an event loop."""
        op = self._report_app(service, instance_id, failing, in_namespace)
        return await asyncio.wrap_future(self._group.submit(op))

    def _report_app(
        self, service: str, instance_id: str, failing: str | None, in_namespace: str | None
    ) -> Operation[WriteResult[Instance]]:
        def op(w: Write) -> Finish[WriteResult[Instance]]:
            instance = _confined_instance(w.conn, service, instance_id, in_namespace)
            reason = None if failing is None else failing[: health.MAX_REASON]
            now = self._clock()
            after = _set_check(w, instance, health.Check.APP, reason, now, health.APP_PASSING)
            return _result(after, after is not instance)

        return op

    # --- liveness leases (not revisions) ------------------------------------------------------

    def record_leases(
        self,
        replica: str,
        *,
        started_at: float,
        until: float | None = None,
        connected: Collection[str] = (),
        disconnected: Mapping[str, float] | None = None,
    ) -> None:
        """One replica's liveness evidence, in one transaction: its own lease renewed to
        ``until`` (when given), the tokens of which it now holds a stream (``connected``)
        and those whose last stream ended (``disconnected``: token → when their grace ends)."""

        def op(w: Write) -> Finish[None]:
            if until is not None:
                where = replicas.c.replica == replica
                renewed = w.conn.execute(sa.update(replicas).where(where).values(expires_at=until))
                if renewed.rowcount == 0:
                    w.conn.execute(
                        sa.insert(replicas).values(
                            replica=replica, started_at=started_at, expires_at=until
                        )
                    )
            now = self._clock()
            leases = {token_id: (True, now) for token_id in connected}
            leases.update((t, (False, until)) for t, until in (disconnected or {}).items())
            _put_leases(w.conn, replica, leases)
            return _nothing

        self._group.run(op)

    def prune(self, now: float, keep: float = PRUNE_AFTER) -> None:
        """Delete what no sweep needs any more: leases of revoked or deleted tokens, leases
        and replicas whose time ended ``keep`` seconds before ``now``, and the connected
        leases of replicas that are gone."""
        old = now - keep

        def op(w: Write) -> Finish[None]:
            active = sa.select(tokens.c.token_id).where(tokens.c.revoked_at.is_(None))
            w.conn.execute(sa.delete(proxy_leases).where(proxy_leases.c.token_id.not_in(active)))
            w.conn.execute(
                sa.delete(proxy_leases).where(
                    proxy_leases.c.connected == sa.false(), proxy_leases.c.expires_at < old
                )
            )
            w.conn.execute(sa.delete(replicas).where(replicas.c.expires_at < old))
            w.conn.execute(
                sa.delete(proxy_leases).where(
                    proxy_leases.c.connected == sa.true(),
                    proxy_leases.c.replica.not_in(sa.select(replicas.c.replica)),
                )
            )
            return _nothing

        self._group.run(op)

    # --- the sweep ------------------------------------------------------------------------

    def sweep(
        self,
        now: float,
        *,
        judge_proxies: bool = True,
        started_at: float = 0.0,
        since: float | None = None,
    ) -> SweepResult:
        """Apply what the leases and heartbeat deadlines say at ``now`` (see the module
        docstring): fail the proxy check of instances neither held nor within grace (only
        with ``judge_proxies``: a replica that just started gives proxies time to come back
        first), clear it for held ones, and fail the ttl check of instances whose heartbeat
        is late — but not before they had their ttl since ``started_at`` (this replica's
        start) to send one. With ``since`` (the time of the caller's last full or windowed
        sweep), only proxies whose leases ended after it, or that are down, are judged:
        that is what a sweep every second may cost. Reads first; writes only when something
        is to change."""
        with self._db.read() as conn:
            found = _verdicts(conn, now, judge_proxies, started_at, since)
            if not any(found):
                return SweepResult(revision=_sql.current_revision(conn))

        def op(w: Write) -> Finish[SweepResult]:
            down, up, missed = _verdicts(w.conn, now, judge_proxies, started_at, since)
            proxy, ttl = health.Check.PROXY, health.Check.TTL
            for instance in _fetch(w.conn, down):
                _set_check(w, instance, proxy, health.proxy_down_reason(), now, "")
            for instance in _fetch(w.conn, up):
                _set_check(w, instance, proxy, None, now, health.PROXY_RECONNECTED)
            for instance in _fetch(w.conn, missed):
                _set_check(w, instance, ttl, health.ttl_missed_reason(instance.ttl), now, "")
            return lambda revision: SweepResult(
                tuple(down), tuple(up), tuple(missed), revision=revision
            )

        return self._group.run(op)


def _nothing(_revision: int) -> None:
    return None


def _key(service: str, instance_id: str) -> sa.ColumnElement[bool]:
    return (instances.c.service == service) & (instances.c.instance_id == instance_id)


def _confined_instance(
    conn: Connection, service: str, instance_id: str, in_namespace: str | None
) -> Instance:
    found = _sql.require_service(conn, service)
    _sql.confined(service, found.namespace, in_namespace)
    return _sql.require_instance(conn, service, instance_id)


def _result(instance: Instance, changed: bool) -> Finish[WriteResult[Instance]]:
    return lambda revision: WriteResult(instance, revision, created=False, changed=changed)


def _set_check(
    w: Write,
    instance: Instance,
    check: health.Check,
    failing: str | None,
    now: float,
    why: str,
) -> Instance:
    """``instance`` with ``check`` failing for ``failing`` (or passing: None), stored (with an
    ``Instance`` change) when that changes its health; else ``instance`` itself."""
    checks = dict(instance.health.failing)
    if failing is None:
        checks.pop(check, None)
    else:
        checks[check] = failing
    if checks == dict(instance.health.failing):
        return instance
    settled = health.settle(instance.health, instance.routable, instance.healthy, checks, now, why)
    w.conn.execute(
        sa.update(instances)
        .where(_key(instance.service, instance.instance_id))
        .values(
            proxy_down=health.Check.PROXY in checks,
            app_failing=checks.get(health.Check.APP),
            ttl_missed=health.Check.TTL in checks,
            health_reason=settled.reason,
            health_since=settled.since,
        )
    )
    w.changes.append(Change("Instance", f"{instance.service}/{instance.instance_id}", "upsert"))
    return replace(instance, health=settled)


def _fetch(conn: Connection, keys: Iterable[InstanceKey]) -> list[Instance]:
    by_service: dict[str, list[str]] = {}
    for service, instance_id in keys:
        by_service.setdefault(service, []).append(instance_id)
    found: list[Instance] = []
    for service, ids in sorted(by_service.items()):
        found.extend(_sql.fetch_instances_direct(conn, service, sorted(ids)))
    return sorted(found, key=lambda i: (i.service, i.instance_id))


def _verdicts(
    conn: Connection, now: float, judge_proxies: bool, started_at: float, since: float | None
) -> tuple[list[InstanceKey], list[InstanceKey], list[InstanceKey]]:
    """(proxy down, proxy back up, heartbeat missed) at ``now``: only instances whose stored
    check says otherwise. With ``since``, only the proxies that can have changed are judged
    (see :func:`_candidates`); without, every proxy with a lease."""
    if since is None:
        rows = _judged(conn, now, judge_proxies, None)
    else:
        keys = sorted(_candidates(conn, now, since, judge_proxies))
        rows = []
        for start in range(0, len(keys), 200):
            rows += _judged(conn, now, judge_proxies, keys[start : start + 200])
    down = sorted((r.service, r.instance_id) for r in rows if not r.proxy_down)
    up = sorted((r.service, r.instance_id) for r in rows if r.proxy_down)
    missed = conn.execute(
        sa.select(instances.c.service, instances.c.instance_id).where(
            instances.c.heartbeat_deadline < now,
            instances.c.ttl.is_not(None),
            instances.c.ttl_missed == sa.false(),
            instances.c.ttl + started_at < now,
        )
    ).all()
    return down, up, sorted((r.service, r.instance_id) for r in missed)


def _candidates(conn: Connection, now: float, since: float, judge: bool) -> set[InstanceKey]:
    """The instances whose proxy check can have changed since ``since``: those whose proxy is
    down (it may be back), and — when judging — those with a lease that ended in between
    (its own time, or its replica's). Each is found through an index, so a sweep that finds
    nothing to do reads next to nothing, however many proxies there are."""
    found = {
        (r.service, r.instance_id)
        for r in conn.execute(
            sa.select(instances.c.service, instances.c.instance_id).where(
                instances.c.proxy_down == sa.true()
            )
        )
    }
    if not judge:
        return found
    ended = sa.union(
        sa.select(proxy_leases.c.token_id).where(
            proxy_leases.c.expires_at > since,
            proxy_leases.c.expires_at <= now,
            proxy_leases.c.connected == sa.false(),
        ),
        sa.select(proxy_leases.c.token_id)
        .join(replicas, replicas.c.replica == proxy_leases.c.replica)
        .where(
            replicas.c.expires_at > since,
            replicas.c.expires_at <= now,
            proxy_leases.c.connected == sa.true(),
        ),
    ).subquery()
    rows = conn.execute(
        sa.select(tokens.c.service, tokens.c.instance_id).where(
            tokens.c.token_id.in_(sa.select(ended.c.token_id))
        )
    )
    found.update((r.service, r.instance_id) for r in rows)
    return found


def _judged(
    conn: Connection, now: float, judge_proxies: bool, keys: list[InstanceKey] | None
) -> list[Any]:
    """The instances (among ``keys``, or all with a lease) whose proxy check is wrong at
    ``now``: ``service``, ``instance_id`` and the stored ``proxy_down`` of each."""
    held = sa.func.max(
        sa.case(
            (sa.and_(proxy_leases.c.connected == sa.true(), replicas.c.expires_at > now), 1),
            else_=0,
        )
    )
    grace = sa.func.max(
        sa.case(
            (sa.and_(proxy_leases.c.connected == sa.false(), proxy_leases.c.expires_at > now), 1),
            else_=0,
        )
    )
    proxy_down = instances.c.proxy_down
    wrong = sa.and_(proxy_down == sa.true(), held == 1)
    if judge_proxies:
        wrong = sa.or_(wrong, sa.and_(proxy_down == sa.false(), held == 0, grace == 0))
    joined = (
        proxy_leases.join(tokens, tokens.c.token_id == proxy_leases.c.token_id)
        .join(
            instances,
            (instances.c.service == tokens.c.service)
            & (instances.c.instance_id == tokens.c.instance_id),
        )
        .outerjoin(replicas, replicas.c.replica == proxy_leases.c.replica)
    )
    query = sa.select(instances.c.service, instances.c.instance_id, proxy_down).select_from(joined)
    query = query.where(tokens.c.revoked_at.is_(None))
    if keys is not None:
        query = query.where(sa.tuple_(tokens.c.service, tokens.c.instance_id).in_(keys))
    grouped = query.group_by(instances.c.service, instances.c.instance_id, proxy_down)
    return list(conn.execute(grouped.having(wrong)).all())
