"""The check of a public key (``request_authentication.public_key_error``, for inline
``jwks`` and fetched key sets alike) agrees with Envoy: each key below, as a provider's key
set, passes ``envoy --mode validate`` exactly when the check accepts it. So a key set Envoy
would refuse is refused by the API (inline) or kept from the proxies (fetched; the last good
keys stay), never NACKed: one bad key fails the whole listener."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from interlock.model.policy.request_authentication import FetchedKeys, public_key_error
from interlock.xds.translate import translate
from tests.model.specs import RSA_JWKS
from tests.support.envoy_validate import EnvoyRejected, validate
from tests.xds.test_translate_authz import BACKEND, state

URI = "https://login.example.com/keys"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int, size: int | None = None) -> str:
    return _b64(value.to_bytes(size or (value.bit_length() + 7) // 8, "big"))


RSA_NUMBERS = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
N, E = RSA_NUMBERS.public_numbers().n, RSA_NUMBERS.public_numbers().e
P256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
P384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
P521 = ec.generate_private_key(ec.SECP521R1()).public_key().public_numbers()
RSA_KEY = {"kty": "RSA", "n": _int(N), "e": _int(E)}
EC_KEY = {"kty": "EC", "crv": "P-256", "x": _int(P256.x, 32), "y": _int(P256.y, 32)}
ED_X = _b64(bytes(range(1, 33)))

KEYS: dict[str, tuple[dict[str, Any], bool]] = {
    "rsa": (RSA_KEY, True),
    "rsa RS256": ({**RSA_KEY, "alg": "RS256"}, True),
    "rsa PS384": ({**RSA_KEY, "alg": "PS384"}, True),
    "rsa for encryption": ({**RSA_KEY, "alg": "RSA-OAEP", "use": "enc"}, True),
    "rsa HS256": ({**RSA_KEY, "alg": "HS256"}, False),
    "rsa even modulus": ({**RSA_KEY, "n": _int(N + 1)}, False),
    "rsa 96-bit modulus": ({**RSA_KEY, "n": _int((1 << 95) | 1)}, False),
    "rsa 1024": (json.loads(RSA_JWKS)["keys"][0], True),
    "rsa not base64url": ({**RSA_KEY, "n": "not base64!"}, False),
    "rsa without e": ({"kty": "RSA", "n": _int(N)}, False),
    "ec": (EC_KEY, True),
    "ec ES256": ({**EC_KEY, "alg": "ES256"}, True),
    "ec without crv": ({k: v for k, v in EC_KEY.items() if k != "crv"}, True),
    "ec P-384": ({"kty": "EC", "crv": "P-384", "x": _int(P384.x, 48), "y": _int(P384.y, 48)}, True),
    "ec P-521 ES512": (
        {"kty": "EC", "crv": "P-521", "alg": "ES512", "x": _int(P521.x, 66), "y": _int(P521.y, 66)},
        True,
    ),
    "ec P-384 off the curve": (
        {"kty": "EC", "crv": "P-384", "x": _int(P384.x, 48), "y": _int(P384.y + 2, 48)},
        False,
    ),
    "ec off the curve": ({**EC_KEY, "y": _int(P256.y + 1, 32)}, False),
    "ec ES384 on P-256": ({**EC_KEY, "alg": "ES384"}, False),
    "ec RS256": ({**EC_KEY, "alg": "RS256"}, False),
    "ec P-384 with a P-256 point": ({**EC_KEY, "crv": "P-384"}, False),
    "ec secp256k1": ({**EC_KEY, "crv": "secp256k1"}, False),
    "ed25519": ({"kty": "OKP", "crv": "Ed25519", "x": ED_X}, True),
    "ed25519 EdDSA": ({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "alg": "EdDSA"}, True),
    "x25519": ({"kty": "OKP", "crv": "X25519", "x": ED_X}, False),
    "ed25519 of 31 bytes": ({"kty": "OKP", "crv": "Ed25519", "x": _b64(bytes(31))}, False),
}


def envoy_accepts(key: dict[str, Any]) -> bool:
    document = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": "default"},
        "spec": {"jwtRules": [{"issuer": "https://login.example.com", "jwksUri": URI}]},
    }
    fetched = FetchedKeys(keys=json.dumps({"keys": [key]}))
    mesh = dataclasses.replace(state(document), fetched_keys={URI: fetched})
    try:
        validate(translate(mesh, BACKEND))
    except EnvoyRejected:
        return False
    return True


@pytest.mark.parametrize("name", sorted(KEYS))
def test_the_check_accepts_what_envoy_accepts(name: str) -> None:
    key, expected = KEYS[name]
    error = public_key_error(key)
    assert (error is None) == expected, error
    assert envoy_accepts(key) == expected
