"""State-of-the-world streams (``StreamAggregatedResources`` and ``Stream<Type>``).

Contract, per type on one stream:

- a response's ``version_info`` is the hash of everything of the type the proxy should hold,
  and its nonce is new to the stream; for LDS and CDS it carries every subscribed resource
  that exists (all of them for a wildcard): absence means deletion;
- for the other types (EDS, RDS, SDS) a response updates the resources it carries and leaves
  the rest as the proxy has them (the xDS protocol groups them as in delta). On an aggregated
  stream, once the proxy ACKed what it holds, a response carries only the new and changed ones
  (one service's endpoints, not the thousand a sidecar subscribes to). It carries every
  subscribed resource when it is the first of its type, when the last was not ACKed or was
  NACKed, on a per-type stream, and after any CDS or LDS response: Envoy replaces a changed
  cluster or listener by a new one whose subscriptions start empty and, if the names did not
  change, it does not ask again - the new one warms until a response names its resource (an
  EDS cluster waits ``initial_fetch_timeout``, 15 s, before using its cached endpoints);
- a request whose nonce is stale (a newer response of the type was sent since) is ignored whole:
  the proxy will send its current subscription again with the newer nonce;
- a NACK is a request with ``error_detail``; it is recorded and nothing more of the type is sent
  until what the proxy should hold changes (a new snapshot, or a new subscription);
- a newly requested name is sent even if the proxy had it (e.g. under a wildcard it left);
- LDS and CDS subscribed by name (gRPC's xDS client) get a response whenever what exists of
  those names changes, even to nothing: absence means deletion there too;
- for a non-wildcard type a response is sent only when a subscribed resource is new or changed:
  SotW cannot say "does not exist" or "deleted" for these types (absence means nothing), so a
  name that does not exist yet gets nothing until a snapshot has it, and an empty subscription
  sends nothing;
- on a new stream, a first request whose ``version_info`` equals what the proxy should hold gets no
  response (it already holds it); any other version gets the full state.
"""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport import wire
from interlock.xds.transport.content import Content
from interlock.xds.transport.session import TypeState
from interlock.xds.transport.status import Variant
from interlock.xds.transport.stream import XdsStream

#: The types whose SotW responses may carry only what changed (not the state of the world).
_UPDATE_TYPES = frozenset({rt.ENDPOINT, rt.ROUTE, rt.SECRET})


class SotwStream(XdsStream):
    variant: Variant = "sotw"
    nonce_field_number = wire.SOTW_NONCE
    request_type = discovery_pb2.DiscoveryRequest

    def handle(self, request: Any) -> None:
        found = self.state_for(request.type_url)
        if found is None:
            return
        state, first = found
        error = request.error_detail.message if request.HasField("error_detail") else None
        if not self.ack_or_nack(state, request.response_nonce, error):
            return
        if first and request.version_info:
            state.initial_version = request.version_info
        names = self.permitted(state.type_url, request.resource_names)
        changed, added = state.sub.apply_sotw(names)
        self.check_names(state)
        if changed:
            state.narrow()
            if added and state.have is not None:
                # "the server must resend any newly requested resources": forget them as held
                state.have = state.have.without(added)
            state.in_sync = False
            self.wake()
        elif first:
            self.wake()

    def needs_send(self, state: TypeState, desired: Content) -> bool:
        have = state.have
        if have is not None and desired.version == have.version:
            return False
        if state.sub.wildcard:
            return True  # the complete state, even empty: absence means deletion
        if state.type_url in rt.WILDCARD_TYPES and state.sub.names:
            # LDS and CDS answer names too with every one that exists: absence says a name
            # no longer exists (gRPC's xDS client names the listener of its target and the
            # clusters of its routes; a deleted service must leave it, not stay cached).
            return True
        # Other types cannot delete in SotW (absence means nothing), so only something new or
        # changed is worth a response.
        return bool(desired.entries) and (have is None or not desired.within(have))

    def body(self, state: TypeState, desired: Content) -> bytes:
        if state.type_url not in _UPDATE_TYPES:
            # CDS or LDS: Envoy may replace clusters and listeners, whose new subscriptions
            # wait for a response naming their resources.
            for other in self._ordered:
                other.whole_next = True
            return desired.sotw_body()
        have = state.have
        if (
            have is None
            or state.whole_next
            or self.fixed_type is not None
            or not state.acked
            or state.nacked
        ):
            state.whole_next = False
            return desired.sotw_body()
        return desired.sotw_update_body(have)
