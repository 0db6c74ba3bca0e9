"""Every kind: Istio-style documents parse into typed frozen values; invalid specs are refused
with the path of the wrong field (the same table the API test runs end to end)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from interlock.model.errors import InvalidInput
from interlock.model.frozen import FrozenMap, thaw
from interlock.model.policy import KINDS, Policies, kind_info, read_resource, read_resources
from interlock.model.policy.destination_rule import SimpleLB, TLSMode
from interlock.model.policy.gateway import ServerProtocol, ServerTLSMode
from interlock.model.policy.peer_authentication import MTLSMode
from interlock.model.policy.telemetry import LogFormat, TracingProvider
from tests.model.specs import INVALID, VALID, Invalid, valid


def parsed(kind: str) -> object:
    resource, errors = read_resource(valid(kind))
    assert errors == [] and resource is not None
    return Policies.build([resource]).of_kind(kind)[0].spec


@pytest.mark.parametrize("kind", sorted(VALID))
def test_every_kind_accepts_a_full_document(kind: str) -> None:
    resource, errors = read_resource(valid(kind))
    assert errors == []
    assert resource is not None and resource.kind == kind
    assert resource.namespace == "default"
    assert thaw(resource.spec) == VALID[kind]["spec"]


def test_the_registry_covers_every_kind_with_its_versions() -> None:
    assert {k.kind for k in KINDS} == set(VALID)
    assert kind_info("VirtualService").api_versions == (
        "networking.istio.io/v1",
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1alpha3",
    )
    assert kind_info("AuthorizationPolicy").api_versions == (
        "security.istio.io/v1",
        "security.istio.io/v1beta1",
    )
    assert kind_info("RateLimit").api_versions == ("interlock.io/v1",)


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_networking_kinds_accept_every_istio_version(version: str) -> None:
    document = {**valid("DestinationRule"), "apiVersion": f"networking.istio.io/{version}"}
    resource, errors = read_resource(document)
    assert errors == [] and resource is not None
    assert resource.api_version == f"networking.istio.io/{version}"


def test_virtual_service_is_typed() -> None:
    vs = parsed("VirtualService")
    canary = vs.http[0]  # type: ignore[attr-defined]
    assert canary.name == "canary"
    assert [(r.destination.subset, r.weight) for r in canary.route] == [("v2", 75), ("v1", 25)]
    assert canary.route[1].destination.port.number == 8080
    assert canary.timeout == dt.timedelta(seconds=1.5)
    assert canary.retries.retry_on == ("5xx", "reset", "503")
    assert canary.retries.per_try_timeout == dt.timedelta(milliseconds=500)
    assert canary.fault.delay.fixed_delay == dt.timedelta(milliseconds=100)
    assert canary.fault.abort.percentage.value == 0.5
    assert canary.match[0].headers["x-debug"].exact is None  # presence match
    assert canary.match[0].query_params["tier"].regex == "^(gold|silver)$"
    assert canary.cors_policy.max_age == dt.timedelta(hours=24)
    assert vs.http[1].redirect.redirect_code == 308  # type: ignore[attr-defined]
    assert vs.applies_to_mesh  # type: ignore[attr-defined]


def test_other_kinds_are_typed() -> None:
    dr = parsed("DestinationRule")
    policy = dr.traffic_policy  # type: ignore[attr-defined]
    assert policy.load_balancer.consistent_hash.maglev.table_size == 65537
    assert policy.load_balancer.consistent_hash.http_cookie.ttl == dt.timedelta(0)
    assert policy.outlier_detection.consecutive_5xx_errors == 5
    assert policy.port_level_settings[0].load_balancer.simple is SimpleLB.LEAST_REQUEST
    assert policy.tls.mode is TLSMode.ISTIO_MUTUAL
    assert [s.name for s in dr.subsets] == ["v1", "v2", "v3"]  # type: ignore[attr-defined]

    gw = parsed("Gateway")
    assert [s.port.protocol for s in gw.servers] == [  # type: ignore[attr-defined]
        ServerProtocol.HTTP,
        ServerProtocol.HTTPS,
        ServerProtocol.TLS,
        ServerProtocol.TCP,
    ]
    assert gw.servers[2].tls.effective_mode is ServerTLSMode.PASSTHROUGH  # type: ignore[attr-defined]

    pa = parsed("PeerAuthentication")
    assert pa.port_level_mtls == {9090: pa.port_level_mtls[9090]}  # type: ignore[attr-defined]
    assert pa.port_level_mtls[9090].mode is MTLSMode.PERMISSIVE  # type: ignore[attr-defined]

    ap = parsed("AuthorizationPolicy")
    assert ap.rules[0].from_[0].source.not_namespaces == ("test",)  # type: ignore[attr-defined]
    assert ap.has_rules  # type: ignore[attr-defined]

    rl = parsed("RateLimit")
    assert rl.token_bucket.fill_interval == dt.timedelta(seconds=1)  # type: ignore[attr-defined]
    assert rl.response_status == 429 and rl.percentage == 50.0  # type: ignore[attr-defined]

    tm = parsed("Telemetry")
    assert tm.access_logging.format is LogFormat.JSON  # type: ignore[attr-defined]
    assert tm.tracing.provider is TracingProvider.OPENTELEMETRY  # type: ignore[attr-defined]
    assert tm.tracing.host_port == ("otel-collector.observability", 4317)  # type: ignore[attr-defined]
    assert not tm.mesh_wide  # type: ignore[attr-defined]


def test_defaults_follow_istio() -> None:
    resource, _ = read_resource(
        {
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-all"},
            "spec": {},
        }
    )
    assert resource is not None
    policy = Policies.build([resource]).authorization_policies[0].spec
    assert policy.action.value == "ALLOW" and policy.rules == () and not policy.has_rules


def test_specs_are_deeply_frozen() -> None:
    resource, _ = read_resource(valid("VirtualService"))
    assert resource is not None
    assert isinstance(resource.spec, FrozenMap)
    assert isinstance(resource.spec["http"], tuple)
    hash(resource.spec)
    spec = parsed("VirtualService")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.hosts = ()  # type: ignore[attr-defined, misc]


@pytest.mark.parametrize("case", INVALID.values(), ids=list(INVALID))
def test_invalid_specs_name_the_field(case: Invalid) -> None:
    resource, errors = read_resource(case.document)
    assert resource is None
    fields = [e.field for e in errors]
    assert case.field in fields, errors
    message = next(e.message for e in errors if e.field == case.field)
    assert case.says.lower() in message.lower(), errors


def test_unsupported_istio_fields_say_so_and_unknown_fields_suggest() -> None:
    _, errors = read_resource(INVALID["vs tls routes"].document)
    assert errors[0].message == "'tls' is not supported by Interlock yet; TLS routes"
    _, errors = read_resource(INVALID["unknown field in a route"].document)
    assert errors[0].message == "unknown field 'rout'; did you mean 'route'?"


def test_a_batch_names_each_document_by_index_and_rejects_duplicates() -> None:
    bad = INVALID["route weights below 100"].document
    with pytest.raises(InvalidInput) as caught:
        read_resources([valid("DestinationRule"), bad, valid("DestinationRule")], batch=True)
    fields = [e.field for e in caught.value.errors]
    assert fields == ["[1].spec.http[0].route", "[2].metadata.name"]
    assert "none of the 3 documents was applied" in caught.value.message
