"""The schema toolkit: typed results, closed objects, and full field paths in every error."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import pytest

from interlock.model.errors import FieldError
from interlock.model.schema import (
    INVALID,
    Duration,
    Enum,
    Field,
    Int,
    ListOf,
    MapOf,
    Obj,
    OneOf,
    Str,
    parse,
)


class Color(enum.StrEnum):
    RED = "RED"
    BLUE = "BLUE"


@dataclass(frozen=True)
class Leaf:
    name: str
    color: Color | None = None


@dataclass(frozen=True)
class Tree:
    leaves: tuple[Leaf, ...] = ()
    sizes: object = None
    max_age: dt.timedelta | None = None
    a: int | None = None
    b: int | None = None


LEAF = Obj(
    Leaf,
    {
        "name": Field(Str(non_empty=True), required=True),
        "color": Enum(Color, unsupported=["GREEN"], ignore_case=True),
    },
    unsupported={"shade": "use color"},
)
TREE = Obj(
    Tree,
    {
        "leaves": ListOf(LEAF, unique=lambda leaf: leaf.name, what="leaf name"),
        "sizes": MapOf(Str(), Int(minimum=0)),
        "maxAge": Duration(),
        "a": Int(),
        "b": Int(),
    },
    one_of=[OneOf(("a", "b"), required=False)],
)


def errors_of(value: object) -> list[FieldError]:
    result, errors = parse(TREE, value, "spec")
    assert result is INVALID
    return errors


def test_a_valid_value_becomes_frozen_typed_values() -> None:
    tree, errors = parse(
        TREE,
        {
            "leaves": [{"name": "x", "color": "blue"}],
            "sizes": {"a.b/c": 1},
            "maxAge": "1m30s",
            "a": 1,
            "b": None,
        },
        "spec",
    )
    assert errors == []
    assert tree == Tree(
        leaves=(Leaf("x", Color.BLUE),), sizes={"a.b/c": 1}, max_age=dt.timedelta(seconds=90), a=1
    )
    assert isinstance(tree.leaves, tuple)
    with pytest.raises(TypeError):
        tree.sizes["x"] = 2  # type: ignore[index]


def test_errors_carry_full_paths_and_all_are_reported() -> None:
    errors = errors_of(
        {
            "leaves": [{"name": "x"}, {"name": ""}, {"color": "GREEN", "name": "y"}, None],
            "sizes": {"a.b/c": -1},
            "maxAge": "soon",
        }
    )
    assert [(e.field, e.message) for e in errors] == [
        ("spec.leaves[1].name", "must not be empty"),
        ("spec.leaves[2].color", "'GREEN' is not supported by Interlock yet; use one of RED, BLUE"),
        ("spec.leaves[3]", "must not be null"),
        ('spec.sizes["a.b/c"]', "must be an integer of at least 0 (got -1)"),
        ("spec.maxAge", "'soon' is not a duration: write a number and a unit, e.g. 1.5s or 100ms"),
    ]


def test_objects_are_closed() -> None:
    errors = errors_of({"leaves": [{"name": "x", "shade": "dark", "colour": "RED"}]})
    assert [(e.field, e.message) for e in errors] == [
        ("spec.leaves[0].shade", "'shade' is not supported by Interlock yet; use color"),
        ("spec.leaves[0].colour", "unknown field 'colour'; did you mean 'color'?"),
    ]
    assert (
        errors_of({"zzz": 1})[0].message
        == "unknown field 'zzz'; expected one of: leaves, sizes, maxAge, a, b"
    )


def test_types_required_fields_one_of_and_uniqueness() -> None:
    assert errors_of({"leaves": "x"})[0].message == "must be a list, not a string"
    assert errors_of({"leaves": [{}]})[0] == FieldError("spec.leaves[0].name", "is required")
    assert errors_of({"a": 1, "b": 2})[0] == FieldError("spec", "set only one of a, b (got a, b)")
    assert errors_of({"a": True})[0].field == "spec.a"
    assert errors_of({"leaves": [{"name": "x"}, {"name": "x"}]})[0] == FieldError(
        "spec.leaves[1]", "duplicate leaf name 'x' (also at [0])"
    )
    assert errors_of([])[0] == FieldError("spec", "must be an object, not a list")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5s", dt.timedelta(seconds=1.5)),
        ("100ms", dt.timedelta(milliseconds=100)),
        ("1h30m", dt.timedelta(minutes=90)),
        ("2m", dt.timedelta(minutes=2)),
        ("1000us", dt.timedelta(milliseconds=1)),
        ("0.001s", dt.timedelta(milliseconds=1)),
    ],
)
def test_durations(text: str, expected: dt.timedelta) -> None:
    assert parse(Duration(), text, "d") == (expected, [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("999us", "must be at least 1ms"),
        ("0s", "must be at least 1ms"),
        ("1.0001s", "only durations to millisecond precision are supported"),
        ("10", "is not a duration"),
        ("-1s", "is not a duration"),
        ("", "empty"),
        ("400000000000s", "longer than the largest duration"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    _, errors = parse(Duration(), text, "d")
    assert message in errors[0].message
