"""The base of the schema toolkit: :class:`Node`, the :data:`INVALID` marker and field paths."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from interlock.model.errors import FieldError

Errors = list[FieldError]


class _Invalid:
    _instance: _Invalid | None = None

    def __new__(cls) -> _Invalid:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INVALID"

    def __bool__(self) -> bool:
        return False


#: What :meth:`Node.parse` returns for a value it rejected (the reasons are in ``errors``).
INVALID: Any = _Invalid()

_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def child(path: str, name: str) -> str:
    """The path of field ``name`` inside ``path``; odd keys are quoted (``labels["a.b/c"]``)."""
    if not _SIMPLE_KEY.match(name):
        return f'{path}["{name}"]'
    return f"{path}.{name}" if path else name


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


class Node:
    """One kind of value. Subclasses implement :meth:`parse`; ``describe`` is how messages
    and docs name what the node accepts."""

    describe = "a value"

    def parse(self, value: object, path: str, errors: Errors) -> Any:  # pragma: no cover
        raise NotImplementedError

    def wrong_type(self, value: object, path: str, errors: Errors) -> Any:
        errors.append(FieldError(path, f"must be {self.describe}, not {_type_name(value)}"))
        return INVALID
