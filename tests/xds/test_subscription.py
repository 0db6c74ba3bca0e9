"""Subscriptions: what thousands of proxies of one view ask for is held once.

Every stream of a view subscribes to the same EDS names; each keeping its own copy cost ~100 KB
per stream at 1,000 services (B5). Interned, equal subscriptions are one set, and the caches
keyed by a subscription (``Content.subset``) find their entry by identity.
"""

from __future__ import annotations

import gc
import weakref

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.content import Pool
from interlock.xds.transport.subscription import Subscription, interned

NAMES = [f"outbound|80||svc-{n}.default" for n in range(1000)]


def test_equal_subscriptions_share_one_set() -> None:
    first, second = Subscription(False), Subscription(False)
    first.apply_delta(True, NAMES[:600], [])
    second.apply_delta(True, NAMES[:300], [])
    second.apply_delta(False, NAMES[300:600], [])
    assert first.names == set(NAMES[:600])
    assert first.names is second.names
    sotw = Subscription(False)
    sotw.apply_sotw(reversed(NAMES[:600]))
    assert sotw.names is first.names


def test_an_ack_changes_nothing_and_copies_nothing() -> None:
    sub = Subscription(False)
    sub.apply_delta(True, NAMES, [])
    before = sub.names
    assert sub.apply_delta(False, [], []) == (False, set())
    assert sub.names is before
    assert sub.apply_sotw(NAMES) == (False, set())
    assert sub.names is before


def test_changes_still_apply_and_report_what_moved() -> None:
    sub = Subscription(True)
    assert sub.apply_delta(True, [], []) == (True, set())
    assert sub.wildcard
    changed, dropped = sub.apply_delta(False, ["a", "b"], ["*", "zzz"])
    assert changed and not sub.wildcard and dropped == set()
    assert sub.names == {"a", "b"}
    changed, dropped = sub.apply_delta(False, [], ["a"])
    assert changed and dropped == {"a"} and sub.names == {"b"}
    changed, added = sub.apply_sotw(["b", "c"])
    assert changed and added == {"c"} and sub.names == {"b", "c"}


def test_a_set_nobody_holds_is_freed() -> None:
    names = [f"gone-{n}" for n in range(10)]
    sub = Subscription(False)
    sub.apply_delta(True, names, [])
    ref = weakref.ref(sub.names)
    del sub
    gc.collect()
    assert ref() is None  # the intern table does not keep it alive
    fresh = interned(names)
    assert fresh == set(names) and fresh is interned(reversed(names))


def test_subset_of_a_content_is_shared_by_equal_subscriptions() -> None:
    pool = Pool()
    content = pool.content(
        rt.ENDPOINT, {n: pool.entry(rt.ENDPOINT, n, n.encode()) for n in NAMES[:10]}
    )
    a, b = Subscription(False), Subscription(False)
    a.apply_delta(True, NAMES[:5], [])
    b.apply_delta(True, list(reversed(NAMES[:5])), [])
    assert content.subset(a.frozen()) is content.subset(b.frozen())
    assert set(content.subset(a.frozen()).entries) == set(NAMES[:5])
