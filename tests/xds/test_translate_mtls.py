"""PeerAuthentication → the inbound filter chains of a sidecar, and auto-mTLS on the caller's
side (per endpoint); every mode's resources pass `envoy --mode validate` with real secrets."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from interlock.ca import CertificateAuthority, SpiffeId
from interlock.model import Instance, MeshState, Proxy, Resource, Service, ServiceProtocol
from interlock.model.identity import PROXY_SECRETS, MeshIdentity
from interlock.model.policy.peer_authentication import MTLSMode
from interlock.xds import naming
from interlock.xds.translate import check_consistency, translate
from interlock.xds.translate.mtls import workload_mode
from interlock.xds.translate.tls import identity_secrets
from tests.support.envoy_validate import validate

IDENTITY = MeshIdentity("interlock.local")


def peer_auth(
    name: str,
    namespace: str,
    spec: Mapping[str, Any],
    created: int = 1,
) -> Resource:
    return Resource(
        "security.istio.io/v1",
        "PeerAuthentication",
        namespace,
        name,
        spec=spec,
        created_revision=created,
        revision=created,
    )


SERVICES = [
    Service("a"),
    Service("b", protocol=ServiceProtocol.HTTP2),
    Service("db", protocol=ServiceProtocol.TCP, port=5432),
    Service("pay", namespace="shop"),
]
INSTANCES = [
    Instance("a", "a-1", "127.0.0.1", 15001),
    Instance("b", "b-1", "127.0.0.1", 15002, labels={"version": "v1"}),
    Instance("b", "b-2", "127.0.0.1", 15012, labels={"version": "v2"}),
    Instance("db", "db-1", "127.0.0.1", 15003),
    Instance("pay", "pay-1", "127.0.0.1", 15004),
]


def mesh(*policies: Resource) -> MeshState:
    return MeshState.build(7, SERVICES, INSTANCES, policies)


def sidecar(service: str, instance: str, port: int, namespace: str = "default") -> Proxy:
    labels = next(i.labels for i in INSTANCES if i.instance_id == instance)
    return Proxy(
        instance,
        service,
        namespace=namespace,
        inbound_port=port,
        app_port=port + 1000,
        outbound_port=port + 100,
    ).with_labels(labels)


def mode_of(state: MeshState, instance_id: str) -> MTLSMode:
    instance = next(i for i in INSTANCES if i.instance_id == instance_id)
    namespace = state.services[instance.service].namespace
    return workload_mode(
        state, namespace=namespace, instance=instance, root_namespace="interlock-system"
    )


# --- which mode --------------------------------------------------------------------------


def test_without_any_policy_every_workload_is_permissive() -> None:
    assert {mode_of(mesh(), i.instance_id) for i in INSTANCES} == {MTLSMode.PERMISSIVE}


def test_scopes_from_mesh_to_namespace_to_selector() -> None:
    state = mesh(
        peer_auth("mesh", "interlock-system", {"mtls": {"mode": "STRICT"}}),
        peer_auth("shop", "shop", {"mtls": {"mode": "DISABLE"}}),
        peer_auth(
            "b-v2",
            "default",
            {"selector": {"matchLabels": {"version": "v2"}}, "mtls": {"mode": "PERMISSIVE"}},
        ),
    )
    assert mode_of(state, "a-1") is MTLSMode.STRICT  # mesh-wide
    assert mode_of(state, "pay-1") is MTLSMode.DISABLE  # its namespace
    assert mode_of(state, "b-1") is MTLSMode.STRICT
    assert mode_of(state, "b-2") is MTLSMode.PERMISSIVE  # selected


def test_unset_inherits_and_the_implicit_app_label_selects() -> None:
    state = mesh(
        peer_auth("ns", "default", {"mtls": {"mode": "STRICT"}}),
        peer_auth("b", "default", {"selector": {"matchLabels": {"app": "b"}}, "mtls": {}}),
    )
    assert mode_of(state, "b-1") is MTLSMode.STRICT


def test_port_level_mtls_overrides_the_mode_for_the_registered_port() -> None:
    state = mesh(
        peer_auth(
            "b",
            "default",
            {
                "selector": {"matchLabels": {"app": "b"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {"15002": {"mode": "DISABLE"}},
            },
        )
    )
    assert mode_of(state, "b-1") is MTLSMode.DISABLE  # registered at 15002
    assert mode_of(state, "b-2") is MTLSMode.STRICT  # registered at 15012


def test_the_oldest_of_two_policies_in_one_scope_wins() -> None:
    state = mesh(
        peer_auth("newer", "default", {"mtls": {"mode": "DISABLE"}}, created=9),
        peer_auth("older", "default", {"mtls": {"mode": "STRICT"}}, created=3),
    )
    assert mode_of(state, "a-1") is MTLSMode.STRICT


# --- what Envoy gets -----------------------------------------------------------------------


def inbound(resources: Any) -> listener_pb2.Listener:
    return next(r for r in resources.listeners if r.name == naming.inbound_listener())


def chains(listener: listener_pb2.Listener) -> dict[str, str]:
    """chain name → the transport it matches ('' when it matches anything)."""
    return {c.name: c.filter_chain_match.transport_protocol for c in listener.filter_chains}


@pytest.mark.parametrize(
    ("mode", "expected", "inspector"),
    [
        ("STRICT", {"mtls": "tls"}, True),
        ("PERMISSIVE", {"mtls": "tls", "plaintext": "raw_buffer"}, True),
        ("DISABLE", {"plaintext": ""}, False),
    ],
)
def test_inbound_filter_chains_follow_the_mode(
    mode: str, expected: dict[str, str], inspector: bool
) -> None:
    state = mesh(peer_auth("mesh", "interlock-system", {"mtls": {"mode": mode}}))
    listener = inbound(translate(state, sidecar("a", "a-1", 15001).view(), IDENTITY))
    assert chains(listener) == expected
    assert bool(listener.listener_filters) is inspector
    for chain in listener.filter_chains:
        assert chain.HasField("transport_socket") is (chain.name == "mtls")
        manager = hcm_pb2.HttpConnectionManager()
        chain.filters[0].typed_config.Unpack(manager)
        # The app learns the caller's SPIFFE ID, and nobody can forge it in plain text.
        assert manager.forward_client_cert_details == hcm_pb2.HttpConnectionManager.SANITIZE_SET
        assert manager.set_current_client_cert_details.uri


def test_the_server_side_requires_a_client_certificate_of_the_trust_domain() -> None:
    listener = inbound(translate(mesh(), sidecar("a", "a-1", 15001).view(), IDENTITY))
    mtls = next(c for c in listener.filter_chains if c.name == "mtls")
    context = tls_pb2.DownstreamTlsContext()
    mtls.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value
    common = context.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "ROOTCA"
    sans = combined.default_validation_context.match_typed_subject_alt_names
    assert [s.matcher.prefix for s in sans] == ["spiffe://interlock.local/"]


def test_callers_use_mtls_per_endpoint_verifying_the_destination_identity() -> None:
    state = mesh(
        peer_auth(
            "b-v2",
            "default",
            {"selector": {"matchLabels": {"version": "v2"}}, "mtls": {"mode": "DISABLE"}},
        )
    )
    resources = translate(state, sidecar("a", "a-1", 15001).view(), IDENTITY)
    cluster = next(c for c in resources.clusters if c.name == "outbound|8080||b.default")
    (match,) = cluster.transport_socket_matches
    assert dict(match.match) == {"tlsMode": "interlock-mutual"}
    context = tls_pb2.UpstreamTlsContext()
    match.transport_socket.typed_config.Unpack(context)
    sans = context.common_tls_context.combined_validation_context.default_validation_context
    assert [s.matcher.exact for s in sans.match_typed_subject_alt_names] == [
        "spiffe://interlock.local/ns/default/sa/b"
    ]
    assert list(context.common_tls_context.alpn_protocols) == ["h2"]  # b speaks HTTP/2
    assignment = next(e for e in resources.endpoints if e.cluster_name == cluster.name)
    marked = {
        lb.endpoint.address.socket_address.port_value: dict(
            lb.metadata.filter_metadata["envoy.transport_socket_match"]
        )
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    }
    assert marked == {15002: {"tlsMode": "interlock-mutual"}, 15012: {}}  # v2 is plain text


def test_without_an_identity_nothing_changes() -> None:
    resources = translate(mesh(), sidecar("a", "a-1", 15001).view())
    assert all(not c.transport_socket_matches for c in resources.clusters)
    assert chains(inbound(resources)) == {"": ""}


def test_views_refer_to_the_per_proxy_secrets_only() -> None:
    resources = translate(mesh(), sidecar("a", "a-1", 15001).view(), IDENTITY)
    assert resources.secrets == ()
    assert check_consistency(resources, PROXY_SECRETS) == []
    missing = check_consistency(resources)
    assert missing and all("'default'" in m or "'ROOTCA'" in m for m in missing)


@pytest.fixture(scope="module")
def secrets() -> Any:
    ca = CertificateAuthority.create_root("interlock.local", lambda: datetime.now(UTC))
    svid = ca.issue_svid(SpiffeId.for_service("interlock.local", "default", "a"))
    assert svid.key_pem is not None
    return identity_secrets(svid.certificate_chain_pem(), svid.key_pem, ca.bundle_pem())


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE", "DISABLE"])
@pytest.mark.parametrize(
    ("service", "instance", "port"), [("a", "a-1", 15001), ("db", "db-1", 15003)]
)
def test_envoy_accepts_every_mode_for_http_and_tcp(
    mode: str, service: str, instance: str, port: int, secrets: Any
) -> None:
    state = mesh(peer_auth("mesh", "interlock-system", {"mtls": {"mode": mode}}))
    validate(translate(state, sidecar(service, instance, port).view(), IDENTITY), secrets)
