"""Fixtures for CA tests: a fixed clock, CAs, and an operator's PKI built by hand.

The operator PKI is built here with cryptography directly, not with ``interlock.ca``, so the
tests of operator-supplied CAs do not lean on the code they test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerifiedClient

from interlock.ca import CertificateAuthority, SpiffeId, Svid

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TRUST_DOMAIN = "interlock.local"
WEB = SpiffeId.for_service(TRUST_DOMAIN, "default", "web")


def fixed_clock() -> datetime:
    return NOW


class SettableClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def root_ca() -> CertificateAuthority:
    return CertificateAuthority.create_root(TRUST_DOMAIN, fixed_clock)


@pytest.fixture(scope="module")
def svid(root_ca: CertificateAuthority) -> Svid:
    return root_ca.issue_svid(WEB)


@pytest.fixture
def leaf(svid: Svid) -> x509.Certificate:
    return x509.load_pem_x509_certificate(svid.cert_pem)


def verify_client(
    svid: Svid, roots: list[x509.Certificate] | tuple[x509.Certificate, ...], at: datetime = NOW
) -> VerifiedClient:
    """Path-validate ``svid`` (leaf + its chain) against ``roots`` with cryptography's verifier."""
    leaf = x509.load_pem_x509_certificate(svid.cert_pem)
    chain = x509.load_pem_x509_certificates(svid.chain_pem) if svid.chain_pem else []
    verifier = PolicyBuilder().store(Store(list(roots))).time(at).build_client_verifier()
    return verifier.verify(leaf, chain)


# --- an operator's PKI, built by hand --------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def operator_cert(
    common_name: str,
    *,
    issuer: Issued | None = None,
    ca: bool = True,
    key_cert_sign: bool = True,
    path_length: int | None = None,
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=365),
    uri: str | None = None,
) -> Issued:
    """A certificate as an operator's own PKI would make it (self-signed without ``issuer``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    issuer_name = issuer.cert.subject if issuer else name
    signing_key = issuer.key if issuer else key
    issuer_public = signing_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not key_cert_sign,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False
        )
    )
    if uri:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
    return Issued(builder.sign(signing_key, hashes.SHA256()), key)
