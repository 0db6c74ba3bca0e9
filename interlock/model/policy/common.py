"""Types shared by several policy kinds (Istio's ``StringMatch``, ``Destination``,
``WorkloadSelector``, ``Percent``, header operations) and their schemas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interlock.model import names
from interlock.model.errors import FieldError
from interlock.model.export import export_to_errors
from interlock.model.frozen import EMPTY_MAP
from interlock.model.policy.hosts import dns_label_error, wildcard_host_error
from interlock.model.schema import (
    INVALID,
    Errors,
    Field,
    ListOf,
    MapOf,
    Node,
    Number,
    Obj,
    OneOf,
    Port,
    Regex,
    Str,
    child,
    item,
)
from interlock.model.schema.values import header_name_error, header_value_error, header_write_error


def no_map() -> Mapping[Any, Any]:
    """An empty frozen map (a dataclass field default)."""
    return EMPTY_MAP


# --- labels and selectors -----------------------------------------------------------------


def _label_key(value: str) -> str | None:
    return names.label_key_error(value)


def _label_value(value: str) -> str | None:
    if "*" in value:
        return f"label value {value!r}: wildcards are not supported in selectors"
    return names.label_value_error(value)


def label_map() -> MapOf:
    """Kubernetes-style labels (``version: v1``)."""
    return MapOf(Str(check=_label_key), Str(check=_label_value), what="label")


@dataclass(frozen=True)
class WorkloadSelector:
    """Istio's ``selector``: the workloads (instances) whose labels include ``match_labels``."""

    match_labels: Mapping[str, str] = field(default_factory=no_map)


WORKLOAD_SELECTOR: Obj[WorkloadSelector] = Obj(
    WorkloadSelector,
    {"matchLabels": MapOf(Str(check=_label_key), Str(check=_label_value), min_items=1)},
    non_empty=True,
)


# --- string matches -----------------------------------------------------------------------


@dataclass(frozen=True)
class StringMatch:
    """Exactly one of ``exact``, ``prefix``, ``regex`` (RE2) — or none, where Istio lets an
    empty match mean "present" (header matches)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


def string_match(*, allow_empty: bool = False, allow_prefix: bool = True) -> Obj[StringMatch]:
    fields: dict[str, Str] = {"exact": Str(), "regex": Regex()}
    unsupported: dict[str, str] = {}
    if allow_prefix:
        fields["prefix"] = Str(non_empty=True)
    else:
        unsupported["prefix"] = "prefix matching is not available here; use exact or regex"
    return Obj(
        StringMatch,
        fields,
        one_of=[OneOf(tuple(fields), required=not allow_empty)],
        unsupported=unsupported,
        describe="a string match (exact, prefix or regex)",
    )


STRING_MATCH = string_match()


# --- percentages, ports, destinations -----------------------------------------------------


@dataclass(frozen=True)
class Percent:
    """Istio's ``Percent``: ``{value: 0..100}`` (a double)."""

    value: float = 0.0


def _percent_check(percent: Percent, path: str, errors: Errors) -> None:
    if 0 < percent.value < 0.0001:
        errors.append(
            FieldError(child(path, "value"), "must be 0 or from 0.0001 to 100 (Istio's rule)")
        )


PERCENT: Obj[Percent] = Obj(
    Percent,
    {"value": Number(minimum=0, maximum=100, describe="a percentage from 0 to 100")},
    checks=[_percent_check],
    describe="a percentage object ({value: 0..100})",
)


@dataclass(frozen=True)
class PortSelector:
    number: int = 0


PORT_SELECTOR: Obj[PortSelector] = Obj(PortSelector, {"number": Field(Port(), required=True)})


def subset_name_error(value: str) -> str | None:
    return dns_label_error(value, "subset name")


def destination_host_error(value: str) -> str | None:
    if value == "*":
        return "'*' is not a valid destination host"
    return wildcard_host_error(value)


@dataclass(frozen=True)
class Destination:
    """Where traffic goes: a host (a service or a ServiceEntry host), optionally one subset of
    it (defined by a DestinationRule) and a port."""

    host: str
    subset: str | None = None
    port: PortSelector | None = None


DESTINATION: Obj[Destination] = Obj(
    Destination,
    {
        "host": Field(Str(check=destination_host_error, non_empty=True), required=True),
        "subset": Str(check=subset_name_error),
        "port": PORT_SELECTOR,
    },
)


# --- header operations ----------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderOperations:
    """Istio's ``HeaderOperations``: overwrite (``set``), append (``add``) and ``remove``."""

    set: Mapping[str, str] = field(default_factory=no_map)
    add: Mapping[str, str] = field(default_factory=no_map)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headers:
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


def _header_operations(*, request: bool) -> Obj[HeaderOperations]:
    def writable(name: str) -> str | None:
        return header_write_error(name, request=request)

    def removable(name: str) -> str | None:
        return header_write_error(name, request=False)

    value = Str(check=header_value_error)
    return Obj(
        HeaderOperations,
        {
            "set": MapOf(Str(check=writable), value),
            "add": MapOf(Str(check=writable), value),
            "remove": ListOf(Str(check=removable)),
        },
    )


HEADERS: Obj[Headers] = Obj(
    Headers,
    {"request": _header_operations(request=True), "response": _header_operations(request=False)},
)


def header_name() -> Str:
    return Str(check=header_name_error, describe="a header name")


def namespace_name() -> Str:
    return Str(check=lambda v: dns_label_error(v, "namespace"), describe="a namespace")


# --- exportTo -------------------------------------------------------------------------------


class ExportTo(Node):
    """Istio's ``exportTo`` (see :mod:`interlock.model.export`): a list of namespaces, ``.``,
    ``*`` or ``~``, parsed to a tuple (empty: every namespace)."""

    describe = "a list of namespaces ('.', '*', '~' or names)"

    def parse(self, value: object, path: str, errors: Errors) -> object:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            errors.append(FieldError(path, f"must be {self.describe}"))
            return INVALID
        found = export_to_errors(value)
        for index, message in found:
            errors.append(FieldError(path if index is None else item(path, index), message))
        return INVALID if found else tuple(value)


EXPORT_TO = ExportTo()
