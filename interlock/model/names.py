"""Rules for the names users give things. Each check returns an error message or ``None``."""

from __future__ import annotations

import ipaddress
import re

# DNS-1123 label, as Kubernetes and Istio use for service and namespace names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Instance ids are freer (hostnames, container ids, "b-1"), but still safe in Envoy names.
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
# Label keys and values follow Kubernetes' label syntax (keys may carry a DNS prefix).
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$"
)
# "region", "region/zone" or "region/zone/subzone".
_LOCALITY_PART = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")

MAX_LABELS = 64


def dns_label_error(value: str, what: str) -> str | None:
    if not _DNS_LABEL.match(value):
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
    if not _INSTANCE_ID.match(value):
        return (
            f"instance id {value!r} must be 1-253 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def label_key_error(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and not _LABEL_PREFIX.match(prefix):
        return f"label key {key!r} has an invalid prefix (a DNS subdomain is expected)"
    if not _LABEL_NAME.match(name):
        return (
            f"label key {key!r} must be 1-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def label_value_error(value: str) -> str | None:
    if not _LABEL_VALUE.match(value):
        return (
            f"label value {value!r} must be at most 63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return None


def locality_error(value: str) -> str | None:
    parts = value.split("/")
    if len(parts) > 3 or not all(_LOCALITY_PART.match(p) for p in parts):
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
    if not _HOSTNAME.match(value):
        return f"{value!r} is not a valid host name"
    return None


def port_error(value: int) -> str | None:
    if not 1 <= value <= 65535:
        return f"port {value} must be between 1 and 65535"
    return None
