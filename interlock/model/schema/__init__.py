"""The declarative schema toolkit policy specs are written in: :mod:`.nodes` (objects, lists,
maps), :mod:`.scalars`, :mod:`.base` (nodes, paths), :mod:`.values` and :mod:`.re2` (rules)."""

from interlock.model.schema.base import INVALID, Errors, Node, child, item
from interlock.model.schema.nodes import Field, ListOf, MapOf, Obj, OneOf, parse
from interlock.model.schema.re2 import re2_error
from interlock.model.schema.scalars import (
    Bool,
    Duration,
    Enum,
    Int,
    Number,
    Percentage,
    Port,
    Regex,
    Str,
)

__all__ = [
    "INVALID",
    "Bool",
    "Duration",
    "Enum",
    "Errors",
    "Field",
    "Int",
    "ListOf",
    "MapOf",
    "Node",
    "Number",
    "Obj",
    "OneOf",
    "Percentage",
    "Port",
    "Regex",
    "Str",
    "child",
    "item",
    "parse",
    "re2_error",
]
