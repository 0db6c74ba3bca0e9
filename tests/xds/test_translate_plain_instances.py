"""Instances without a sidecar: callers send mTLS only to instances a sidecar fronts (Istio's
auto-mTLS by ``tlsMode``), and a DestinationRule's ``tls.mode`` makes that a requirement
(``ISTIO_MUTUAL``: a plain instance is left out and named in a problem) or turns it off
(``DISABLE``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from interlock.ca import CertificateAuthority, SpiffeId
from interlock.model import Instance, MeshState, Proxy, Service, Severity
from interlock.model.identity import MeshIdentity
from interlock.model.policy import read_resources
from interlock.xds.translate import Resources, translate
from interlock.xds.translate.tls import identity_secrets
from tests.support.envoy_validate import validate

IDENTITY = MeshIdentity("interlock.local")
MUTUAL = {"tlsMode": "interlock-mutual"}

SERVICES = [Service("a"), Service("b")]
INSTANCES = [
    Instance("a", "a-1", "127.0.0.1", 15001),
    Instance("b", "b-1", "127.0.0.1", 15002, {"version": "v1"}),  # behind its sidecar
    Instance("b", "b-2", "10.0.0.2", 8080, {"version": "v2"}, sidecar=False),  # a plain app
]
CALLER = Proxy("a-1", "a", inbound_port=15001, app_port=16001, outbound_port=15101)


def mesh(*documents: dict[str, Any]) -> MeshState:
    resources = [
        dataclasses.replace(r, generation=1, created_revision=n + 1, revision=n + 1)
        for n, r in enumerate(read_resources(list(documents), batch=True))
    ]
    return MeshState.build(3, SERVICES, INSTANCES, resources)


def rule(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "b", "namespace": "default"},
        "spec": {"host": "b", **spec},
    }


def endpoints(resources: Resources, cluster: str) -> dict[int, dict[str, str]]:
    """port → the endpoint's transport-socket-match metadata, for one load assignment."""
    assignment = next(e for e in resources.endpoints if e.cluster_name == cluster)
    return {
        lb.endpoint.address.socket_address.port_value: dict(
            lb.metadata.filter_metadata["envoy.transport_socket_match"]
        )
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    }


def test_callers_send_mtls_only_to_instances_a_sidecar_fronts() -> None:
    resources = translate(mesh(), CALLER, IDENTITY)

    assert endpoints(resources, "outbound|8080||b.default") == {15002: MUTUAL, 8080: {}}
    assert resources.problems == ()


def test_istio_mutual_leaves_a_plain_instance_out_and_names_it() -> None:
    resources = translate(mesh(rule({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})), CALLER)
    assert endpoints(resources, "outbound|8080||b.default") == {15002: {}, 8080: {}}  # no identity

    resources = translate(
        mesh(rule({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}})), CALLER, IDENTITY
    )

    assert endpoints(resources, "outbound|8080||b.default") == {15002: MUTUAL}
    (problem,) = resources.problems
    assert (problem.resource, problem.field, problem.severity) == (
        "Instance/default/b/b-2",
        "sidecar",
        Severity.ERROR,
    )
    assert "ISTIO_MUTUAL" in problem.message and "outbound|8080||b.default" in problem.message


def test_a_subset_may_require_mtls_alone() -> None:
    subsets = [
        {"name": "v1", "labels": {"version": "v1"}},
        {
            "name": "v2",
            "labels": {"version": "v2"},
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
        },
    ]
    resources = translate(mesh(rule({"subsets": subsets})), CALLER, IDENTITY)

    assert endpoints(resources, "outbound|8080||b.default") == {15002: MUTUAL, 8080: {}}
    assert endpoints(resources, "outbound|8080|v1|b.default") == {15002: MUTUAL}
    assert endpoints(resources, "outbound|8080|v2|b.default") == {}
    assert [p.message.split(" of ")[-1] for p in resources.problems] == [
        "outbound|8080|v2|b.default rather than sent plain text"
    ]


def test_a_peer_authentication_disable_also_cannot_take_required_mtls() -> None:
    disable = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "b-v1", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"version": "v1"}}, "mtls": {"mode": "DISABLE"}},
    }
    state = mesh(disable, rule({"trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}))

    resources = translate(state, CALLER, IDENTITY)

    assert endpoints(resources, "outbound|8080||b.default") == {}
    assert [(p.resource, p.field) for p in resources.problems] == [
        ("Instance/default/b/b-1", "mtls"),
        ("Instance/default/b/b-2", "sidecar"),
    ]


def test_disable_sends_plain_text_to_every_instance() -> None:
    resources = translate(
        mesh(rule({"trafficPolicy": {"tls": {"mode": "DISABLE"}}})), CALLER, IDENTITY
    )

    assert endpoints(resources, "outbound|8080||b.default") == {15002: {}, 8080: {}}
    assert resources.problems == ()


@pytest.fixture(scope="module")
def secrets() -> Any:
    ca = CertificateAuthority.create_root("interlock.local", lambda: datetime.now(UTC))
    svid = ca.issue_svid(SpiffeId.for_service("interlock.local", "default", "a"))
    assert svid.key_pem is not None
    return identity_secrets(svid.certificate_chain_pem(), svid.key_pem, ca.bundle_pem())


@pytest.mark.parametrize("mode", [None, "ISTIO_MUTUAL", "DISABLE"])
def test_envoy_accepts_plain_and_fronted_endpoints_in_one_cluster(
    mode: str | None, secrets: Any
) -> None:
    documents = [rule({"trafficPolicy": {"tls": {"mode": mode}}})] if mode else []
    validate(translate(mesh(*documents), CALLER, IDENTITY), secrets)
