"""Rules for scalar values in policy specs. Each check returns an error message or ``None``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from decimal import Decimal, InvalidOperation

# A Go/Kubernetes duration ("1h30m", "1.5s", "100ms"); protobuf JSON's "1.5s" is one of them.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_NS = {
    "h": 3_600_000_000_000,
    "m": 60_000_000_000,
    "s": 1_000_000_000,
    "ms": 1_000_000,
    "us": 1_000,
    "µs": 1_000,
    "ns": 1,
}
_MAX_DURATION_NS = 315_576_000_000 * 1_000_000_000  # protobuf's Duration bound
_MS_NS = 1_000_000

# Istio's header-name rule.
_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
)


def parse_duration(text: str) -> tuple[int | None, str | None]:
    """``text`` as nanoseconds, or an error. Accepts ``1.5s``, ``100ms``, ``1h30m``."""
    if not text:
        return None, "must be a duration such as 1.5s or 100ms (got an empty string)"
    pos = 0
    total = Decimal(0)
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            return (
                None,
                f"{text!r} is not a duration: write a number and a unit, e.g. 1.5s or 100ms",
            )
        try:
            total += Decimal(m.group(1)) * _UNIT_NS[m.group(2)]
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            return None, f"{text!r} is not a duration"
        pos = m.end()
    if total > _MAX_DURATION_NS:
        return None, f"{text!r} is longer than the largest duration Envoy accepts"
    if total != total.to_integral_value():
        return None, f"{text!r} is more precise than a nanosecond"
    return int(total), None


def duration_error(nanos: int, *, minimum_ms: int = 1, whole_seconds: bool = False) -> str | None:
    """Istio's duration rule: at least ``minimum_ms`` and whole milliseconds (or seconds)."""
    if nanos < minimum_ms * _MS_NS:
        return f"must be at least {minimum_ms}ms"
    if nanos == 0:
        return None
    if whole_seconds and nanos % 1_000_000_000:
        return "must be a whole number of seconds"
    if nanos % _MS_NS:
        return "only durations to millisecond precision are supported"
    return None


def nanos_to_timedelta(nanos: int) -> dt.timedelta:
    return dt.timedelta(microseconds=nanos // 1000)


def header_name_error(name: str) -> str | None:
    if not name:
        return "a header name cannot be empty"
    if not _HEADER_NAME.match(name):
        return f"{name!r} is not a valid header name (letters, digits, '-' and '_')"
    return None


def header_write_error(name: str, *, request: bool) -> str | None:
    """Headers a route may set, add or remove: no pseudo-headers, and ``Host`` only as the
    request's authority (Istio's rule)."""
    if not name:
        return "a header name cannot be empty"
    lowered = name.lower()
    if request and lowered in (":authority", "host"):
        return None
    if lowered == "host":
        return "the Host header cannot be changed here"
    if name.startswith(":"):
        return f"{name!r}: pseudo-headers (':' prefix) cannot be changed"
    return header_name_error(name)


def header_value_error(value: str) -> str | None:
    """No control characters; ``%`` only as ``%%`` or around an Envoy variable (``%HOSTNAME%``)."""
    if _CONTROL.search(value):
        return "a header value cannot contain control characters"
    if value.replace("%%", "").count("%") % 2:
        return f"{value!r}: write a literal '%' as '%%'"
    return None


def ip_error(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def ip_or_cidr_error(value: str) -> str | None:
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not a valid CIDR block"
        return None
    return ip_error(value)


def is_prime(value: int) -> bool:
    if value < 2:
        return False
    if value < 4:
        return True
    if value % 2 == 0:
        return False
    factor = 3
    while factor * factor <= value:
        if value % factor == 0:
            return False
        factor += 2
    return True
