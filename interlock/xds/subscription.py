"""What one stream asked for, for one resource type, under the xDS subscription rules.

Wildcard (only for the types in ``resource_types.WILDCARD_TYPES``, i.e. LDS and CDS):

- legacy: until the client names a resource for the type, an empty request means ``*``;
- explicit ``*``, alone or beside names;
- once the client has named anything, an empty SotW list (or unsubscribing ``*`` in delta) leaves
  the wildcard.

For every other type an empty SotW list means "unsubscribed from everything", and ``*`` is an
ordinary (non-existent) name. Delta unsubscribes of names never subscribed are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

WILDCARD = "*"


class Subscription:
    """The resource names one stream wants of one type."""

    __slots__ = ("_frozen", "explicit", "names", "wildcard", "wildcard_capable")

    def __init__(self, wildcard_capable: bool) -> None:
        self.wildcard_capable = wildcard_capable
        self.wildcard = False
        self.explicit = False
        self.names: set[str] = set()
        self._frozen: frozenset[str] | None = frozenset()

    @property
    def empty(self) -> bool:
        """Subscribed to nothing."""
        return not self.wildcard and not self.names

    def frozen(self) -> frozenset[str]:
        """The explicit names, as a hashable set (computed once per change)."""
        if self._frozen is None:
            self._frozen = frozenset(self.names)
        return self._frozen

    def covers(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def _set(self, wildcard: bool, names: set[str]) -> bool:
        changed = wildcard != self.wildcard or names != self.names
        if changed:
            self.wildcard = wildcard
            self.names = names
            self._frozen = None
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
        return self._set(wildcard, requested), requested - before

    def apply_delta(
        self, first: bool, subscribe: Iterable[str], unsubscribe: Iterable[str]
    ) -> tuple[bool, set[str]]:
        """Apply a delta request's changes; returns (changed, explicitly unsubscribed names)."""
        wildcard = self.wildcard
        names = set(self.names)
        added = list(subscribe)
        if self.wildcard_capable and first and not added and not self.explicit:
            wildcard = True
        dropped: set[str] = set()
        for name in added:
            self.explicit = True
            if name == WILDCARD and self.wildcard_capable:
                wildcard = True
            else:
                names.add(name)
        for name in unsubscribe:
            if name == WILDCARD and self.wildcard_capable:
                wildcard = False
            elif name in names:
                names.discard(name)
                dropped.add(name)
        return self._set(wildcard, names), dropped
