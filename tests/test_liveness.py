"""The liveness glue on a clock the test moves: a token's streams counted on one replica,
written in one batch per tick, and the sweep that follows (the store's rules are tested in
tests/store/test_health.py; the whole path with real Envoys in tests/e2e/test_health.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from interlock.liveness import Liveness, sweep_interval
from interlock.model import Instance, Service
from interlock.model.identity import Token, TokenRole, new_token
from interlock.store import Store
from interlock.xds.transport.server import StreamGrant

T0 = 1_000_000.0
TTL = 3.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'mesh.db'}") as opened:
        opened.clock = clock
        opened.put_service(Service("b"))
        opened.put_instance(Instance("b", "b-1", "10.0.0.1", 1))
        yield opened


def token_for(store: Store) -> str:
    token_id, _, digest = new_token(TokenRole.PROXY)
    asked = Token(token_id, TokenRole.PROXY, "b", "", "b-1", T0)
    store.security.issue_proxy_token(asked, digest, connect_by=store.clock() + TTL)
    return token_id


def routable(store: Store) -> bool:
    return store.get_instance("b", "b-1").routable


def test_the_interval_is_a_quarter_of_the_ttl_at_most_a_second() -> None:
    assert (sweep_interval(3.0), sweep_interval(15.0)) == (0.75, 1.0)


async def test_a_proxy_is_down_a_ttl_after_its_last_stream_and_up_when_it_returns(
    store: Store, clock: Clock
) -> None:
    liveness = Liveness(store, TTL, clock=clock)
    token = token_for(store)
    first = liveness.watch(StreamGrant("p", principal=token))
    second = liveness.watch(StreamGrant("p", principal=token))
    assert isinstance(first, StreamGrant) and isinstance(second, StreamGrant)
    assert liveness.watch("unauthenticated-key") == "unauthenticated-key"
    await liveness.tick()
    assert first.on_close is not None and second.on_close is not None
    first.on_close()
    assert liveness.holding() == {token}  # one stream is left
    second.on_close()
    assert liveness.holding() == frozenset()
    clock.now = T0 + TTL - 0.1
    await liveness.tick()
    assert routable(store)
    clock.now = T0 + TTL + 0.1
    assert (await liveness.tick()).proxy_down == (("b", "b-1"),)
    assert not routable(store)
    back = liveness.watch(StreamGrant("p", principal=token))
    clock.now += 0.5
    assert (await liveness.tick()).proxy_up == (("b", "b-1"),)
    assert store.get_instance("b", "b-1").health.reason == "its proxy reconnected"
    # Gone again: judged by the sweeps between full ones, which look at ended leases only.
    assert isinstance(back, StreamGrant) and back.on_close is not None
    back.on_close()
    gone, downs = clock.now, []
    while clock.now < gone + TTL + liveness.interval:
        clock.now += liveness.interval
        downs += (await liveness.tick()).proxy_down
    assert downs == [("b", "b-1")]


async def test_a_replica_that_just_started_judges_nobody_for_a_ttl(
    store: Store, clock: Clock
) -> None:
    token_for(store)  # its proxy never connects
    clock.now = T0 + 10
    liveness = Liveness(store, TTL, clock=clock)  # started after the token's grace ended
    assert (await liveness.tick()).changed is False
    clock.now = T0 + 10 + TTL + 0.1
    assert (await liveness.tick()).proxy_down == (("b", "b-1"),)


async def test_a_stream_that_closes_and_reopens_within_a_tick_writes_nothing_new(
    store: Store, clock: Clock
) -> None:
    liveness = Liveness(store, TTL, clock=clock)
    token = token_for(store)
    grant = liveness.watch(StreamGrant("p", principal=token))
    await liveness.tick()
    assert isinstance(grant, StreamGrant) and grant.on_close is not None
    grant.on_close()
    liveness.watch(StreamGrant("p", principal=token))
    clock.now = T0 + 100  # long after: the lease it holds is the replica's, renewed
    for _ in range(3):
        clock.now += 1
        await liveness.tick()
    assert routable(store)
