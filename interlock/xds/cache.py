"""Versioned snapshots of Envoy resources per opaque key, serialized once, with watches.

The cache knows type URLs, resource names and bytes; nothing about services or policies. A key is
whatever the glue chose (one proxy, or a view shared by proxies that get identical config).

Contract of :meth:`SnapshotCache.set_snapshot`:

- each message is serialized exactly once (``SerializeToString(deterministic=True)``) to learn its
  bytes; a resource's version is a short hash of those bytes;
- bytes already known (from the previous snapshot of this key, or any other key's) are not wrapped
  or framed again: the existing :class:`~interlock.xds.content.Entry` is reused;
- when nothing changed it returns ``False`` and wakes no stream (the revision is still recorded,
  so status can report the proxies as current at that revision);
- otherwise it stores the snapshot and wakes every stream watching the key; each stream then works
  out for itself what to send (the latest state, however many snapshots came meanwhile).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]

from interlock.xds import resource_types as rt
from interlock.xds.content import CacheStats, Content, Entry, Pool


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


class SnapshotCache:
    """Snapshots by key, watched by the streams serving each key."""

    def __init__(self) -> None:
        self._pool = Pool()
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, set[Watcher]] = {}

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
        pool = self._pool
        stats = pool.stats
        contents: dict[str, Content] = {}
        for type_url, messages in resources.items():
            expected = rt.message_name(type_url)
            entries: dict[str, Entry] = {}
            for message in messages:
                if message.DESCRIPTOR.full_name != expected:
                    raise ValueError(
                        f"{message.DESCRIPTOR.full_name} given as a resource of {type_url}"
                    )
                name = resource_name(type_url, message)
                if not name:
                    raise ValueError(f"a resource of {type_url} has no name")
                if name in entries:
                    raise ValueError(f"two resources of {type_url} are named {name!r}")
                data = message.SerializeToString(deterministic=True)
                stats.resources_serialized += 1
                entries[name] = pool.entry(type_url, name, data)
            if entries:
                contents[type_url] = pool.content(type_url, entries)
        snapshot = Snapshot(pool, contents, revision)
        previous = self._snapshots.get(key)
        if previous is not None and previous.same_resources(snapshot):
            if previous.revision != revision:
                self._snapshots[key] = previous.with_revision(revision)
                for watcher in tuple(self._watchers.get(key, ())):
                    watcher.on_revision(revision)
            return False
        self._snapshots[key] = snapshot
        for watcher in tuple(self._watchers.get(key, ())):
            watcher.wake()
        return True

    def advance_revision(self, revision: int, keys: Iterable[str] | None = None) -> None:
        """Record that the snapshots of ``keys`` (all keys by default) are unchanged at
        ``revision``: the glue's cheap alternative to re-publishing identical resources."""
        for key in list(self._snapshots) if keys is None else keys:
            snapshot = self._snapshots.get(key)
            if snapshot is None or snapshot.revision == revision:
                continue
            self._snapshots[key] = snapshot.with_revision(revision)
            for watcher in tuple(self._watchers.get(key, ())):
                watcher.on_revision(revision)

    def get(self, key: str) -> Snapshot | None:
        """The current snapshot of ``key``, or None when it has none."""
        return self._snapshots.get(key)

    def keys(self) -> set[str]:
        """Keys that have a snapshot."""
        return set(self._snapshots)

    def drop(self, key: str) -> None:
        """Forget the snapshot of ``key``. Streams still watching it stay open and receive
        nothing until the key gets a snapshot again (then only what differs from what they
        hold)."""
        self._snapshots.pop(key, None)

    # -- watches -----------------------------------------------------------------------------
    def watched_keys(self) -> set[str]:
        """Keys with at least one open stream."""
        return set(self._watchers)

    def watch(self, key: str, watcher: Watcher) -> None:
        """Wake ``watcher`` whenever the snapshot of ``key`` changes."""
        self._watchers.setdefault(key, set()).add(watcher)

    def unwatch(self, key: str, watcher: Watcher) -> None:
        watchers = self._watchers.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[key]
