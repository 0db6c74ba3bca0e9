"""Make-before-break across the types of one proxy: what each type should hold right now.

A *session* is the set of streams that serve one proxy: one ADS stream, or the per-type streams
of one node (same snapshot key and node id). For each type the proxy asked for,
``Session.desired`` works out what it should hold, in one of three modes:

- ``base``: exactly the snapshot's resources its subscription covers;
- ``held`` (*make*): what it holds now, because listeners and routes (``HELD_UNTIL``) must not
  change before every cluster and endpoint set new to the proxy has been sent and ACKed: Envoy
  does not warm routes, so a route naming a cluster that is not there yet fails requests;
- ``kept`` (*break*): the snapshot's resources plus the ones it dropped that the proxy still
  holds (``RETAINED_UNTIL``), until every type that may reference them has *settled*: the proxy
  holds exactly the snapshot's resources of that type and ACKed them.

So one snapshot that replaces cluster b by c in a route goes out as: CDS with a, b and c (EDS for
c as soon as Envoy asks for it) → once both are ACKed, LDS/RDS → once ACKed, CDS with a and c.
A NACKed type never settles until a new snapshot replaces what it rejected, so whatever the
proxy's still-active config references is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import Snapshot
from interlock.xds.transport.content import Content
from interlock.xds.transport.subscription import Subscription

#: Why a type's desired content is what it is: ``base`` the snapshot's; ``held`` what the proxy
#: has, because the types it references are not yet in place (``HELD_UNTIL``); ``kept`` the
#: snapshot's plus dropped resources still possibly referenced (``RETAINED_UNTIL``).
Mode = Literal["base", "held", "kept"]


class TypeState:
    """What one stream asked for of one type, and what the proxy holds of it."""

    __slots__ = (
        "acked",
        "adds",
        "have",
        "in_sync",
        "initial_version",
        "nacked",
        "nonce",
        "retaining",
        "sent_revision",
        "sub",
        "type_url",
        "whole_next",
    )

    def __init__(self, type_url: str) -> None:
        self.type_url = type_url
        self.sub = Subscription(type_url in rt.WILDCARD_TYPES)
        #: What the proxy holds: the last content sent (None: nothing yet). For delta, also what
        #: a reconnecting proxy declared (placeholder entries).
        self.have: Content | None = None
        #: The nonce of the last response of this type (None: none sent on this stream).
        self.nonce: str | None = None
        self.acked = False
        self.nacked = False
        #: A response since the last ACK gave the proxy names it did not have.
        self.adds = False
        #: SotW reconnect: the version the first request said the proxy holds.
        self.initial_version: str | None = None
        #: The last evaluation was a make-before-break transition (held or kept).
        self.retaining = False
        #: The last evaluation found nothing to send, ACKed, not retaining.
        self.in_sync = False
        self.sent_revision: int | None = None
        #: SotW update types (EDS, RDS, SDS): the next response carries every subscribed
        #: resource, not only what changed (``sotw.SotwStream.body``).
        self.whole_next = True

    def narrow(self) -> None:
        """Forget held resources the subscription no longer covers (the proxy dropped them)."""
        have = self.have
        if have is not None and not self.sub.wildcard:
            drop = [name for name in have.entries if not self.sub.covers(name)]
            if drop:
                self.have = have.without(drop)


class Member(Protocol):
    """A stream as its session sees it."""

    states: dict[str, TypeState]

    def needs_send(self, state: TypeState, desired: Content) -> bool: ...

    def wake(self) -> None: ...


class Session:
    """The streams serving one proxy: one ADS stream, or the per-type streams of one node."""

    __slots__ = ("streams",)

    def __init__(self) -> None:
        self.streams: list[Member] = []

    def states(self, type_url: str) -> Iterator[tuple[Member, TypeState]]:
        for stream in self.streams:
            state = stream.states.get(type_url)
            if state is not None:
                yield stream, state

    @staticmethod
    def base(state: TypeState, snapshot: Snapshot) -> Content:
        """The snapshot's resources ``state``'s subscription covers."""
        content = snapshot.content(state.type_url)
        return content if state.sub.wildcard else content.subset(state.sub.frozen())

    def desired(self, state: TypeState, snapshot: Snapshot) -> tuple[Content, Mode]:
        """What ``state``'s proxy should hold now, and why (see :data:`Mode`)."""
        base = self.base(state, snapshot)
        have = state.have
        if have is None or have is base:
            return base, "base"
        type_url = state.type_url
        waits_for = rt.HELD_UNTIL.get(type_url)
        if waits_for and not all(self.made(t, snapshot) for t in waits_for):
            return have, "held"
        if type_url not in rt.RETAINED_UNTIL:
            return base, "base"
        kept = base.keeping(have)
        if kept is base or all(self.settled(t, snapshot) for t in rt.RETAINED_UNTIL[type_url]):
            return base, "base"
        return kept, "kept"

    def made(self, type_url: str, snapshot: Snapshot) -> bool:
        """Every resource of ``type_url`` the proxy lacks by name was sent and ACKed.

        Only new names count: Envoy keeps serving with the old version of a changed cluster
        while it warms the new one, but a route naming a cluster that is not there fails.
        """
        for stream, state in self.states(type_url):
            if state.sub.empty:
                continue
            if state.adds and not state.acked:
                return False
            base = self.base(state, snapshot)
            target = base if state.have is None else state.have.keeping(base)
            if stream.needs_send(state, target):
                return False
        if type_url == rt.ENDPOINT:
            return self._endpoints_of_clusters_held(snapshot)
        return True

    def _endpoints_of_clusters_held(self, snapshot: Snapshot) -> bool:
        """Every EDS cluster the proxy holds has its endpoints, ACKed.

        On per-type streams the EDS subscription for a new cluster races the CDS ACK, so
        "nothing new to send for EDS" is not enough to know the new clusters are warm.
        """
        endpoints = [
            state.have
            for _, state in self.states(rt.ENDPOINT)
            if state.have is not None and (state.acked or not state.adds)
        ]
        if not any(True for _ in self.states(rt.ENDPOINT)):
            return True  # endpoints do not come from this server
        available = snapshot.content(rt.ENDPOINT).entries.keys()
        for _, clusters in self.states(rt.CLUSTER):
            if clusters.have is None:
                continue
            needed = rt.eds_names(clusters.have) & available
            for held in endpoints:
                if not needed:
                    break
                needed -= held.entries.keys()
            if needed:
                return False
        return True

    def resend(self, type_url: str, names: set[str]) -> None:
        """Forget that the proxy holds ``names`` of ``type_url``, so they are sent again."""
        for stream, state in self.states(type_url):
            have = state.have
            if have is not None and not names.isdisjoint(have.entries):
                state.have = have.without(names)
                state.in_sync = False
                stream.wake()

    def settled(self, type_url: str, snapshot: Snapshot) -> bool:
        """The proxy holds exactly the snapshot's ``type_url`` resources (ACKed), everywhere."""
        for stream, state in self.states(type_url):
            if state.sub.empty:
                continue
            if state.nonce is not None and not state.acked:
                return False
            desired, mode = self.desired(state, snapshot)
            if mode != "base" or stream.needs_send(state, desired):
                return False
        return True

    def retaining(self) -> bool:
        return any(s.retaining for stream in self.streams for s in stream.states.values())

    def wake_others(self, origin: Member) -> None:
        for stream in self.streams:
            if stream is not origin:
                stream.wake()
