"""Reading documents: Kubernetes conventions, server-set fields ignored, JSON-only values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from interlock.model import MeshState, Resource, ResourceKey
from interlock.model.policy import policy_problems, read_resource
from interlock.model.policy.documents import MAX_DEPTH
from tests.model.specs import valid


def test_namespace_defaults_and_can_be_supplied() -> None:
    document = valid("VirtualService")
    del document["metadata"]["namespace"]
    resource, _ = read_resource(document)
    assert resource is not None and resource.namespace == "default"
    resource, _ = read_resource(document, namespace="shop")
    assert resource is not None and resource.key == ResourceKey("VirtualService", "shop", "reviews")


def test_what_get_returns_can_be_applied_again() -> None:
    document: dict[str, Any] = {
        **valid("Gateway"),
        "revision": 12,
        "problems": [{"field": "spec", "message": "m", "severity": "warning"}],
        "status": {},
    }
    document["metadata"].update(
        generation=3, resourceVersion="12", uid="u", creationTimestamp="2024-01-01T00:00:00Z"
    )
    resource, errors = read_resource(document)
    assert errors == [] and resource is not None
    assert resource.generation == 0  # server-set fields are not taken from the document


def test_labels_and_annotations_are_kept() -> None:
    document = valid("Telemetry")
    document["metadata"]["labels"] = {"team": "reviews"}
    document["metadata"]["annotations"] = {"example.com/owner": "Jane Doe <jane@example.com>"}
    resource, _ = read_resource(document)
    assert resource is not None
    assert resource.labels == {"team": "reviews"}
    assert resource.to_document()["metadata"]["annotations"] == {
        "example.com/owner": "Jane Doe <jane@example.com>"
    }


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (dt.date(2024, 1, 1), "date values are not allowed"),
        (float("nan"), "finite"),
        (b"bytes", "bytes values are not allowed"),
    ],
)
def test_only_json_values_are_accepted(value: object, says: str) -> None:
    document = valid("VirtualService")
    document["spec"]["http"][0]["name"] = value
    _, errors = read_resource(document)
    assert errors[0].field == "spec.http[0].name"
    assert says in errors[0].message


def test_integer_keys_from_yaml_are_read_as_strings() -> None:
    document = valid("PeerAuthentication")
    document["spec"]["portLevelMtls"] = {8080: {"mode": "DISABLE"}}
    resource, errors = read_resource(document)
    assert errors == [] and resource is not None
    assert dict(resource.spec["portLevelMtls"]) == {"8080": {"mode": "DISABLE"}}


def test_absurd_nesting_is_refused_without_a_crash() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    document = valid("VirtualService")
    document["spec"]["gateways"] = deep
    _, errors = read_resource(document)
    assert "nested more than" in errors[0].message


def test_stored_resources_build_mesh_state() -> None:
    resource, _ = read_resource(valid("DestinationRule"))
    assert resource is not None
    broken = Resource(
        "networking.istio.io/v1",
        "DestinationRule",
        "default",
        "old",
        {"host": "a", "subsets": [{"name": "A"}]},
    )
    state = MeshState.build(3, [], [], [resource, broken])
    assert [p.name for p in state.policies.destination_rules] == ["reviews"]
    assert [p.resource.name for p in state.policies.invalid] == ["old"]
    assert [r.name for r in state.policies.resources()] == ["old", "reviews"]
    assert state.policies.get(resource.key) is not None
    [problem] = [p for p in policy_problems(state) if p.resource == "DestinationRule/default/old"]
    assert problem.field == "spec.subsets[0].name" and "no longer valid" in problem.message
    gone = state.with_resources(delete=[resource.key])
    assert gone.policies.destination_rules == () and state.policies.destination_rules != ()
    # existing callers: positional build with services and instances only
    assert MeshState.build(1, [], []).policies.all() == ()
