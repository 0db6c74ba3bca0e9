"""RequestAuthentication (security.istio.io): which JWTs a workload accepts (issuer, keys,
audiences, where the token is read from). A request with an invalid token is rejected; one
without a token is let through (an AuthorizationPolicy decides whether that is allowed).

The keys are public keys, given inline (``jwks``) or as the URI of the issuer's key set
(``jwksUri``), which the control plane fetches itself, keeps current and inlines into the
proxies' configuration (:class:`FetchedKeys`; see ``interlock.security.jwks``). A symmetric key
(``kty: oct``) is a secret, which has no place in a policy that is shown by the API and sent to
every proxy. Interlock does not discover key sets from the issuer (OpenID discovery) yet."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from interlock.model.errors import FieldError
from interlock.model.policy.common import WORKLOAD_SELECTOR, WorkloadSelector, header_name
from interlock.model.schema import Bool, Errors, Field, ListOf, Obj, Str, child, item
from interlock.model.schema.values import header_write_error


@dataclass(frozen=True)
class JWTHeader:
    name: str
    prefix: str | None = None


@dataclass(frozen=True)
class ClaimToHeader:
    """Copy the verified token's ``claim`` (nested claims as ``a.b``) to request ``header``."""

    header: str
    claim: str


@dataclass(frozen=True)
class JWTRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str | None = None
    jwks_uri: str | None = None
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str | None = None
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()


@dataclass(frozen=True)
class FetchedKeys:
    """What the control plane holds of one ``jwksUri``: the last key set that was fetched and
    valid (a JSON Web Key Set, None before the first good fetch), and why the last attempt
    failed (None when it succeeded). It is run-time state, not stored: the reconciler puts it
    into :attr:`MeshState.fetched_keys` for the translator."""

    keys: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class RequestAuthentication:
    selector: WorkloadSelector | None = None
    jwt_rules: tuple[JWTRule, ...] = ()


#: The key types Envoy's jwt_authn verifies with a public key.
PUBLIC_KEY_TYPES = ("RSA", "EC", "OKP")


#: The curve each ECDSA algorithm signs with (RFC 7518 3.4).
_ALG_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
#: Each curve's prime ``p`` and coefficient ``b`` (``y² = x³ - 3x + b mod p``; FIPS 186-4 D.1.2).
_CURVES = {
    "P-256": (
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    ),
    "P-384": (
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        int(
            "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a"
            "c656398d8a2ed19d2a85c8edd3ec2aef",
            16,
        ),
    ),
    "P-521": (
        2**521 - 1,
        int(
            "0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef1"
            "09e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00",
            16,
        ),
    ),
}
#: Measured with Envoy 1.40: a 512-bit RSA modulus is accepted, a 96-bit one refused.
MIN_RSA_BITS = 512


def _b64_number(key: dict[str, object], name: str) -> int:
    return int.from_bytes(_b64_bytes(key, name), "big")


def _b64_bytes(key: dict[str, object], name: str) -> bytes:
    value = key.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is missing")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not base64url") from None


def public_key_error(key: dict[str, object]) -> str | None:
    """Why Envoy's ``jwt_authn`` would refuse the public key ``key`` (one bad key fails the
    whole key set, and the listener with it), or None. Envoy's rules, as measured in
    ``tests/security/test_jwks_keys.py`` against ``envoy --mode validate``: an ``alg`` of the
    key's type, the curve of an ECDSA algorithm, a point on the curve, an RSA modulus that is
    odd and not tiny, an Ed25519 key of 32 bytes."""
    kty, alg = key.get("kty"), key.get("alg")
    if alg is not None and not isinstance(alg, str):
        return "alg is not a string"
    try:
        if kty == "RSA":
            if alg and not alg.startswith(("RS", "PS")):
                return f"alg {alg!r} is not an RSA algorithm (RS*, PS*)"
            n, e = _b64_number(key, "n"), _b64_number(key, "e")
            if n.bit_length() < MIN_RSA_BITS or n % 2 == 0:
                return f"n is not an RSA modulus (odd, at least {MIN_RSA_BITS} bits)"
            if e < 3 or e % 2 == 0:
                return "e is not an RSA public exponent"
            return None
        if kty == "EC":
            if alg and alg not in _ALG_CURVES:
                return f"alg {alg!r} is not an ECDSA algorithm ({', '.join(_ALG_CURVES)})"
            crv = key.get("crv", _ALG_CURVES.get(alg or "", "P-256"))
            if not isinstance(crv, str) or crv not in _CURVES:
                return f"crv {crv!r} is not one of {', '.join(_CURVES)}"
            if alg and _ALG_CURVES[alg] != crv:
                return f"alg {alg} signs with {_ALG_CURVES[alg]}, not {crv}"
            p, b = _CURVES[crv]
            x, y = _b64_number(key, "x"), _b64_number(key, "y")
            if x >= p or y >= p or (y * y - (x * x * x - 3 * x + b)) % p != 0:
                return f"(x, y) is not a point of {crv}"
            return None
        if kty == "OKP":
            if key.get("crv") != "Ed25519":
                return f"crv {key.get('crv')!r}: only Ed25519 keys verify signatures"
            if alg and alg != "EdDSA":
                return f"alg {alg!r} is not EdDSA"
            if len(_b64_bytes(key, "x")) != 32:
                return "x is not an Ed25519 public key (32 bytes)"
            return None
    except ValueError as exc:
        return str(exc)
    return f"kty {kty!r} is not one of {', '.join(PUBLIC_KEY_TYPES)}"


def jwks_error(value: str) -> str | None:
    """A JSON Web Key Set (inline, or as fetched): a JSON object with a ``keys`` list of
    public keys Envoy can use (:func:`public_key_error`)."""
    try:
        document = json.loads(value)
    except ValueError as e:
        return f"is not valid JSON: {e}"
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        return 'must be a JSON Web Key Set: {"keys": [{...}, ...]}'
    for index, key in enumerate(keys):
        kty = key.get("kty")
        if not isinstance(kty, str):
            return f"keys[{index}] needs a kty (key type)"
        if kty == "oct":
            return (
                f"keys[{index}] is a symmetric key (kty oct): a secret cannot be put in a "
                "policy; sign the tokens with a private key and give its public key "
                f"({', '.join(PUBLIC_KEY_TYPES)})"
            )
        if kty not in PUBLIC_KEY_TYPES:
            return f"keys[{index}]: kty {kty!r} is not one of {', '.join(PUBLIC_KEY_TYPES)}"
        if (error := public_key_error(key)) is not None:
            kid = key.get("kid")
            name = f"keys[{index}]" + (f" (kid {kid!r})" if isinstance(kid, str) else "")
            return f"{name} cannot verify tokens: {error}"
    return None


#: The longest ``jwksUri`` accepted.
MAX_URI_LENGTH = 2048


def is_loopback_host(host: str) -> bool:
    """``localhost`` or an address of 127.0.0.0/8 or ::1: a host no network lies between."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def jwks_uri_error(value: str) -> str | None:
    """An absolute ``https`` URL without credentials or fragment (``http`` only to a loopback
    host, where no network lies between the control plane and the issuer)."""
    if len(value) > MAX_URI_LENGTH:
        return f"must be at most {MAX_URI_LENGTH} characters"
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        return f"is not a valid URL: {e}"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https URL (https://issuer.example.com/keys.json)"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials: a policy is shown by the API and sent to proxies"
    if parts.fragment:
        return "must not have a fragment (#...)"
    if parts.scheme == "http" and not is_loopback_host(host):
        return (
            "must be https: the keys decide who is authenticated, so they are fetched over "
            "verified TLS (plain http only from a loopback issuer: 127.0.0.1, ::1, localhost)"
        )
    return None


#: A cookie name is an RFC 6265 token.
_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def cookie_name_error(value: str) -> str | None:
    if not _COOKIE_NAME.match(value):
        return (
            f"{value!r} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~; no "
            "spaces, '=', ';' or quotes)"
        )
    return None


def claim_header_error(value: str) -> str | None:
    """A header a verified claim is written to: a plain request header (not Host, not a
    pseudo-header)."""
    return header_write_error(value, request=False)


def _check_rule(rule: JWTRule, path: str, errors: Errors) -> None:
    if rule.jwks is None and rule.jwks_uri is None:
        errors.append(
            FieldError(
                child(path, "jwksUri"),
                "one of jwks or jwksUri is required: Interlock does not discover key sets "
                "from the issuer (OpenID discovery) yet; give the key set's URI or the "
                "issuer's public keys inline",
            )
        )
    elif rule.jwks is not None and rule.jwks_uri is not None:
        errors.append(
            FieldError(
                child(path, "jwksUri"),
                "give either jwks (the keys inline) or jwksUri (where to fetch them), not both",
            )
        )
    headers = [c.header.lower() for c in rule.output_claim_to_headers]
    if rule.output_payload_to_header is not None:
        headers.append(rule.output_payload_to_header.lower())
    for index, claim in enumerate(rule.output_claim_to_headers):
        if headers.count(claim.header.lower()) > 1:
            errors.append(
                FieldError(
                    child(item(child(path, "outputClaimToHeaders"), index), "header"),
                    f"header {claim.header!r} is written twice (each claim, and the payload, "
                    "needs a header of its own)",
                )
            )


JWT_RULE: Obj[JWTRule] = Obj(
    JWTRule,
    {
        "issuer": Field(Str(non_empty=True), required=True),
        "audiences": ListOf(Str(non_empty=True)),
        "jwks": Str(check=jwks_error, non_empty=True),
        "jwksUri": Str(check=jwks_uri_error, non_empty=True, describe="an https URL"),
        "fromHeaders": ListOf(
            Obj(
                JWTHeader,
                {"name": Field(header_name(), required=True), "prefix": Str()},
            )
        ),
        "fromParams": ListOf(Str(non_empty=True)),
        "fromCookies": ListOf(Str(check=cookie_name_error, non_empty=True), unique=lambda c: c),
        "forwardOriginalToken": Bool(),
        "outputPayloadToHeader": header_name(),
        "outputClaimToHeaders": ListOf(
            Obj(
                ClaimToHeader,
                {
                    "header": Field(
                        Str(check=claim_header_error, non_empty=True, describe="a header name"),
                        required=True,
                    ),
                    "claim": Field(Str(non_empty=True, max_length=256), required=True),
                },
            )
        ),
    },
    unsupported={
        "timeout": "the control plane fetches jwksUri itself, with its own bounded timeout",
    },
    checks=[_check_rule],
)

SPEC: Obj[RequestAuthentication] = Obj(
    RequestAuthentication,
    {"selector": WORKLOAD_SELECTOR, "jwtRules": ListOf(JWT_RULE)},
    unsupported=["targetRef", "targetRefs"],
)
