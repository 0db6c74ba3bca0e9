"""Istio's match values turned into Envoy matchers: the pure, fiddly part of AuthorizationPolicy.

Istio's string values match exactly, by prefix (``abc*``), suffix (``*abc``) or presence
(``*``). What each one is matched against:

- ``principals``: the peer certificate's URI SAN, ``spiffe://<value>`` (``cluster.local/...``,
  Istio's default trust domain, names this mesh's trust domain; a value may also be written
  with its ``spiffe://``);
- ``namespaces``: the ``/ns/<namespace>/`` segment of that URI SAN;
- ``requestPrincipals``: ``<iss>/<sub>`` of the JWT that ``jwt_authn`` validated. Envoy keeps
  ``iss`` and ``sub`` apart (in dynamic metadata), so a value becomes the alternatives of where
  the ``/`` between them may fall (:func:`request_principal_alternatives`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from envoy.type.matcher.v3 import regex_pb2, string_pb2

from interlock.model.schema.re2 import literal

ISTIO_DEFAULT_TRUST_DOMAIN = "cluster.local"
SPIFFE = "spiffe://"


class Kind(enum.Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    PRESENT = "present"


@dataclass(frozen=True)
class Pattern:
    """One Istio match value, parsed: ``text`` is what is left once the ``*`` is removed."""

    kind: Kind
    text: str = ""


def pattern(value: str) -> Pattern:
    """``*`` → presence, ``abc*`` → prefix, ``*abc`` → suffix, anything else exact (a ``*``
    elsewhere is refused when the policy is validated)."""
    if value == "*":
        return Pattern(Kind.PRESENT)
    if value.endswith("*"):
        return Pattern(Kind.PREFIX, value[:-1])
    if value.startswith("*"):
        return Pattern(Kind.SUFFIX, value[1:])
    return Pattern(Kind.EXACT, value)


def re2_escape(text: str) -> str:
    """``text`` as a literal in an RE2 expression (the model's rule, which also checks that
    the regexes built here stay within Envoy's RE2 program size)."""
    return literal(text)


def string_matcher(p: Pattern, *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    """``p`` as an Envoy string matcher (presence: any string, even empty)."""
    if p.kind is Kind.PREFIX and p.text:
        return string_pb2.StringMatcher(prefix=p.text, ignore_case=ignore_case)
    if p.kind is Kind.SUFFIX and p.text:
        return string_pb2.StringMatcher(suffix=p.text, ignore_case=ignore_case)
    if p.kind is Kind.EXACT:
        return string_pb2.StringMatcher(exact=p.text, ignore_case=ignore_case)
    return string_pb2.StringMatcher(safe_regex=_regex(".*"))


def _regex(expression: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=expression)


def regex_matcher(expression: str) -> string_pb2.StringMatcher:
    """A full-match RE2 ``expression``."""
    return string_pb2.StringMatcher(safe_regex=_regex(expression))


# --- peers (mTLS) -------------------------------------------------------------------------


def spiffe_uri(principal: str, trust_domain: str) -> str:
    """``spiffe://`` + an Istio principal (``<trust-domain>/ns/<ns>/sa/<sa>``, with or without
    the ``spiffe://`` already), reading Istio's default trust domain ``cluster.local`` as this
    mesh's."""
    if principal.startswith(SPIFFE):
        principal = principal[len(SPIFFE) :]
    head = ISTIO_DEFAULT_TRUST_DOMAIN + "/"
    if principal.startswith(head):
        principal = f"{trust_domain}/{principal[len(head) :]}"
    return SPIFFE + principal


def principal_matcher(value: str, trust_domain: str) -> string_pb2.StringMatcher:
    """What the peer's URI SAN must be for an Istio ``principals`` value."""
    p = pattern(value)
    if p.kind is Kind.PRESENT:
        return regex_matcher(".+")
    if p.kind is Kind.SUFFIX:
        return string_matcher(p)
    # Exact or prefix: both start at the trust domain.
    return string_matcher(Pattern(p.kind, spiffe_uri(p.text, trust_domain)))


def _segment(p: Pattern) -> str:
    """A path segment matching ``p`` (no ``/`` inside)."""
    text = re2_escape(p.text)
    return {
        Kind.PRESENT: "[^/]+",
        Kind.PREFIX: text + "[^/]*",
        Kind.SUFFIX: "[^/]*" + text,
        Kind.EXACT: text,
    }[p.kind]


def namespace_matcher(value: str) -> string_pb2.StringMatcher:
    """What the peer's URI SAN must be for an Istio ``namespaces`` value: a SPIFFE ID whose
    namespace segment matches it."""
    return regex_matcher(f"spiffe://[^/]+/ns/{_segment(pattern(value))}/sa/[^/]+")


# --- request principals (JWT) -------------------------------------------------------------

#: One way ``<iss>/<sub>`` can match: conditions on the claims, all of which must hold.
Alternative = tuple[tuple[str, Pattern], ...]


def request_principal_alternatives(value: str) -> list[Alternative]:
    """The ways ``<iss>/<sub>`` can match the Istio ``requestPrincipals`` value ``value``, each
    a set of conditions on the ``iss`` and ``sub`` claims (all must hold); the value matches
    when any alternative does. An empty list never matches.

    The ``/`` joining ``iss`` and ``sub`` may be any ``/`` of the value (issuers are often URLs),
    so each one is an alternative: ``https://a/b`` is ``iss == "https:"`` and ``sub == "/a/b"``,
    or ``iss == "https:/"`` and ``sub == "a/b"``, ... A prefix may also end inside ``iss``, a
    suffix inside ``sub``.
    """
    p = pattern(value)
    slashes = [i for i, c in enumerate(p.text) if c == "/"]
    present = Pattern(Kind.PRESENT)

    def part(kind: Kind, text: str) -> Pattern:
        # An empty prefix or suffix is only presence.
        return present if kind in (Kind.PREFIX, Kind.SUFFIX) and not text else Pattern(kind, text)

    if p.kind is Kind.PRESENT:
        return [(("iss", present),)]
    found: list[Alternative] = []
    if p.kind is Kind.EXACT:
        for i in slashes:
            found.append(
                (
                    ("iss", Pattern(Kind.EXACT, p.text[:i])),
                    ("sub", part(Kind.EXACT, p.text[i + 1 :])),
                )
            )
    elif p.kind is Kind.PREFIX:
        found.append((("iss", part(Kind.PREFIX, p.text)),))
        for i in slashes:
            found.append(
                (
                    ("iss", Pattern(Kind.EXACT, p.text[:i])),
                    ("sub", part(Kind.PREFIX, p.text[i + 1 :])),
                )
            )
    else:  # suffix
        found.append((("iss", present), ("sub", part(Kind.SUFFIX, p.text))))
        for i in slashes:
            found.append(
                (
                    ("iss", part(Kind.SUFFIX, p.text[:i])),
                    ("sub", Pattern(Kind.EXACT, p.text[i + 1 :])),
                )
            )
    return found
