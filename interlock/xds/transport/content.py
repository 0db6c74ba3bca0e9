"""Encoded resources and immutable sets of them: the unit the cache stores and the server sends.

An :class:`Entry` is one resource at one version, serialized and framed once: its ``sotw_field`` is
the encoded ``resources`` field of a ``DiscoveryResponse`` (an ``Any``), and its delta framing is
derived from it on first use. Its version is a short hash of the resource's bytes.

A :class:`Content` is an immutable mapping ``name → Entry`` of one type with a version (a hash of
the names and entry versions). It is what one response carries, and what a proxy holds. Contents
are interned by ``(type URL, version)``: equal contents are the same object, wherever they come
from (another proxy's snapshot, a subset for a subscription, a previous snapshot), so a response
body encoded for one stream is reused by every other stream that receives the same content.
"""

from __future__ import annotations

import collections
import hashlib
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf import any_pb2  # type: ignore[import-untyped, unused-ignore]

from interlock.xds.transport import wire

_BODY_CACHE_LIMIT: Final = 16
_DERIVED_CACHE_LIMIT: Final = 256
_RECENT_CONTENTS: Final = 16  # per type URL


@dataclass
class CacheStats:
    """Counters of the work the cache did (what the serialize-once guarantee is measured by)."""

    #: ``SerializeToString`` calls: one per message given to ``set_snapshot``, except those
    #: given again (the same object) for the same key, which are ``resources_reused``.
    resources_serialized: int = 0
    resources_reused: int = 0
    #: Distinct (type URL, bytes) wrapped in an ``Any`` and framed; equal bytes are encoded once.
    entries_encoded: int = 0
    #: State-of-the-world response bodies encoded (one per distinct content, shared by streams).
    sotw_bodies_encoded: int = 0
    #: Delta response bodies encoded (one per distinct (held, desired) pair, shared by streams).
    delta_bodies_encoded: int = 0


def version_of(data: bytes) -> str:
    """The version string of a resource: a short hash of its serialized bytes (the first 8 bytes
    of the 16-byte BLAKE2b digest that also interns it, in hex)."""
    return hashlib.blake2b(data, digest_size=16).digest()[:8].hex()


class Entry:
    """One resource at one version, encoded once. Immutable; shared between snapshots and keys.

    A *placeholder* entry (``sotw_field is None``) records only that a proxy holds ``name`` at
    ``version`` (from a delta reconnect's ``initial_resource_versions``); it is never sent.
    """

    __slots__ = ("__weakref__", "_delta_field", "name", "sotw_field", "type_url", "version")

    def __init__(self, type_url: str, name: str, version: str, sotw_field: bytes | None) -> None:
        self.type_url = type_url
        self.name = name
        self.version = version
        self.sotw_field = sotw_field
        self._delta_field: bytes | None = None

    @property
    def placeholder(self) -> bool:
        return self.sotw_field is None

    def delta_field(self) -> bytes:
        """The encoded ``resources`` field of a ``DeltaDiscoveryResponse`` for this entry."""
        if self._delta_field is None:
            if self.sotw_field is None:
                raise ValueError(f"placeholder entry {self.name!r} cannot be sent")
            # Resource.resource (field 2) and DiscoveryResponse.resources (field 2) frame an Any
            # identically, so the SotW framing is reused as is.
            resource = (
                wire.text_field(wire.RESOURCE_VERSION, self.version)
                + self.sotw_field
                + wire.text_field(wire.RESOURCE_NAME, self.name)
            )
            self._delta_field = wire.field(wire.DELTA_RESOURCES, resource)
        return self._delta_field

    def to_any(self) -> any_pb2.Any:
        """The resource as a ``google.protobuf.Any`` (decoded; for inspection and tests)."""
        if self.sotw_field is None:
            raise ValueError(f"placeholder entry {self.name!r} has no content")
        wrapper = any_pb2.Any()
        # Parse the field as the only field of a one-field message: skip tag and length.
        view = memoryview(self.sotw_field)
        pos = 1
        while view[pos] & 0x80:
            pos += 1
        wrapper.ParseFromString(bytes(view[pos + 1 :]))
        return wrapper

    def __repr__(self) -> str:
        return f"Entry({self.name!r}, {self.version})"


class Content:
    """An immutable set of resources of one type: ``entries`` maps name → :class:`Entry`.

    Create contents only through :class:`Pool` (which interns them); never mutate ``entries``.
    """

    __slots__ = (
        "__weakref__",
        "_delta_bodies",
        "_derived",
        "_pool",
        "_sotw_body",
        "entries",
        "type_url",
        "version",
    )

    def __init__(self, pool: Pool, type_url: str, entries: dict[str, Entry], version: str) -> None:
        self._pool = pool
        self.type_url = type_url
        self.entries: Mapping[str, Entry] = entries
        self.version = version
        self._sotw_body: bytes | None = None
        self._delta_bodies: dict[str, bytes] = {}
        self._derived: dict[object, Content] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return (
            f"Content({self.type_url.rsplit('.', 1)[-1]}, {sorted(self.entries)}, {self.version})"
        )

    # -- derived contents (cached on this content; shared by every stream asking the same) --
    def _remember(self, key: object, content: Content) -> Content:
        if len(self._derived) >= _DERIVED_CACHE_LIMIT:
            self._derived.clear()
        self._derived[key] = content
        return content

    def subset(self, names: frozenset[str]) -> Content:
        """The entries whose names are in ``names`` (names that do not exist are ignored)."""
        found = self._derived.get(names)
        if found is None:
            entries = self.entries
            picked = {n: entries[n] for n in names if n in entries}
            if len(picked) == len(entries):
                return self._remember(names, self)
            found = self._remember(names, self._pool.content(self.type_url, picked))
        return found

    def keeping(self, held: Content) -> Content:
        """This content plus the entries of ``held`` whose names it lacks (make-before-break)."""
        key = ("keep", held.version)
        found = self._derived.get(key)
        if found is None:
            merged = dict(self.entries)
            for name, entry in held.entries.items():
                merged.setdefault(name, entry)
            found = self._remember(key, self._pool.content(self.type_url, merged))
        return found

    def adds_to(self, held: Content) -> bool:
        """True when this content has a name ``held`` lacks (cached: every stream of a view
        asks it about the same two contents)."""
        if held is self or not self.entries:
            return False
        key = ("adds", held.version)
        cached = self._derived.get(key)
        if cached is None:
            adds = not self.entries.keys() <= held.entries.keys()
            cached = self._remember(key, self if adds else self._pool.empty(self.type_url))
        return cached is self

    def within(self, held: Content) -> bool:
        """True when ``held`` has every entry of this content at the same version."""
        if held is self:
            return True
        key = ("within", held.version)
        cached = self._derived.get(key)
        if cached is None:
            other = held.entries
            inside = all(
                (h := other.get(n)) is not None and h.version == e.version
                for n, e in self.entries.items()
            )
            cached = self._remember(key, self if inside else self._pool.empty(self.type_url))
        return cached is self

    def without(self, names: Iterable[str]) -> Content:
        """This content less ``names``."""
        drop = set(names)
        if not drop.intersection(self.entries):
            return self
        kept = {n: e for n, e in self.entries.items() if n not in drop}
        return self._pool.content(self.type_url, kept)

    # -- encoded response bodies -------------------------------------------------------------
    def sotw_body(self) -> bytes:
        """A ``DiscoveryResponse`` carrying exactly this content, without its nonce."""
        if self._sotw_body is None:
            parts = [wire.text_field(wire.SOTW_VERSION_INFO, self.version)]
            entries = self.entries
            for name in sorted(entries):
                field = entries[name].sotw_field
                if field is None:
                    raise ValueError(f"placeholder entry {name!r} cannot be sent")
                parts.append(field)
            parts.append(wire.text_field(wire.SOTW_TYPE_URL, self.type_url))
            self._sotw_body = b"".join(parts)
            self._pool.stats.sotw_bodies_encoded += 1
        return self._sotw_body

    def sotw_update_body(self, held: Content) -> bytes:
        """A ``DiscoveryResponse`` (no nonce) carrying only the entries whose version differs
        from ``held`` — for the types whose SotW responses are not the state of the world
        (all but LDS and CDS: a resource absent from the response is left as the proxy has
        it). ``version_info`` is still this whole content's version."""
        key = "sotw\0" + held.version
        body = self._delta_bodies.get(key)
        if body is None:
            old = held.entries
            entries = self.entries
            changed = [
                name
                for name in sorted(entries)
                if (had := old.get(name)) is None or had.version != entries[name].version
            ]
            if len(changed) == len(entries):
                return self.sotw_body()  # everything: the one full body, encoded once
            parts = [wire.text_field(wire.SOTW_VERSION_INFO, self.version)]
            for name in changed:
                field = entries[name].sotw_field
                if field is None:
                    raise ValueError(f"placeholder entry {name!r} cannot be sent")
                parts.append(field)
            parts.append(wire.text_field(wire.SOTW_TYPE_URL, self.type_url))
            body = self._keep_body(key, b"".join(parts))
            self._pool.stats.sotw_bodies_encoded += 1
        return body

    def delta_body(self, held: Content | None) -> bytes:
        """A ``DeltaDiscoveryResponse`` (no nonce) taking a proxy from ``held`` to this content.

        Carries the entries whose version differs from ``held`` and removes the names ``held``
        has and this content lacks.
        """
        key = "" if held is None else held.version
        body = self._delta_bodies.get(key)
        if body is None:
            old: Mapping[str, Entry] = {} if held is None else held.entries
            parts = [wire.text_field(wire.DELTA_SYSTEM_VERSION_INFO, self.version)]
            for name in sorted(self.entries):
                entry = self.entries[name]
                had = old.get(name)
                if had is None or had.version != entry.version:
                    parts.append(entry.delta_field())
            parts.append(wire.text_field(wire.DELTA_TYPE_URL, self.type_url))
            for name in sorted(old):
                if name not in self.entries:
                    parts.append(wire.text_field(wire.DELTA_REMOVED_RESOURCES, name))
            body = self._keep_body(key, b"".join(parts))
            self._pool.stats.delta_bodies_encoded += 1
        return body

    def _keep_body(self, key: str, body: bytes) -> bytes:
        """Remember a body encoded against some held content (bounded: cleared when full)."""
        if len(self._delta_bodies) >= _BODY_CACHE_LIMIT:
            self._delta_bodies.clear()
        self._delta_bodies[key] = body
        return body


class Pool:
    """Interns entries by (type URL, bytes) and contents by (type URL, version).

    Interned objects live as long as something (a snapshot, a stream) refers to them.
    """

    def __init__(self) -> None:
        self.stats = CacheStats()
        self._entries: weakref.WeakValueDictionary[tuple[str, bytes], Entry] = (
            weakref.WeakValueDictionary()
        )
        self._contents: weakref.WeakValueDictionary[tuple[str, str], Content] = (
            weakref.WeakValueDictionary()
        )
        self._any_prefix: dict[str, bytes] = {}
        # The latest contents stay interned a while after nothing serves them: a proxy that
        # reconnects holding the previous version is then matched to it (see ``held``).
        self._recent: dict[str, collections.deque[Content]] = {}

    def entry(self, type_url: str, name: str, data: bytes) -> Entry:
        """The entry for a resource serialized as ``data`` (encoded once per distinct bytes)."""
        digest = hashlib.blake2b(data, digest_size=16).digest()
        key = (type_url, digest)
        found = self._entries.get(key)
        if found is None:
            prefix = self._any_prefix.get(type_url)
            if prefix is None:
                prefix = self._any_prefix[type_url] = wire.text_field(wire.ANY_TYPE_URL, type_url)
            value = prefix + wire.field(wire.ANY_VALUE, data)
            found = Entry(type_url, name, digest[:8].hex(), wire.field(wire.SOTW_RESOURCES, value))
            self._entries[key] = found
            self.stats.entries_encoded += 1
        return found

    @staticmethod
    def _version(versions: Iterable[tuple[str, str]]) -> str:
        """The version of a content holding these (name, resource version) pairs."""
        listing = "".join([f"{name}\0{version}\n" for name, version in sorted(versions)])
        return hashlib.blake2b(listing.encode(), digest_size=8).hexdigest()

    def content(self, type_url: str, entries: dict[str, Entry]) -> Content:
        """The interned content holding exactly ``entries`` (the dict is adopted, not copied)."""
        version = self._version((name, entry.version) for name, entry in entries.items())
        key = (type_url, version)
        found = self._contents.get(key)
        if found is None:
            found = Content(self, type_url, entries, version)
            # Contents with placeholders are never interned: a real content of the same version
            # must not resolve to one that cannot be sent.
            if all(entry.sotw_field is not None for entry in entries.values()):
                self._contents[key] = found
                recent = self._recent.get(type_url)
                if recent is None:
                    recent = self._recent[type_url] = collections.deque(maxlen=_RECENT_CONTENTS)
                recent.append(found)
        return found

    def held(self, type_url: str, versions: Mapping[str, str]) -> Content:
        """What a proxy says it holds (name → version): the interned content it names when
        there is one (the usual reconnect: it holds exactly what it was sent), else a content
        of placeholder entries."""
        found = self._contents.get((type_url, self._version(versions.items())))
        if found is not None:
            return found
        return self.content(
            type_url, {name: Entry(type_url, name, v, None) for name, v in versions.items()}
        )

    def empty(self, type_url: str) -> Content:
        return self.content(type_url, {})
