"""The token lookup a new stream makes: a flood of bad tokens costs a few grouped queries, not
one per stream; a good token is read fresh every time, so revocation takes effect at once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import pytest

from interlock.model import Instance, Service
from interlock.model.identity import Token, TokenRole, new_token, token_hash
from interlock.security.token_lookup import TokenLookup
from interlock.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'interlock.db'}")
    yield s
    s.close()


class Counting:
    """The store's ``find_tokens``, counting the queries it makes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queries = 0
        self.hashes = 0

    def __call__(self, hashes: Collection[str]) -> Mapping[str, Token]:
        self.queries += 1
        self.hashes += len(hashes)
        return self.store.security.find_tokens(hashes)


def _proxy_token(store: Store) -> tuple[str, str]:
    store.put_service(Service("b"))
    store.put_instance(Instance("b", "b-1", "127.0.0.1", 15006))
    token_id, token, digest = new_token(TokenRole.PROXY)
    store.security.add_token(Token(token_id, TokenRole.PROXY, "b", "default", "b-1", 1.0), digest)
    return token_id, token


async def test_a_thousand_bad_tokens_at_once_cost_a_few_queries(store: Store) -> None:
    _, good = _proxy_token(store)
    find = Counting(store)
    lookup = TokenLookup(find)
    bad = [token_hash(os.urandom(16).hex()) for _ in range(1000)]
    found = await asyncio.gather(*(lookup.find(h) for h in [*bad, token_hash(good)]))
    assert found[:-1] == [None] * 1000
    assert found[-1] is not None and found[-1].instance_id == "b-1"
    assert find.hashes == 1001 and find.queries <= 4, find.queries
    # The same bad tokens again: remembered as unknown, no query at all.
    before = find.queries
    assert await asyncio.gather(*(lookup.find(h) for h in bad)) == [None] * 1000
    assert find.queries == before


async def test_a_good_token_is_read_fresh_so_revocation_is_seen_at_once(store: Store) -> None:
    token_id, good = _proxy_token(store)
    lookup = TokenLookup(Counting(store))
    first = await lookup.find(token_hash(good))
    assert first is not None and first.active
    store.security.revoke_token(token_id)
    again = await lookup.find(token_hash(good))
    assert again is not None and not again.active


async def test_unknown_hashes_are_remembered_briefly_and_boundedly(store: Store) -> None:
    now = [0.0]
    find = Counting(store)
    lookup = TokenLookup(find, negative_ttl=5.0, negative_max=10, clock=lambda: now[0])
    hashes = [token_hash(f"bad-{i}") for i in range(20)]
    for h in hashes:
        await lookup.find(h)
    queries = find.queries
    await lookup.find(hashes[-1])  # among the 10 kept
    assert find.queries == queries
    await lookup.find(hashes[0])  # pushed out by later ones
    assert find.queries == queries + 1
    now[0] = 6.0  # past the TTL: asked again
    await lookup.find(hashes[-1])
    assert find.queries == queries + 2
