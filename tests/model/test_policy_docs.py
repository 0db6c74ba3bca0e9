"""docs/policies.md documents every field every kind accepts and every field it refuses as not
supported yet, so the reference cannot drift from the schemas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from interlock.model.policy import KINDS
from interlock.model.schema import ListOf, MapOf, Node, Obj

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def objects(node: Node, seen: list[Obj[Any]]) -> list[Obj[Any]]:
    """Every object schema reachable from ``node``."""
    while isinstance(node, ListOf | MapOf):
        node = node.item if isinstance(node, ListOf) else node.value
    if isinstance(node, Obj) and node not in seen:
        seen.append(node)
        for spec in node.fields.values():
            objects(spec.node, seen)
    return seen


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
def test_every_field_is_documented(kind: Any) -> None:
    text = DOCS.read_text()
    inline = re.sub(r"(?s)```.*?```", "", text)
    documented = set(re.findall(r"`([^`\n]+)`", inline))
    last_parts = {token.rsplit(".", 1)[-1].replace("[]", "") for token in documented}
    assert f"## {kind.kind}" in text
    for obj in objects(kind.schema, []):
        for name in [*obj.fields, *obj.unsupported]:
            assert name in last_parts, f"{kind.kind}: field {name!r} is not in docs/policies.md"
