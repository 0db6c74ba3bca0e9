"""SPIFFE IDs: ``spiffe://<trust-domain>/<path>``, validated per the SPIFFE-ID standard.

Rules (each broken rule raises :class:`~interlock.model.errors.InvalidInput` whose message
names it, with the offending field's path in ``errors``):

- the whole ID is at most 2048 bytes;
- the scheme is ``spiffe``, lowercase, followed by ``://``;
- no query (``?``), fragment (``#``) or percent-encoding (``%``);
- the trust domain is non-empty, at most 255 bytes, has no userinfo (``@``) and no port
  (``:``), and uses only ``a-z 0-9 . - _``;
- the path is empty or ``/``-separated segments; segments are non-empty (so no ``//`` and no
  trailing ``/``), are not ``.`` or ``..``, and use only ``a-z A-Z 0-9 . - _``.

Interlock names each service ``spiffe://<trust-domain>/ns/<namespace>/sa/<service>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from interlock.ca._errors import invalid

SCHEME = "spiffe"
DEFAULT_TRUST_DOMAIN = "interlock.local"
MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255

_TRUST_DOMAIN_CHARS = re.compile(r"^[a-z0-9._-]+$")
_SEGMENT_CHARS = re.compile(r"^[a-zA-Z0-9._-]+$")


def validate_trust_domain(name: str, *, field: str = "trust_domain") -> str:
    """Return ``name`` when it is a valid trust domain name; raise :class:`InvalidInput`.

    ``field`` is the path reported in the error (e.g. ``ca.trust_domain``).
    """
    if not name:
        raise invalid(field, "the trust domain must not be empty")
    if "@" in name:
        raise invalid(field, f"trust domain {name!r} must not carry userinfo ('@')")
    if ":" in name:
        raise invalid(field, f"trust domain {name!r} must not carry a port (':')")
    if len(name.encode()) > MAX_TRUST_DOMAIN_BYTES:
        raise invalid(
            field, f"the trust domain must be at most {MAX_TRUST_DOMAIN_BYTES} bytes long"
        )
    if "%" in name:
        raise invalid(field, f"trust domain {name!r} must not be percent-encoded ('%')")
    if not _TRUST_DOMAIN_CHARS.match(name):
        raise invalid(
            field,
            f"trust domain {name!r} may use only lowercase letters, digits, '.', '-' and '_'",
        )
    return name


def validate_path_segment(segment: str, *, field: str) -> str:
    """Return ``segment`` when it may be one segment of a SPIFFE ID path; raise otherwise."""
    if not segment:
        raise invalid(field, "path segments must not be empty (no '//' and no trailing '/')")
    if segment in (".", ".."):
        raise invalid(field, f"path segments must not be '.' or '..' (got {segment!r})")
    if "%" in segment:
        raise invalid(field, f"path segment {segment!r} must not be percent-encoded ('%')")
    if not _SEGMENT_CHARS.match(segment):
        raise invalid(
            field,
            f"path segment {segment!r} may use only letters, digits, '.', '-' and '_'",
        )
    return segment


def _validate_path(path: str, field: str) -> None:
    if not path:
        return
    if not path.startswith("/"):
        raise invalid(field, f"the path {path!r} must start with '/'")
    for segment in path[1:].split("/"):
        validate_path_segment(segment, field=field)


@dataclass(frozen=True, order=True)
class SpiffeId:
    """A valid SPIFFE ID. ``path`` is ``""`` (the trust domain itself) or ``/seg/seg...``.

    Constructing one validates it, so every instance obeys the rules of this module.
    ``str(id)`` is the canonical URI; ``SpiffeId.parse(str(id)) == id``.
    """

    trust_domain: str
    path: str = ""

    def __post_init__(self) -> None:
        validate_trust_domain(self.trust_domain)
        _validate_path(self.path, "path")
        if len(str(self).encode()) > MAX_ID_BYTES:
            raise invalid("path", f"a SPIFFE ID must be at most {MAX_ID_BYTES} bytes long")

    def __str__(self) -> str:
        return f"{SCHEME}://{self.trust_domain}{self.path}"

    @property
    def is_trust_domain(self) -> bool:
        """True for the path-less ID naming the trust domain (a CA's ID, never a leaf's)."""
        return not self.path

    @classmethod
    def parse(cls, text: str, *, field: str = "spiffe_id") -> SpiffeId:
        """Parse ``text``; raise :class:`InvalidInput` at ``field`` naming the rule broken."""
        if len(text.encode()) > MAX_ID_BYTES:
            raise invalid(field, f"a SPIFFE ID must be at most {MAX_ID_BYTES} bytes long")
        scheme, sep, rest = text.partition("://")
        if not sep:
            raise invalid(field, f"{text!r} is not a SPIFFE ID: it must start with 'spiffe://'")
        if scheme != SCHEME:
            raise invalid(field, f"the scheme must be 'spiffe' in lowercase (got {scheme!r})")
        if "#" in rest:
            raise invalid(field, "a SPIFFE ID must not have a fragment ('#')")
        if "?" in rest:
            raise invalid(field, "a SPIFFE ID must not have a query ('?')")
        if "%" in rest:
            raise invalid(field, "a SPIFFE ID must not use percent-encoding ('%')")
        authority, slash, path = rest.partition("/")
        validate_trust_domain(authority, field=field)
        path = slash + path
        if path == "/":
            raise invalid(field, "path segments must not be empty (no '//' and no trailing '/')")
        _validate_path(path, field)
        return cls(authority, path)

    @classmethod
    def for_trust_domain(cls, trust_domain: str) -> SpiffeId:
        """``spiffe://<trust-domain>``: the ID a signing CA carries."""
        return cls(validate_trust_domain(trust_domain))

    @classmethod
    def for_service(cls, trust_domain: str, namespace: str, service: str) -> SpiffeId:
        """``spiffe://<trust-domain>/ns/<namespace>/sa/<service>``: one service's identity."""
        validate_trust_domain(trust_domain)
        validate_path_segment(namespace, field="namespace")
        validate_path_segment(service, field="service")
        return cls(trust_domain, f"/ns/{namespace}/sa/{service}")
