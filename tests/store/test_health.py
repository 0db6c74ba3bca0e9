"""Health in the store, on SQLite and PostgreSQL, on a clock the test moves: registrations,
heartbeats and ttls, app reports, and proxy liveness leases swept by one or several replicas.
Every change of health is an ``Instance`` change of a revision; liveness evidence is not."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from interlock.model import Conflict, Instance, Service
from interlock.model.health import Check
from interlock.model.identity import Token, TokenRole, new_token
from interlock.store import Store
from interlock.store.health import SweepResult

T0 = 1_000_000.0
TTL = 15.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(store: Store) -> Clock:
    clock = Clock()
    store.clock = clock
    store.put_service(Service("b"))
    return clock


def instance(store: Store, instance_id: str = "b-1") -> Instance:
    return store.get_instance("b", instance_id)


def issue(store: Store, instance_id: str, connect_by: float | None) -> str:
    token_id, _, digest = new_token(TokenRole.PROXY)
    asked = Token(token_id, TokenRole.PROXY, "b", "", instance_id, T0)
    store.security.issue_proxy_token(asked, digest, connect_by=connect_by)
    return token_id


def changes_of(store: Store, revision: int) -> list[tuple[str, str]]:
    return [(c.kind, c.name) for c in store.get_revision(revision).changes]


def test_a_registration_is_healthy_since_it_was_made_unless_it_says_otherwise(
    store: Store, clock: Clock
) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
    store.put_instance(Instance("b", "b-2", "10.0.0.2", 1, healthy=False))
    one, two = instance(store, "b-1"), instance(store, "b-2")
    assert (one.routable, one.health.reason, one.health.since) == (True, "registered", T0)
    assert (two.routable, two.health.reason) == (False, "registered with healthy: false")
    clock.now += 5
    store.put_instance(Instance("b", "b-2", "10.0.0.2", 1))
    two = instance(store, "b-2")
    assert (two.routable, two.health.reason, two.health.since) == (
        True,
        "registered with healthy: true",
        T0 + 5,
    )


def test_a_missed_heartbeat_makes_an_instance_unhealthy_until_the_next(
    store: Store, clock: Clock
) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1, ttl=30.0))
    assert store.health.sweep(T0 + 29).changed is False
    clock.now = T0 + 31
    swept = store.health.sweep(clock.now)
    assert swept.ttl_missed == (("b", "b-1"),)
    assert changes_of(store, swept.revision) == [("Instance", "b/b-1")]
    missed = instance(store)
    assert not missed.routable and Check.TTL in missed.health.failing
    assert missed.health.reason == "no heartbeat within its ttl of 30s"
    assert missed.health.since == T0 + 31
    assert store.health.sweep(T0 + 32).changed is False  # once

    clock.now = T0 + 40
    beat = store.health.heartbeat("b", "b-1")
    assert beat.changed and beat.value.routable and beat.revision == swept.revision + 1
    assert beat.value.health.reason == "a heartbeat arrived within its ttl"
    assert instance(store).health.since == T0 + 40
    again = store.health.heartbeat("b", "b-1")  # renews the deadline, no revision
    assert not again.changed and again.revision == beat.revision
    assert store.health.sweep(T0 + 69).changed is False
    assert store.health.sweep(T0 + 71).ttl_missed == (("b", "b-1"),)


def test_a_heartbeat_needs_a_ttl_and_a_new_ttl_starts_a_new_period(
    store: Store, clock: Clock
) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
    with pytest.raises(Conflict) as caught:
        store.health.heartbeat("b", "b-1")
    assert [e.field for e in caught.value.errors] == ["ttl"]
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1, ttl=10.0))
    clock.now = T0 + 11
    store.health.sweep(clock.now)
    assert not instance(store).routable
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1, ttl=10.0))  # the same: no change
    assert not instance(store).routable
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1, ttl=20.0))
    renewed = instance(store)
    assert renewed.routable and renewed.health.reason == "registered with a new ttl"
    assert store.health.sweep(T0 + 30).changed is False
    assert store.health.sweep(T0 + 32).changed is True


def test_a_replica_that_just_started_gives_heartbeats_their_ttl_first(
    store: Store, clock: Clock
) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1, ttl=10.0))
    # The control plane was down from T0 + 5 to T0 + 60: nobody could send a heartbeat.
    assert store.health.sweep(T0 + 65, started_at=T0 + 60).changed is False
    assert store.health.sweep(T0 + 71, started_at=T0 + 60).ttl_missed == (("b", "b-1"),)


def test_app_reports_fail_and_clear_the_app_check(store: Store, clock: Clock) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
    failing = store.health.report_app("b", "b-1", "GET /healthz: HTTP 503 (3 in a row)")
    assert failing.changed and not failing.value.routable
    assert failing.value.health.reason == "GET /healthz: HTTP 503 (3 in a row)"
    assert not store.health.report_app("b", "b-1", "GET /healthz: HTTP 503 (3 in a row)").changed
    clock.now += 7
    passing = store.health.report_app("b", "b-1", None)
    assert passing.changed and passing.value.routable
    assert (passing.value.health.reason, passing.value.health.since) == (
        "its app probe passes",
        T0 + 7,
    )


def test_a_proxy_that_never_connects_is_noticed_after_its_grace(store: Store, clock: Clock) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
    issue(store, "b-1", connect_by=T0 + TTL)
    assert store.health.sweep(T0 + TTL - 1).changed is False
    swept = store.health.sweep(T0 + TTL + 1)
    assert swept.proxy_down == (("b", "b-1"),)
    assert instance(store).health.failing.keys() == {Check.PROXY}
    # An instance no proxy token was issued for is not watched.
    store.put_instance(Instance("b", "b-2", "10.0.0.2", 1))
    assert store.health.sweep(T0 + 100).changed is False


def test_a_proxy_is_alive_while_a_replica_holds_its_stream_and_for_the_ttl_after(
    store: Store, clock: Clock
) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
    token = issue(store, "b-1", connect_by=T0 + TTL)
    store.health.record_leases("r1", started_at=T0, until=T0 + TTL, connected=[token])
    assert store.health.sweep(T0 + TTL + 1).proxy_down == (("b", "b-1"),)  # r1's lease ended
    store.health.record_leases("r1", started_at=T0, until=T0 + 100)
    swept = store.health.sweep(T0 + TTL + 2)
    assert swept.proxy_up == (("b", "b-1"),)
    assert instance(store).health.reason == "its proxy reconnected"
    # The last stream ends at T0 + 50: the proxy has the ttl to come back.
    store.health.record_leases("r1", started_at=T0, disconnected={token: T0 + 50 + TTL})
    assert store.health.sweep(T0 + 50 + TTL - 1).changed is False
    assert store.health.sweep(T0 + 50 + TTL + 1).proxy_down == (("b", "b-1"),)
    # ... and any replica holding a stream of it brings it back.
    store.health.record_leases("r2", started_at=T0, until=T0 + 200, connected=[token])
    assert store.health.sweep(T0 + 70).proxy_up == (("b", "b-1"),)


def test_a_replica_that_just_started_judges_no_proxy_but_welcomes_them_back(
    store: Store, clock: Clock
) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
    token = issue(store, "b-1", connect_by=T0 + TTL)
    assert store.health.sweep(T0 + 100, judge_proxies=False).changed is False
    store.health.sweep(T0 + 100)
    store.health.record_leases("r9", started_at=T0 + 100, until=T0 + 200, connected=[token])
    assert store.health.sweep(T0 + 101, judge_proxies=False).proxy_up == (("b", "b-1"),)


def test_leases_of_revoked_tokens_count_for_nothing(store: Store, clock: Clock) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
    old = issue(store, "b-1", connect_by=T0 + TTL)
    new = issue(store, "b-1", connect_by=T0 + TTL)
    store.health.record_leases("r1", started_at=T0, until=T0 + 100, connected=[old])
    store.security.revoke_token(old)
    assert store.health.sweep(T0 + TTL + 1).proxy_down == (("b", "b-1"),)
    store.health.record_leases("r1", started_at=T0, connected=[new])
    assert store.health.sweep(T0 + TTL + 2).proxy_up == (("b", "b-1"),)
    store.health.prune(T0 + 3 * 3600)
    # Pruned: the leases nobody needs; the instance stays as it was.
    assert instance(store).routable


def test_every_failing_check_is_in_the_reason_and_each_clears_alone(
    store: Store, clock: Clock
) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1, ttl=10.0))
    issue(store, "b-1", connect_by=T0 + 5)
    clock.now = T0 + 11
    store.health.sweep(clock.now)
    store.health.report_app("b", "b-1", "HTTP 503")
    sick = instance(store)
    assert list(sick.health.failing) == [Check.PROXY, Check.APP, Check.TTL]
    assert sick.health.reason.split("; ")[1:] == ["HTTP 503", "no heartbeat within its ttl of 10s"]
    assert sick.health.since == T0 + 11
    store.health.report_app("b", "b-1", None)
    store.health.heartbeat("b", "b-1")
    assert list(instance(store).health.failing) == [Check.PROXY]
    assert instance(store).health.since == T0 + 11  # still unhealthy since then


def test_replicas_sweeping_together_change_an_instance_once(db_url: str) -> None:
    stores = [Store.open(db_url) for _ in range(2)]
    try:
        for s in stores:
            s.clock = lambda: T0
        stores[0].put_service(Service("b"))
        stores[0].put_instance(Instance("b", "b-1", "10.0.0.1", 1, ttl=10.0))
        before = stores[0].revision()
        start = threading.Barrier(2)

        def sweep(s: Store) -> SweepResult:
            start.wait()
            return s.health.sweep(T0 + 11)

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(sweep, stores))
        assert sum(len(r.ttl_missed) for r in results) == 1  # re-read in the write
        assert stores[0].revision() == before + 1
        assert changes_of(stores[0], before + 1) == [("Instance", "b/b-1")]
    finally:
        for s in stores:
            s.close()


def test_a_windowed_sweep_judges_only_the_leases_that_ended_in_it(
    store: Store, clock: Clock
) -> None:
    store.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
    store.put_instance(Instance("b", "b-2", "10.0.0.2", 1))
    one, two = issue(store, "b-1", None), issue(store, "b-2", None)
    store.health.record_leases("r1", started_at=T0, until=T0 + 1000, connected=[one, two])
    store.health.record_leases("r1", started_at=T0, disconnected={one: T0 + 20, two: T0 + 40})
    assert store.health.sweep(T0 + 30, since=T0 + 25).changed is False  # b-1's ended before
    assert store.health.sweep(T0 + 30, since=T0 + 10).proxy_down == (("b", "b-1"),)
    assert store.health.sweep(T0 + 41, since=T0 + 30).proxy_down == (("b", "b-2"),)
    # A proxy that is down is always looked at: any window sees it come back.
    store.health.record_leases("r2", started_at=T0, until=T0 + 1000, connected=[one])
    assert store.health.sweep(T0 + 42, since=T0 + 41).proxy_up == (("b", "b-1"),)
    # A replica's lease that ends in the window ends its connected leases.
    store.health.record_leases("r2", started_at=T0, until=T0 + 50)
    assert store.health.sweep(T0 + 51, since=T0 + 45).proxy_down == (("b", "b-1"),)
