"""Keys: PEM round trips, sealing at rest under a KEK, and loading the KEK."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from interlock.ca import (
    KeyAlgorithm,
    generate_private_key,
    kek_id,
    load_kek,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_pem,
    public_key_to_pem,
    seal,
    unseal,
)
from interlock.model.errors import InvalidInput

KEK = bytes(range(32))
OTHER_KEK = bytes(range(1, 33))


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return private_key_to_pem(generate_private_key())


def assert_no_secret(error: InvalidInput, *secrets: bytes) -> None:
    text = str(error) + repr(error.errors)
    for secret in secrets:
        assert secret.hex() not in text
        assert base64.b64encode(secret).decode() not in text
        assert repr(secret) not in text


# --- keys and PEM --------------------------------------------------------------------------


def test_default_key_is_ecdsa_p256() -> None:
    key = generate_private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_private_key_pem_round_trips(key_pem: bytes) -> None:
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert private_key_to_pem(private_key_from_pem(key_pem)) == key_pem


def test_public_key_pem_round_trips() -> None:
    public = generate_private_key(KeyAlgorithm.ECDSA_P384).public_key()
    pem = public_key_to_pem(public)
    assert public_key_to_pem(public_key_from_pem(pem)) == pem


def test_a_password_protected_key_is_refused_clearly() -> None:
    pem = generate_private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(InvalidInput, match="password-protected"):
        private_key_from_pem(pem)


def test_garbage_is_not_a_private_key() -> None:
    with pytest.raises(InvalidInput, match="not a PEM private key") as caught:
        private_key_from_pem(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    assert "c2VjcmV0" not in str(caught.value)


def test_unsupported_key_kinds_are_refused() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    for key in (ed, small_rsa):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(InvalidInput, match=r"supported|at least 2048"):
            private_key_from_pem(pem, field="ca.key")


# --- seal / unseal -------------------------------------------------------------------------


def test_seal_then_unseal_gives_the_key_back(key_pem: bytes) -> None:
    blob = seal(key_pem, KEK)
    assert key_pem not in blob
    assert unseal(blob, KEK) == key_pem


def test_sealing_twice_uses_fresh_nonces(key_pem: bytes) -> None:
    assert seal(key_pem, KEK) != seal(key_pem, KEK)


def test_the_blob_starts_with_a_versioned_header(key_pem: bytes) -> None:
    blob = seal(key_pem, KEK)
    assert blob[:5] == b"ILKS\x01"
    assert blob[5:13].hex() == kek_id(KEK)


def test_unseal_with_the_wrong_kek_says_so(key_pem: bytes) -> None:
    blob = seal(key_pem, KEK)
    with pytest.raises(InvalidInput, match="sealed with another KEK") as caught:
        unseal(blob, OTHER_KEK)
    assert caught.value.errors[0].field == "kek"
    assert_no_secret(caught.value, KEK, OTHER_KEK)


def test_unseal_refuses_a_tampered_ciphertext(key_pem: bytes) -> None:
    blob = bytearray(seal(key_pem, KEK))
    blob[40] ^= 0x01
    with pytest.raises(InvalidInput, match="failed authentication") as caught:
        unseal(bytes(blob), KEK)
    assert caught.value.errors[0].field == "sealed_key"


def test_unseal_refuses_a_tampered_nonce(key_pem: bytes) -> None:
    blob = bytearray(seal(key_pem, KEK))
    blob[14] ^= 0x80
    with pytest.raises(InvalidInput, match="failed authentication"):
        unseal(bytes(blob), KEK)


def test_unseal_refuses_an_unknown_version(key_pem: bytes) -> None:
    blob = bytearray(seal(key_pem, KEK))
    blob[4] = 2
    with pytest.raises(InvalidInput, match="version 2 is not supported"):
        unseal(bytes(blob), KEK)


def test_unseal_refuses_what_is_not_a_sealed_key(key_pem: bytes) -> None:
    with pytest.raises(InvalidInput, match="not a sealed Interlock key"):
        unseal(key_pem, KEK)
    with pytest.raises(InvalidInput, match="not a sealed Interlock key"):
        unseal(seal(key_pem, KEK)[:20], KEK)


def test_associated_data_binds_a_blob_to_its_place(key_pem: bytes) -> None:
    blob = seal(key_pem, KEK, associated_data=b"ca/1")
    assert unseal(blob, KEK, associated_data=b"ca/1") == key_pem
    with pytest.raises(InvalidInput, match="failed authentication"):
        unseal(blob, KEK, associated_data=b"ca/2")


def test_a_kek_must_be_32_bytes(key_pem: bytes) -> None:
    with pytest.raises(InvalidInput, match="32 bytes"):
        seal(key_pem, KEK[:16])


# --- load_kek ------------------------------------------------------------------------------


def test_load_kek_reads_32_raw_bytes_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_bytes(KEK)
    assert load_kek(str(path), None) == KEK


def test_load_kek_reads_base64_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_text(base64.b64encode(KEK).decode() + "\n")
    assert load_kek(str(path), None) == KEK


def test_load_kek_reads_url_safe_base64_from_the_environment() -> None:
    assert load_kek(None, base64.urlsafe_b64encode(OTHER_KEK).decode()) == OTHER_KEK
    assert load_kek(None, base64.b64encode(KEK).decode()) == KEK


def test_load_kek_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no KEK given"):
        load_kek(None, None)
    with pytest.raises(InvalidInput, match="not both"):
        load_kek(str(tmp_path / "kek"), base64.b64encode(KEK).decode())


def test_load_kek_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InvalidInput, match=f"cannot read KEK file {missing}"):
        load_kek(str(missing), None)


def test_load_kek_refuses_the_wrong_length_without_echoing_it(tmp_path: Path) -> None:
    short = base64.b64encode(KEK[:24]).decode()
    with pytest.raises(InvalidInput, match="INTERLOCK_CA_KEK must decode to 32 bytes") as caught:
        load_kek(None, short)
    assert short not in str(caught.value)
    assert_no_secret(caught.value, KEK[:24])


def test_load_kek_refuses_text_that_is_not_base64_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_text("correct horse battery staple!\n")
    with pytest.raises(InvalidInput, match=f"KEK file {path} must hold 32 raw bytes") as caught:
        load_kek(str(path), None)
    assert "horse" not in str(caught.value)
    with pytest.raises(InvalidInput, match="MY_KEK must hold"):
        load_kek(None, "correct horse battery staple!", env_name="MY_KEK")
