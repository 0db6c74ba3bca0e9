"""RequestAuthentication (security.istio.io): which JWTs a workload accepts (issuer, keys,
audiences, where the token is read from). A request with an invalid token is rejected; one
without a token is let through (an AuthorizationPolicy decides whether that is allowed).

The keys are given inline (``jwks``), as public keys: Interlock does not fetch key sets
(``jwksUri``) or discover them from the issuer yet, and a symmetric key (``kty: oct``) is a
secret, which has no place in a policy that is shown by the API and sent to every proxy."""

from __future__ import annotations

import json
from dataclasses import dataclass

from interlock.model.errors import FieldError
from interlock.model.policy.common import WORKLOAD_SELECTOR, WorkloadSelector, header_name
from interlock.model.schema import Bool, Errors, Field, ListOf, Obj, Str, child


@dataclass(frozen=True)
class JWTHeader:
    name: str
    prefix: str | None = None


@dataclass(frozen=True)
class JWTRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str | None = None
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str | None = None


@dataclass(frozen=True)
class RequestAuthentication:
    selector: WorkloadSelector | None = None
    jwt_rules: tuple[JWTRule, ...] = ()


#: The key types Envoy's jwt_authn verifies with a public key.
PUBLIC_KEY_TYPES = ("RSA", "EC", "OKP")


def jwks_error(value: str) -> str | None:
    """An inline JSON Web Key Set: a JSON object with a ``keys`` list of objects."""
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
    return None


def _check_rule(rule: JWTRule, path: str, errors: Errors) -> None:
    if rule.jwks is None:
        errors.append(
            FieldError(
                child(path, "jwks"),
                "jwks is required: Interlock does not fetch key sets (jwksUri) or discover "
                "them from the issuer yet; give the issuer's public keys inline",
            )
        )


JWT_RULE: Obj[JWTRule] = Obj(
    JWTRule,
    {
        "issuer": Field(Str(non_empty=True), required=True),
        "audiences": ListOf(Str(non_empty=True)),
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
    unsupported={
        "jwksUri": "give the public keys inline with jwks",
        "fromCookies": "",
        "outputClaimToHeaders": "",
        "timeout": "",
    },
    checks=[_check_rule],
)

SPEC: Obj[RequestAuthentication] = Obj(
    RequestAuthentication,
    {"selector": WORKLOAD_SELECTOR, "jwtRules": ListOf(JWT_RULE)},
    unsupported=["targetRef", "targetRefs"],
)
