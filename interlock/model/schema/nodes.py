"""A small declarative schema toolkit for policy specs.

A schema is a tree of :class:`Node` values. :meth:`Node.parse` checks one JSON value and
returns the typed, frozen value it describes (a dataclass for an :class:`Obj`, a tuple for a
:class:`ListOf`, a :class:`FrozenMap` for a :class:`MapOf`, a ``timedelta`` for a
:class:`Duration`, ...) — or :data:`INVALID`, after appending a :class:`FieldError` with the
full path (``spec.http[0].route[1].weight``) for every problem found to ``errors``.

Objects are closed: a field the schema does not know is an error that names it; a field Istio
has but Interlock does not support yet is an error that says so (never silently ignored). A
``null`` value counts as an absent field, as in protobuf's JSON mapping.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Generic, TypeVar

from interlock.model.errors import FieldError
from interlock.model.frozen import FrozenMap
from interlock.model.schema.base import INVALID, Errors, Node, child, item

T = TypeVar("T")


class ListOf(Node):
    """A list of ``item``s, parsed to a tuple. ``unique`` maps an item to the key that must be
    unique within the list (``what`` names it in the message)."""

    def __init__(
        self,
        item_node: Node,
        *,
        min_items: int = 0,
        unique: Callable[[Any], Hashable] | None = None,
        what: str = "item",
    ) -> None:
        self.item = item_node
        self.min_items = min_items
        self.unique = unique
        self.what = what
        self.describe = "a list"

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, list | tuple):
            return self.wrong_type(value, path, errors)
        if len(value) < self.min_items:
            errors.append(FieldError(path, f"must have at least {self.min_items} {self.what}"))
            return INVALID
        out: list[Any] = []
        ok = True
        seen: dict[Hashable, int] = {}
        for index, element in enumerate(value):
            at = item(path, index)
            if element is None:
                errors.append(FieldError(at, "must not be null"))
                ok = False
                continue
            parsed = self.item.parse(element, at, errors)
            if parsed is INVALID:
                ok = False
                continue
            if self.unique is not None:
                key = self.unique(parsed)
                if key in seen:
                    errors.append(
                        FieldError(at, f"duplicate {self.what} {key!r} (also at [{seen[key]}])")
                    )
                    ok = False
                seen.setdefault(key, index)
            out.append(parsed)
        return tuple(out) if ok else INVALID


class MapOf(Node):
    """An object used as a map: ``key`` checks each key (a string in JSON), ``value`` each
    value. Parsed to a :class:`FrozenMap` whose keys are what ``key`` returns."""

    def __init__(self, key: Node, value: Node, *, min_items: int = 0, what: str = "entry") -> None:
        self.key = key
        self.value = value
        self.min_items = min_items
        self.what = what
        self.describe = "a map (an object)"

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, Mapping):
            return self.wrong_type(value, path, errors)
        if len(value) < self.min_items:
            errors.append(FieldError(path, f"must have at least {self.min_items} {self.what}"))
            return INVALID
        out: dict[Any, Any] = {}
        ok = True
        for raw_key, raw_value in value.items():
            at = child(path, str(raw_key))
            key = self.key.parse(raw_key, at, errors)
            if raw_value is None:
                errors.append(FieldError(at, "must not be null"))
                ok = False
                continue
            parsed = self.value.parse(raw_value, at, errors)
            if key is INVALID or parsed is INVALID:
                ok = False
                continue
            out[key] = parsed
        return FrozenMap(out) if ok else INVALID


@dataclass(frozen=True)
class Field:
    """A field of an :class:`Obj`: its node, whether it is required, and the dataclass
    attribute it fills (default: the JSON name in snake_case)."""

    node: Node
    required: bool = False
    attr: str | None = None


@dataclass(frozen=True)
class OneOf:
    """At most one of ``names`` may be set; with ``required``, exactly one."""

    names: tuple[str, ...]
    required: bool = True


Check = Callable[[Any, str, Errors], None]

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


class Obj(Node, Generic[T]):
    """A closed object parsed into the frozen dataclass ``cls``.

    ``fields`` maps JSON names to nodes (or :class:`Field`); ``unsupported`` names fields (with
    an optional hint) that Istio defines and Interlock does not support yet; ``one_of`` lists
    groups of mutually exclusive fields; ``non_empty`` requires at least one field. ``checks``
    run on the parsed dataclass (only when every field was valid) for rules that span fields.
    ``closed=False`` ignores fields the schema does not know instead of refusing them (for
    documents others write into too, such as an Envoy node's metadata).
    """

    def __init__(
        self,
        cls: type[T],
        fields_: Mapping[str, Node | Field],
        *,
        unsupported: Mapping[str, str] | Iterable[str] = (),
        one_of: Sequence[OneOf] = (),
        non_empty: bool = False,
        checks: Sequence[Check] = (),
        describe: str = "an object",
        closed: bool = True,
    ) -> None:
        self.cls = cls
        self.closed = closed
        self.fields = {
            name: spec if isinstance(spec, Field) else Field(spec) for name, spec in fields_.items()
        }
        self.unsupported: dict[str, str] = (
            dict(unsupported)
            if isinstance(unsupported, Mapping)
            else dict.fromkeys(unsupported, "")
        )
        self.one_of = tuple(one_of)
        self.non_empty = non_empty
        self.checks = tuple(checks)
        self.describe = describe
        self._check_definition()

    def _check_definition(self) -> None:
        """Fail at import time when the schema and its dataclass disagree (a programming error)."""
        assert is_dataclass(self.cls), self.cls
        attrs = {f.name for f in fields(self.cls)}
        for name, spec in self.fields.items():
            attr = spec.attr or snake(name)
            if attr not in attrs:
                raise TypeError(f"{self.cls.__name__} has no attribute {attr!r} for {name!r}")
        for group in self.one_of:
            for name in group.names:
                if name not in self.fields:
                    raise TypeError(f"{self.cls.__name__}: one_of names unknown field {name!r}")

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, Mapping):
            return self.wrong_type(value, path, errors)
        before = len(errors)
        kwargs: dict[str, Any] = {}
        present: list[str] = []
        for name, raw in value.items():
            key = str(name)
            at = child(path, key)
            spec = self.fields.get(key)
            if spec is None:
                if self.closed:
                    errors.append(FieldError(at, self._unknown(key)))
                continue
            if raw is None:
                continue
            present.append(key)
            parsed = spec.node.parse(raw, at, errors)
            if parsed is not INVALID:
                kwargs[spec.attr or snake(key)] = parsed
        for name, spec in self.fields.items():
            if spec.required and name not in present:
                errors.append(FieldError(child(path, name), "is required"))
        for group in self.one_of:
            chosen = [n for n in group.names if n in present]
            if len(chosen) > 1:
                errors.append(
                    FieldError(
                        path, f"set only one of {', '.join(group.names)} (got {', '.join(chosen)})"
                    )
                )
            elif not chosen and group.required:
                errors.append(FieldError(path, f"must set one of {', '.join(group.names)}"))
        if self.non_empty and not present and len(errors) == before:
            names = ", ".join(self.fields)
            errors.append(FieldError(path, f"must set at least one of {names}"))
        if len(errors) > before:
            return INVALID
        result = self.cls(**kwargs)
        for check in self.checks:
            check(result, path, errors)
        return INVALID if len(errors) > before else result

    def _unknown(self, key: str) -> str:
        if key in self.unsupported:
            hint = self.unsupported[key]
            return f"{key!r} is not supported by Interlock yet" + (f"; {hint}" if hint else "")
        close = difflib.get_close_matches(key, list(self.fields), n=1, cutoff=0.75)
        if close:
            return f"unknown field {key!r}; did you mean {close[0]!r}?"
        return f"unknown field {key!r}; expected one of: {', '.join(self.fields)}"


def parse(node: Node, value: object, path: str) -> tuple[Any, list[FieldError]]:
    """Parse ``value`` with ``node``: ``(typed value, [])`` or ``(INVALID, errors)``."""
    errors: Errors = []
    result = node.parse(value, path, errors)
    return (INVALID if errors else result), errors
