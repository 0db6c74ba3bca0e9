"""RequestAuthentication (security.istio.io): which JWTs a workload accepts (issuer, keys,
audiences, where the token is read from). A request with an invalid token is rejected; one
without a token is let through (an AuthorizationPolicy decides whether that is allowed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from interlock.model.errors import FieldError
from interlock.model.policy.common import WORKLOAD_SELECTOR, WorkloadSelector, header_name
from interlock.model.schema import Bool, Errors, Field, ListOf, Obj, Str


@dataclass(frozen=True)
class JWTHeader:
    name: str
    prefix: str | None = None


@dataclass(frozen=True)
class JWTRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str | None = None


@dataclass(frozen=True)
class RequestAuthentication:
    selector: WorkloadSelector | None = None
    jwt_rules: tuple[JWTRule, ...] = ()


def jwks_uri_error(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return f"{value!r} is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return f"{value!r}: the scheme must be http or https"
    if not parts.hostname:
        return f"{value!r} has no host"
    if port == 0:
        return f"{value!r}: port 0 is not valid"
    return None


def jwks_error(value: str) -> str | None:
    """An inline JSON Web Key Set: a JSON object with a ``keys`` list of objects."""
    try:
        document = json.loads(value)
    except ValueError as e:
        return f"is not valid JSON: {e}"
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        return 'must be a JSON Web Key Set: {"keys": [{...}, ...]}'
    for key in keys:
        if not isinstance(key.get("kty"), str):
            return "every key needs a kty (key type)"
    return None


def _check_rule(rule: JWTRule, path: str, errors: Errors) -> None:
    if rule.jwks is not None and rule.jwks_uri is not None:
        errors.append(FieldError(path, "set jwks or jwksUri, not both"))


JWT_RULE: Obj[JWTRule] = Obj(
    JWTRule,
    {
        "issuer": Field(Str(non_empty=True), required=True),
        "audiences": ListOf(Str(non_empty=True)),
        "jwksUri": Str(check=jwks_uri_error, non_empty=True),
        "jwks": Str(check=jwks_error, non_empty=True),
        "fromHeaders": ListOf(
            Obj(
                JWTHeader,
                {"name": Field(header_name(), required=True), "prefix": Str()},
            )
        ),
        "fromParams": ListOf(Str(non_empty=True)),
        "forwardOriginalToken": Bool(),
        "outputPayloadToHeader": header_name(),
    },
    unsupported=["fromCookies", "outputClaimToHeaders", "timeout"],
    checks=[_check_rule],
)

SPEC: Obj[RequestAuthentication] = Obj(
    RequestAuthentication,
    {"selector": WORKLOAD_SELECTOR, "jwtRules": ListOf(JWT_RULE)},
    unsupported=["targetRef", "targetRefs"],
)
