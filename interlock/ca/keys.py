"""Private keys: generation, PEM, and encryption at rest under a key-encryption key (KEK).

Keys are ECDSA (P-256, P-384) or RSA (2048 bits or more): the kinds Envoy serves. Private
keys leave this module only as PEM bytes meant for the proxy that owns them or for
:func:`seal`; no function here puts key material into an exception message.

Sealed blob layout (version 1), all of it authenticated by AES-256-GCM::

    b"ILKS" | version (1 byte) | KEK id (8 bytes) | nonce (12 bytes) | ciphertext + tag

The KEK id is a one-way fingerprint of the KEK (HMAC-SHA256 of a fixed label), so opening a
blob with another KEK says "wrong KEK" rather than "corrupted". The nonce is 96 random bits
from the operating system for every seal.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from interlock.ca._errors import invalid

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

KEK_BYTES = 32
MIN_RSA_BITS = 2048
SUPPORTED_CURVES = ("secp256r1", "secp384r1")

_MAGIC = b"ILKS"
_VERSION = 1
_KEK_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER_BYTES = len(_MAGIC) + 1 + _KEK_ID_BYTES
_KEK_ID_LABEL = b"interlock kek id v1"


class KeyAlgorithm(enum.StrEnum):
    """The key kinds Interlock generates."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"


def generate_private_key(algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256) -> PrivateKey:
    """A fresh private key (from the operating system's CSPRNG)."""
    match algorithm:
        case KeyAlgorithm.ECDSA_P256:
            return ec.generate_private_key(ec.SECP256R1())
        case KeyAlgorithm.ECDSA_P384:
            return ec.generate_private_key(ec.SECP384R1())
        case KeyAlgorithm.RSA_2048:
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        case KeyAlgorithm.RSA_3072:
            return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise AssertionError(f"unhandled key algorithm {algorithm!r}")  # pragma: no cover


def check_supported(key: object, *, field: str = "key") -> PublicKey:
    """The public half of ``key`` (a private or public key) when Interlock supports its kind.

    Raises :class:`InvalidInput` for other curves, RSA under 2048 bits and other algorithms.
    """
    public: object = key
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in SUPPORTED_CURVES:
            raise invalid(field, f"ECDSA curve {public.curve.name} is not supported (use P-256)")
        return public
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise invalid(field, f"RSA keys must have at least {MIN_RSA_BITS} bits")
        return public
    raise invalid(field, "only ECDSA (P-256, P-384) and RSA keys are supported")


def private_key_to_pem(key: PrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM. Treat the result as a secret."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_pem(pem: bytes, *, field: str = "key") -> PrivateKey:
    """Load an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1) of a supported kind.

    Raises :class:`InvalidInput` at ``field``; the message never quotes the input.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise invalid(field, "the private key is password-protected; give it unencrypted") from None
    except UnsupportedAlgorithm:
        raise invalid(field, "only ECDSA (P-256, P-384) and RSA keys are supported") from None
    except (ValueError, binascii.Error):
        raise invalid(field, "not a PEM private key") from None
    check_supported(key, field=field)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key


def public_key_to_pem(key: PublicKey) -> bytes:
    """``key`` as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(pem: bytes, *, field: str = "public_key") -> PublicKey:
    """Load a SubjectPublicKeyInfo PEM public key of a supported kind."""
    try:
        key = serialization.load_pem_public_key(pem)
    except UnsupportedAlgorithm:
        raise invalid(field, "only ECDSA (P-256, P-384) and RSA keys are supported") from None
    except (ValueError, binascii.Error):
        raise invalid(field, "not a PEM public key") from None
    return check_supported(key, field=field)


def public_keys_equal(a: PublicKey, b: PublicKey) -> bool:
    """True when ``a`` and ``b`` are the same public key."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)


# --- encryption at rest -------------------------------------------------------------------


def kek_id(kek: bytes) -> str:
    """A short public fingerprint of ``kek`` (16 hex digits); it does not reveal the KEK."""
    _check_kek(kek)
    return _kek_id_bytes(kek).hex()


def _kek_id_bytes(kek: bytes) -> bytes:
    return hmac.new(kek, _KEK_ID_LABEL, hashlib.sha256).digest()[:_KEK_ID_BYTES]


def _check_kek(kek: bytes) -> None:
    if len(kek) != KEK_BYTES:
        raise invalid("kek", f"the KEK must be {KEK_BYTES} bytes (got {len(kek)})")


def seal(private_key_pem: bytes, kek: bytes, *, associated_data: bytes = b"") -> bytes:
    """Encrypt ``private_key_pem`` under ``kek`` (32 bytes) with AES-256-GCM.

    ``associated_data`` is authenticated but not stored: :func:`unseal` must be given the same
    bytes (use it to bind a blob to where it is stored, e.g. the CA's key id). Every call uses
    a fresh random nonce, so sealing the same key twice gives different blobs.
    """
    _check_kek(kek)
    header = _MAGIC + bytes([_VERSION]) + _kek_id_bytes(kek)
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(kek).encrypt(nonce, private_key_pem, header + associated_data)
    return header + nonce + ciphertext


def unseal(blob: bytes, kek: bytes, *, associated_data: bytes = b"") -> bytes:
    """The plaintext :func:`seal` encrypted; raise :class:`InvalidInput` when it cannot be opened.

    The error names the cause it can tell: not a sealed key, an unknown format version, a
    different KEK, or a blob that was altered (or sealed with other associated data).
    """
    _check_kek(kek)
    if len(blob) < _HEADER_BYTES + _NONCE_BYTES + 16 or not blob.startswith(_MAGIC):
        raise invalid("sealed_key", "not a sealed Interlock key")
    version = blob[len(_MAGIC)]
    if version != _VERSION:
        raise invalid(
            "sealed_key", f"sealed key format version {version} is not supported (expected 1)"
        )
    header = blob[:_HEADER_BYTES]
    stored_id = header[len(_MAGIC) + 1 :]
    if not hmac.compare_digest(stored_id, _kek_id_bytes(kek)):
        raise invalid(
            "kek",
            f"the key was sealed with another KEK (id {stored_id.hex()}); "
            f"the KEK given has id {kek_id(kek)}",
        )
    nonce = blob[_HEADER_BYTES : _HEADER_BYTES + _NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(
            nonce, blob[_HEADER_BYTES + _NONCE_BYTES :], header + associated_data
        )
    except InvalidTag:
        raise invalid(
            "sealed_key",
            "the sealed key failed authentication: it was altered, or sealed for another place",
        ) from None


def load_kek(
    path: str | None, env_value: str | None, *, env_name: str = "INTERLOCK_CA_KEK"
) -> bytes:
    """The 32-byte KEK from a file (``path``) or an environment variable's value.

    A file holds either exactly 32 raw bytes or their base64 (standard or URL-safe alphabet,
    surrounding whitespace ignored). An environment value holds the base64 form. Exactly one
    source must be given. Errors name the source (the file's path, or ``env_name``) and
    never quote what it holds.
    """
    if path is not None and env_value is not None:
        raise invalid("kek", f"give the KEK either as a file or in {env_name}, not both")
    if path is not None:
        source = f"KEK file {path}"
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise invalid("kek", f"cannot read {source}: {exc.strerror or exc}") from None
        if len(data) == KEK_BYTES:
            return data
        return _decode_kek(data, source)
    if env_value is not None:
        return _decode_kek(env_value.encode(), f"environment variable {env_name}")
    raise invalid("kek", f"no KEK given: pass a KEK file or set {env_name}")


def _decode_kek(data: bytes, source: str) -> bytes:
    text = data.strip()
    if not text:
        raise invalid("kek", f"{source} is empty")
    if b"-" in text or b"_" in text:
        text = text.replace(b"-", b"+").replace(b"_", b"/")
    try:
        kek = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(
            "kek",
            f"{source} must hold {KEK_BYTES} raw bytes or their base64; it holds neither",
        ) from None
    if len(kek) != KEK_BYTES:
        raise invalid("kek", f"{source} must decode to {KEK_BYTES} bytes; it decodes to {len(kek)}")
    return kek
