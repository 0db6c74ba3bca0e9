"""Rules for the names users give things. Each check returns an error message or ``None``."""

from __future__ import annotations

import ipaddress
import re

# Each rule is a pattern that must match the whole value (``fullmatch``: ``$`` alone would let a
# trailing newline through). The API declares the same patterns in its OpenAPI document
# (anchored with ``^…$``, which JSON Schema reads as the whole string), so clients and fuzzers
# know them: keep them in the subset of syntax Python and ECMAScript read alike.

#: DNS-1123 label, as Kubernetes and Istio use for service and namespace names.
DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
#: Instance ids are freer (hostnames, container ids, "b-1"), but still safe in Envoy names.
INSTANCE_ID = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?"
#: Label keys and values follow Kubernetes' label syntax (keys may carry a DNS prefix).
LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
LABEL_PREFIX = r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"
LABEL_KEY = rf"({LABEL_PREFIX}/)?{LABEL_NAME}"
LABEL_VALUE = rf"({LABEL_NAME})?"
#: "region", "region/zone" or "region/zone/subzone".
LOCALITY_PART = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
LOCALITY = rf"{LOCALITY_PART}(/{LOCALITY_PART}){{0,2}}"

_DNS_LABEL = re.compile(DNS_LABEL)
_INSTANCE_ID = re.compile(INSTANCE_ID)
_LABEL_NAME = re.compile(LABEL_NAME)
_LABEL_PREFIX = re.compile(LABEL_PREFIX)
_LABEL_VALUE = re.compile(LABEL_VALUE)
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*"
)
_LOCALITY_PART = re.compile(LOCALITY_PART)

MAX_LABELS = 64


def dns_label_error(value: str, what: str) -> str | None:
    if not _DNS_LABEL.fullmatch(value):
        return (
            f"{what} {value!r} must be a DNS label: 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def service_name_error(value: str) -> str | None:
    return dns_label_error(value, "service name")


def namespace_error(value: str) -> str | None:
    return dns_label_error(value, "namespace")


def instance_id_error(value: str) -> str | None:
    if not _INSTANCE_ID.fullmatch(value):
        return (
            f"instance id {value!r} must be 1-253 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def label_key_error(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and not _LABEL_PREFIX.fullmatch(prefix):
        return f"label key {key!r} has an invalid prefix (a DNS subdomain is expected)"
    if not _LABEL_NAME.fullmatch(name):
        return (
            f"label key {key!r} must be 1-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def label_value_error(value: str) -> str | None:
    if not _LABEL_VALUE.fullmatch(value):
        return (
            f"label value {value!r} must be at most 63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def locality_error(value: str) -> str | None:
    parts = value.split("/")
    if len(parts) > 3 or not all(_LOCALITY_PART.fullmatch(p) for p in parts):
        return f"locality {value!r} must be 'region', 'region/zone' or 'region/zone/subzone'"
    return None


def address_error(value: str) -> str | None:
    """An instance address is an IP literal (Envoy endpoints are IPs)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"address {value!r} must be an IPv4 or IPv6 address"
    return None


def hostname_error(value: str) -> str | None:
    if not _HOSTNAME.fullmatch(value):
        return f"{value!r} is not a valid host name"
    return None


def port_error(value: int) -> str | None:
    if not 1 <= value <= 65535:
        return f"port {value} must be between 1 and 65535"
    return None
