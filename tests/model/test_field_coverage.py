"""Nothing a user applies is silently ignored, proven by enumeration: every field of every
kind's schema is either translated — it appears in a golden scenario, whose output is pinned
and accepted by a real Envoy — or refused (the schema's ``unsupported`` fields: a 422 naming
the field), or reported (a test shows the problem it raises). A new field that is none of
these fails here, so it cannot be quietly accepted later."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.model.errors import FieldError
from interlock.model.policy import KINDS
from interlock.model.schema import ListOf, MapOf, Node, Obj

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

#: Fields whose effect (none, where they are) is reported as a problem, and the test that
#: shows it: (schema class, JSON field) → "module::test".
REPORTED = {
    ("ServiceEntry", "addresses"): "tests.model.test_no_effect::"
    "test_service_entry_addresses_and_mesh_internal",
    ("ServiceEntry", "location"): "tests.model.test_no_effect::"
    "test_service_entry_addresses_and_mesh_internal",
    (
        "MutualTLS",
        "mode",
    ): "tests.model.test_no_effect::test_port_level_settings_for_ports_nothing_has",
}

Pair = tuple[str, str]


def _unwrap(node: Node) -> Node:
    while isinstance(node, ListOf | MapOf):
        node = node.item if isinstance(node, ListOf) else node.value
    return node


def schema_fields(node: Node, out: set[Pair], seen: set[int]) -> set[Pair]:
    """(class, field) for every field of every object schema reachable from ``node``."""
    node = _unwrap(node)
    if isinstance(node, Obj) and id(node) not in seen:
        seen.add(id(node))
        for name, spec in node.fields.items():
            out.add((node.cls.__name__, name))
            schema_fields(spec.node, out, seen)
    return out


def objects(node: Node, seen: dict[int, Obj[Any]]) -> dict[int, Obj[Any]]:
    """Every object schema reachable from ``node``."""
    node = _unwrap(node)
    if isinstance(node, Obj) and id(node) not in seen:
        seen[id(node)] = node
        for spec in node.fields.values():
            objects(spec.node, seen)
    return seen


def used_fields(value: Any, node: Node, out: set[Pair]) -> None:
    """(class, field) for every field ``value`` (a document's spec) sets, along ``node``."""
    if isinstance(node, ListOf):
        for item in value if isinstance(value, list) else []:
            used_fields(item, node.item, out)
    elif isinstance(node, MapOf):
        for item in (value if isinstance(value, dict) else {}).values():
            used_fields(item, node.value, out)
    elif isinstance(node, Obj) and isinstance(value, dict):
        for key, item in value.items():
            spec = node.fields.get(key)
            if spec is not None:
                out.add((node.cls.__name__, key))
                used_fields(item, spec.node, out)


def golden_fields() -> set[Pair]:
    by_kind = {k.kind: k for k in KINDS}
    out: set[Pair] = set()
    for path in sorted(GOLDEN.glob("*/input.yaml")):
        for document in yaml.safe_load(path.read_text()).get("resources", []):
            used_fields(document.get("spec"), by_kind[document["kind"]].schema, out)
    return out


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
def test_every_field_is_translated_refused_or_reported(kind: Any) -> None:
    accepted = schema_fields(kind.schema, set(), set())
    quiet = sorted(accepted - golden_fields() - set(REPORTED))
    assert not quiet, (
        f"{kind.kind}: fields accepted but neither in a golden scenario (tests/golden/*/"
        f"input.yaml) nor reported by a test (REPORTED): {quiet}"
    )


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
def test_refused_fields_are_refused_naming_the_field(kind: Any) -> None:
    """Every ``unsupported`` field is an error naming it, wherever its object appears."""
    for obj in objects(kind.schema, {}).values():
        for name in obj.unsupported:
            errors: list[FieldError] = []
            obj.parse({name: "x"}, "at", errors)
            assert any(e.field == f"at.{name}" for e in errors), (obj.cls.__name__, name, errors)


@pytest.mark.parametrize("field", sorted(REPORTED), ids=["/".join(f) for f in sorted(REPORTED)])
def test_each_reported_field_names_a_test_that_exists(field: Pair) -> None:
    module, _, test = REPORTED[field].partition("::")
    assert callable(getattr(importlib.import_module(module), test, None)), REPORTED[field]
