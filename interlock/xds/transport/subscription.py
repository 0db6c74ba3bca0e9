"""What one stream asked for, for one resource type, under the xDS subscription rules.

Wildcard (only for the types in ``resource_types.WILDCARD_TYPES``, i.e. LDS and CDS):

- legacy: until the client names a resource for the type, an empty request means ``*``;
- explicit ``*``, alone or beside names;
- once the client has named anything, an empty SotW list (or unsubscribing ``*`` in delta) leaves
  the wildcard.

For every other type an empty SotW list means "unsubscribed from everything", and ``*`` is an
ordinary (non-existent) name. Delta unsubscribes of names never subscribed are ignored.

The names are kept *interned* (:func:`interned`): every stream subscribed to the same names
holds the very same immutable set, so thousands of proxies of one view cost one set of names
between them (not one each), and caches keyed by a subscription (``Content.subset``) find
their entry by identity instead of comparing thousands of names.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable

WILDCARD = "*"


class Names(frozenset[str]):
    """An interned, immutable set of resource names (see :func:`interned`)."""

    __slots__ = ()


_buckets: dict[int, list[weakref.ref[Names]]] = {}


def _forget(ref: weakref.ref[Names], digest: int) -> None:
    bucket = _buckets.get(digest)
    if bucket is not None:
        with contextlib.suppress(ValueError):
            bucket.remove(ref)
        if not bucket:
            del _buckets[digest]


def interned(names: Iterable[str]) -> Names:
    """The one live :class:`Names` equal to ``names`` (made when there is none).

    Held weakly: a set nobody subscribes to any more is freed.
    """
    candidate = names if isinstance(names, Names) else Names(names)
    digest = hash(candidate)
    bucket = _buckets.get(digest)
    if bucket is None:
        bucket = _buckets[digest] = []
    else:
        for ref in bucket:
            found = ref()
            if found is not None and (found is candidate or found == candidate):
                return found
    bucket.append(weakref.ref(candidate, lambda ref: _forget(ref, digest)))
    return candidate


NO_NAMES = interned(())


class Subscription:
    """The resource names one stream wants of one type."""

    __slots__ = ("explicit", "names", "wildcard", "wildcard_capable")

    def __init__(self, wildcard_capable: bool) -> None:
        self.wildcard_capable = wildcard_capable
        self.wildcard = False
        self.explicit = False
        #: The explicit names (interned: compare and key by identity).
        self.names: Names = NO_NAMES

    @property
    def empty(self) -> bool:
        """Subscribed to nothing."""
        return not self.wildcard and not self.names

    def frozen(self) -> Names:
        """The explicit names (the interned set itself)."""
        return self.names

    def covers(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def _set(self, wildcard: bool, names: Iterable[str]) -> bool:
        changed = wildcard != self.wildcard
        if names is not self.names and names != self.names:
            self.names = interned(names)
            changed = True
        self.wildcard = wildcard
        return changed

    def apply_sotw(self, resource_names: Iterable[str]) -> tuple[bool, set[str]]:
        """Replace the subscription with a SotW request's ``resource_names``; returns (changed,
        names newly requested), the latter to be sent again even if the client had them."""
        requested = set(resource_names)
        before = self.names
        if not self.wildcard_capable:
            self.explicit = True
            wildcard = False
        elif not requested and not self.explicit:
            wildcard = True
        else:
            self.explicit = True
            wildcard = WILDCARD in requested
            requested.discard(WILDCARD)
        if len(requested) == len(before) and requested.issuperset(before):
            return self._set(wildcard, before), set()
        return self._set(wildcard, requested), requested - before

    def apply_delta(
        self, first: bool, subscribe: Iterable[str], unsubscribe: Iterable[str]
    ) -> tuple[bool, set[str]]:
        """Apply a delta request's changes; returns (changed, explicitly unsubscribed names)."""
        wildcard = self.wildcard
        added = list(subscribe)
        removed = list(unsubscribe)
        if self.wildcard_capable and first and not added and not self.explicit:
            wildcard = True
        if not added and not removed:  # an ACK: nothing to copy
            return self._set(wildcard, self.names), set()
        names = set(self.names)
        dropped: set[str] = set()
        for name in added:
            self.explicit = True
            if name == WILDCARD and self.wildcard_capable:
                wildcard = True
            else:
                names.add(name)
        for name in removed:
            if name == WILDCARD and self.wildcard_capable:
                wildcard = False
            elif name in names:
                names.discard(name)
                dropped.add(name)
        return self._set(wildcard, names), dropped
