"""Incremental (delta) streams (``DeltaAggregatedResources`` and ``Delta<Type>``).

Contract, per type on one stream:

- a response carries the resources whose version differs from what the proxy holds and, in
  ``removed_resources``, the held names it should no longer have; ``system_version_info`` is the
  hash of the whole content the proxy holds after applying it; every nonce is new to the stream;
- the first request's ``initial_resource_versions`` are what the proxy holds (a reconnect): only
  what differs from them is sent, and names the snapshot no longer has are removed;
- ACK/NACK come from ``response_nonce`` and ``error_detail``; a stale nonce acknowledges nothing,
  but its subscription changes are still applied (they are incremental and would be lost);
- unsubscribing a name never subscribed is ignored; a name unsubscribed under a wildcard is
  forgotten as held, so the wildcard sends it again (Envoy keeps such names "ambiguous");
- a NACKed response is not resent: nothing more is sent until what the proxy should hold changes.
"""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from interlock.xds.transport import wire
from interlock.xds.transport.content import Content
from interlock.xds.transport.session import TypeState
from interlock.xds.transport.status import Variant
from interlock.xds.transport.stream import XdsStream


class DeltaStream(XdsStream):
    variant: Variant = "delta"
    nonce_field_number = wire.DELTA_NONCE
    request_type = discovery_pb2.DeltaDiscoveryRequest

    def handle(self, request: Any) -> None:
        found = self.state_for(request.type_url)
        if found is None:
            return
        state, first = found
        error = request.error_detail.message if request.HasField("error_detail") else None
        self.ack_or_nack(state, request.response_nonce, error)
        if first and request.initial_resource_versions:
            state.have = self.cache.pool.held(
                state.type_url, dict(request.initial_resource_versions)
            )
            # What it holds may be exactly what it would be sent: then nothing is, and the
            # status must still say it holds it (see XdsStream._push).
            state.initial_version = state.have.version
        subscribe = self.permitted(state.type_url, request.resource_names_subscribe)
        changed, dropped = state.sub.apply_delta(
            first, subscribe, request.resource_names_unsubscribe
        )
        self.check_names(state)
        if dropped and state.have is not None:
            state.have = state.have.without(dropped)
        if changed or dropped or first:
            state.narrow()
            state.in_sync = False
            self.wake()

    def needs_send(self, state: TypeState, desired: Content) -> bool:
        if state.have is None:
            return state.sub.wildcard or bool(desired.entries)
        return desired.version != state.have.version

    def body(self, state: TypeState, desired: Content) -> bytes:
        return desired.delta_body(state.have)
