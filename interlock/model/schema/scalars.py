"""Scalar nodes: strings, RE2 regexes, enums, numbers, booleans, durations."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from interlock.model.errors import FieldError
from interlock.model.schema import values
from interlock.model.schema.base import INVALID, Errors, Node
from interlock.model.schema.re2 import re2_error

E = TypeVar("E", bound=enum.Enum)


class Str(Node):
    """A string; ``check`` returns an error message or ``None``."""

    def __init__(
        self,
        *,
        check: Callable[[str], str | None] | None = None,
        non_empty: bool = False,
        max_length: int | None = None,
        describe: str = "a string",
    ) -> None:
        self.check = check
        self.non_empty = non_empty
        self.max_length = max_length
        self.describe = describe

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return self.wrong_type(value, path, errors)
        if self.non_empty and not value:
            errors.append(FieldError(path, "must not be empty"))
            return INVALID
        if self.max_length is not None and len(value) > self.max_length:
            errors.append(FieldError(path, f"must be at most {self.max_length} characters"))
            return INVALID
        if self.check is not None and (message := self.check(value)):
            errors.append(FieldError(path, message))
            return INVALID
        return value


class Regex(Str):
    """A regular expression RE2 (and so Envoy) accepts."""

    def __init__(self) -> None:
        super().__init__(check=re2_error, non_empty=True, describe="an RE2 regular expression")


class Enum(Node, Generic[E]):
    """One of an enum's values (by name). ``unsupported`` names values Istio has that
    Interlock does not support yet."""

    def __init__(
        self, enum_type: type[E], *, unsupported: Iterable[str] = (), ignore_case: bool = False
    ) -> None:
        self.enum_type = enum_type
        self.unsupported = frozenset(u.upper() if ignore_case else u for u in unsupported)
        self.ignore_case = ignore_case
        self.allowed = [str(m.value) for m in enum_type]
        self.describe = "one of " + ", ".join(self.allowed)

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return self.wrong_type(value, path, errors)
        wanted = value.upper() if self.ignore_case else value
        for member in self.enum_type:
            if member.value == wanted:
                return member
        if wanted in self.unsupported:
            message = f"{value!r} is not supported by Interlock yet; use {self.describe}"
        else:
            message = f"{value!r} is not valid; use {self.describe}"
        errors.append(FieldError(path, message))
        return INVALID


class Int(Node):
    def __init__(
        self, *, minimum: int | None = None, maximum: int | None = None, describe: str = ""
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        if describe:
            self.describe = describe
        elif minimum is not None and maximum is not None:
            self.describe = f"an integer from {minimum} to {maximum}"
        elif minimum is not None:
            self.describe = f"an integer of at least {minimum}"
        else:
            self.describe = "an integer"

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return self.wrong_type(value, path, errors)
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            errors.append(FieldError(path, f"must be {self.describe} (got {value})"))
            return INVALID
        return value


def Port() -> Int:
    return Int(minimum=1, maximum=65535, describe="a port number from 1 to 65535")


class Number(Node):
    def __init__(
        self, *, minimum: float | None = None, maximum: float | None = None, describe: str = ""
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.describe = describe or (
            f"a number from {minimum:g} to {maximum:g}"
            if minimum is not None and maximum is not None
            else "a number"
        )

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self.wrong_type(value, path, errors)
        number = float(value)
        if not math.isfinite(number) or (
            (self.minimum is not None and number < self.minimum)
            or (self.maximum is not None and number > self.maximum)
        ):
            errors.append(FieldError(path, f"must be {self.describe} (got {value})"))
            return INVALID
        return number


def Percentage() -> Number:
    return Number(minimum=0, maximum=100, describe="a percentage from 0 to 100")


class Bool(Node):
    describe = "true or false"

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, bool):
            return self.wrong_type(value, path, errors)
        return value


class Duration(Node):
    """A duration string (``1.5s``, ``100ms``, ``1h30m``) of at least ``minimum_ms`` and to
    millisecond precision (Istio's rule), parsed to a ``timedelta``."""

    def __init__(self, *, minimum_ms: int = 1, whole_seconds: bool = False) -> None:
        self.minimum_ms = minimum_ms
        self.whole_seconds = whole_seconds
        self.describe = "a duration such as 1.5s or 100ms"

    def parse(self, value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, str):
            return self.wrong_type(value, path, errors)
        nanos, message = values.parse_duration(value)
        if nanos is not None:
            message = values.duration_error(
                nanos, minimum_ms=self.minimum_ms, whole_seconds=self.whole_seconds
            )
        if message or nanos is None:
            errors.append(FieldError(path, message or "not a duration"))
            return INVALID
        return values.nanos_to_timedelta(nanos)
