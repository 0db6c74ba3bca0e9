"""Versioned snapshots of Envoy resources per opaque key, serialized once, with watches.

The cache knows type URLs, resource names and bytes; nothing about services or policies. A key is
whatever the glue chose (one proxy, or a view shared by proxies that get identical config).

Contract of :meth:`SnapshotCache.set_snapshot`:

- each message is serialized exactly once (``SerializeToString(deterministic=True)``) to learn its
  bytes; a resource's version is a short hash of those bytes;
- bytes already known (from the previous snapshot of this key, or any other key's) are not wrapped
  or framed again: the existing :class:`~interlock.xds.transport.content.Entry` is reused;
- a message *object* given again for the same key (the incremental translator shares every
  message a change did not touch) is not even serialized again: its entry is reused. Messages
  given to the cache are therefore frozen: never mutate one afterwards;
- when nothing changed it returns ``False`` and wakes no stream (the revision is still recorded,
  so status can report the proxies as current at that revision);
- otherwise it stores the snapshot and wakes every stream watching the key; each stream then works
  out for itself what to send (the latest state, however many snapshots came meanwhile).

*Derived* keys (:meth:`SnapshotCache.set_derived`) are snapshots made of another key's
resources plus a few of their own, e.g. a view shared by many proxies plus each proxy's own
certificate. A derived snapshot reuses the base's encoded contents as they are (nothing of the
base is serialized again), carries the base's revision, and follows the base: whenever the base
changes, every key derived from it is recomposed and its streams are woken.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.content import CacheStats, Content, Entry, Pool


class Watcher(Protocol):
    """A stream serving a key. Both calls are cheap and never block."""

    def wake(self) -> None:
        """The key's snapshot changed (or appeared): work out what to send."""

    def on_revision(self, revision: int) -> None:
        """The key's snapshot is unchanged but now stands for mesh revision ``revision``."""


class Snapshot:
    """An immutable, consistent set of resources for one key, built from mesh ``revision``."""

    __slots__ = ("_contents", "_pool", "revision")

    def __init__(self, pool: Pool, contents: dict[str, Content], revision: int) -> None:
        self._pool = pool
        self._contents = contents
        self.revision = revision

    def content(self, type_url: str) -> Content:
        """The resources of ``type_url`` (an empty content when the snapshot has none)."""
        found = self._contents.get(type_url)
        return found if found is not None else self._pool.empty(type_url)

    def resources(self, type_url: str) -> Mapping[str, Entry]:
        """name → entry for ``type_url``."""
        return self.content(type_url).entries

    def version(self, type_url: str) -> str:
        """The version of everything of ``type_url`` in this snapshot."""
        return self.content(type_url).version

    def type_urls(self) -> frozenset[str]:
        """The types this snapshot has at least one resource of."""
        return frozenset(self._contents)

    def same_resources(self, other: Snapshot) -> bool:
        """True when both hold exactly the same resources (contents are interned)."""
        return self._contents.keys() == other._contents.keys() and all(
            other._contents[t] is c for t, c in self._contents.items()
        )

    def with_revision(self, revision: int) -> Snapshot:
        return Snapshot(self._pool, self._contents, revision)


def resource_name(type_url: str, message: Message) -> str:
    """A resource's xDS name: ``cluster_name`` for a ClusterLoadAssignment, else ``name``."""
    return str(getattr(message, "cluster_name" if type_url == rt.ENDPOINT else "name"))


class _Encoded:
    """What one key's last snapshot was made of, by type URL: the sequence of messages given,
    its content, and id(message) → (message, entry). The messages are held, so no id is
    reused while this lives."""

    __slots__ = ("by_type",)

    def __init__(self) -> None:
        self.by_type: dict[
            str, tuple[Iterable[Message], Content | None, dict[int, tuple[Message, Entry]]]
        ] = {}


class _Derivation:
    """What a derived key adds to its base: contents by type URL."""

    __slots__ = ("base", "extra")

    def __init__(self, base: str, extra: dict[str, Content]) -> None:
        self.base = base
        self.extra = extra


class SnapshotCache:
    """Snapshots by key, watched by the streams serving each key."""

    def __init__(self) -> None:
        self._pool = Pool()
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._derivations: dict[str, _Derivation] = {}
        self._derived: dict[str, set[str]] = {}
        self._encoded: dict[str, _Encoded] = {}

    @property
    def stats(self) -> CacheStats:
        """Counters of serializations and encodings done so far."""
        return self._pool.stats

    @property
    def pool(self) -> Pool:
        """The interning pool (used by the server to derive contents)."""
        return self._pool

    # -- snapshots ---------------------------------------------------------------------------
    def set_snapshot(
        self, key: str, resources: Mapping[str, Iterable[Message]], *, revision: int
    ) -> bool:
        """Store the resources (by type URL) for ``key``; True when anything changed.

        Raises ``ValueError`` for a message whose type does not match its type URL, a resource
        without a name, or two resources of one type with the same name; the previous snapshot
        is then kept.
        """
        if key in self._derivations:
            raise ValueError(f"{key!r} is a derived key; use set_derived")
        encoded = _Encoded()
        snapshot = Snapshot(
            self._pool, self._encode(resources, self._encoded.get(key), encoded), revision
        )
        self._encoded[key] = encoded
        changed = self._store(key, snapshot)
        for derived in sorted(self._derived.get(key, ())):
            self._recompose(derived)
        return changed

    def _encode(
        self,
        resources: Mapping[str, Iterable[Message]],
        previous: _Encoded | None = None,
        record: _Encoded | None = None,
    ) -> dict[str, Content]:
        """Serialize each message once and intern the result, by type URL.

        With ``previous`` (what the key's last snapshot was made of), the same sequence object
        of one type (a tuple) reuses its content whole, and a message object found in it reuses its
        entry; ``record`` keeps what this call was made of, for the next one.
        """
        pool = self._pool
        stats = pool.stats
        contents: dict[str, Content] = {}
        for type_url, messages in resources.items():
            before = previous.by_type.get(type_url) if previous is not None else None
            # Only a tuple is known not to have changed since (a list may have been edited).
            if before is not None and before[0] is messages and isinstance(messages, tuple):
                stats.resources_reused += len(before[2])
                if before[1] is not None:
                    contents[type_url] = before[1]
                if record is not None:
                    record.by_type[type_url] = before
                continue
            known = before[2] if before is not None else {}
            expected = rt.message_name(type_url)
            entries: dict[str, Entry] = {}
            ids: dict[int, tuple[Message, Entry]] = {}
            for message in messages:
                hit = known.get(id(message))
                if hit is not None and hit[0] is message:
                    # Checked when it was first given; only its name may now collide.
                    entry = hit[1]
                    name = entry.name
                    stats.resources_reused += 1
                else:
                    if message.DESCRIPTOR.full_name != expected:
                        raise ValueError(
                            f"{message.DESCRIPTOR.full_name} given as a resource of {type_url}"
                        )
                    name = resource_name(type_url, message)
                    if not name:
                        raise ValueError(f"a resource of {type_url} has no name")
                    data = message.SerializeToString(deterministic=True)
                    stats.resources_serialized += 1
                    entry = pool.entry(type_url, name, data)
                if name in entries:
                    raise ValueError(f"two resources of {type_url} are named {name!r}")
                entries[name] = entry
                ids[id(message)] = (message, entry)
            content = pool.content(type_url, entries) if entries else None
            if content is not None:
                contents[type_url] = content
            if record is not None:
                record.by_type[type_url] = (messages, content, ids)
        return contents

    def _store(self, key: str, snapshot: Snapshot) -> bool:
        """Keep ``snapshot`` for ``key`` and tell its watchers; True when resources changed."""
        previous = self._snapshots.get(key)
        if previous is not None and previous.same_resources(snapshot):
            if previous.revision != snapshot.revision:
                self._snapshots[key] = previous.with_revision(snapshot.revision)
                for watcher in tuple(self._watchers.get(key, ())):
                    watcher.on_revision(snapshot.revision)
            return False
        self._snapshots[key] = snapshot
        for watcher in tuple(self._watchers.get(key, ())):
            watcher.wake()
        return True

    # -- derived snapshots -------------------------------------------------------------------
    def set_derived(self, key: str, base: str, extra: Mapping[str, Iterable[Message]]) -> bool:
        """Make ``key``'s snapshot ``base``'s resources plus ``extra`` (by type URL; a name in
        both is taken from ``extra``), from now on and whenever ``base`` changes.

        Only ``extra`` is serialized. The derived snapshot has ``base``'s revision; while
        ``base`` has no snapshot, ``key`` has none either. Calling it again replaces the extra
        resources (and may change the base); True when ``key``'s resources changed. Raises
        ``ValueError`` as :meth:`set_snapshot` does, or when ``key`` is ``base`` or has a
        snapshot of its own.
        """
        if key == base:
            raise ValueError("a key cannot be derived from itself")
        if key in self._snapshots and key not in self._derivations:
            raise ValueError(f"{key!r} has a snapshot of its own")
        extra_contents = self._encode(extra)
        current = self._derivations.get(key)
        if current is not None and current.base != base:
            self._unlink(key, current.base)
        self._derivations[key] = _Derivation(base, extra_contents)
        self._derived.setdefault(base, set()).add(key)
        return self._recompose(key)

    def _recompose(self, key: str) -> bool:
        derivation = self._derivations[key]
        base = self._snapshots.get(derivation.base)
        if base is None:
            self._snapshots.pop(key, None)
            return False
        contents = dict(base._contents)
        for type_url, content in derivation.extra.items():
            under = contents.get(type_url)
            if under is None or not under.entries:
                contents[type_url] = content
            else:
                merged = dict(under.entries)
                merged.update(content.entries)
                contents[type_url] = self._pool.content(type_url, merged)
        return self._store(key, Snapshot(self._pool, contents, base.revision))

    def _unlink(self, key: str, base: str) -> None:
        derived = self._derived.get(base)
        if derived is not None:
            derived.discard(key)
            if not derived:
                del self._derived[base]

    def base_of(self, key: str) -> str | None:
        """The key ``key`` is derived from (None for a key with a snapshot of its own)."""
        derivation = self._derivations.get(key)
        return None if derivation is None else derivation.base

    def advance_revision(self, revision: int, keys: Iterable[str] | None = None) -> None:
        """Record that the snapshots of ``keys`` (all keys by default) are unchanged at
        ``revision``: the glue's cheap alternative to re-publishing identical resources."""
        for key in list(self._snapshots) if keys is None else keys:
            snapshot = self._snapshots.get(key)
            if snapshot is None or snapshot.revision == revision or key in self._derivations:
                continue
            self._snapshots[key] = snapshot.with_revision(revision)
            for watcher in tuple(self._watchers.get(key, ())):
                watcher.on_revision(revision)
            for derived in sorted(self._derived.get(key, ())):
                self._recompose(derived)

    def get(self, key: str) -> Snapshot | None:
        """The current snapshot of ``key``, or None when it has none."""
        return self._snapshots.get(key)

    def keys(self) -> set[str]:
        """Keys that have a snapshot."""
        return set(self._snapshots)

    def drop(self, key: str) -> None:
        """Forget the snapshot of ``key`` (and, for a derived key, what it derives from).
        Streams still watching it stay open and receive nothing until the key gets a snapshot
        again (then only what differs from what they hold). Keys derived from ``key`` keep
        their derivation and get a snapshot again when ``key`` does."""
        self._snapshots.pop(key, None)
        self._encoded.pop(key, None)
        derivation = self._derivations.pop(key, None)
        if derivation is not None:
            self._unlink(key, derivation.base)
        for derived in self._derived.get(key, ()):
            self._snapshots.pop(derived, None)

    # -- watches -----------------------------------------------------------------------------
    def watched_keys(self) -> set[str]:
        """Keys with at least one open stream, and the bases of watched derived keys."""
        watched = set(self._watchers)
        for key in tuple(watched):
            derivation = self._derivations.get(key)
            if derivation is not None:
                watched.add(derivation.base)
        return watched

    def watch(self, key: str, watcher: Watcher) -> None:
        """Wake ``watcher`` whenever the snapshot of ``key`` changes."""
        self._watchers.setdefault(key, set()).add(watcher)

    def unwatch(self, key: str, watcher: Watcher) -> None:
        watchers = self._watchers.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[key]
