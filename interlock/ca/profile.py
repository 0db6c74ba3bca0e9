"""The X.509-SVID profile: what Interlock puts in leaf and CA certificates.

Leaf SVIDs (X509-SVID standard, sections 2-4):

- exactly one URI SAN, the SPIFFE ID (which has a path); the subject is empty, so the SAN
  extension is critical (RFC 5280, 4.1.2.6);
- basic constraints critical, ``CA=false``;
- key usage critical: ``digitalSignature`` (plus ``keyEncipherment`` for RSA keys only), never
  ``keyCertSign`` or ``cRLSign``;
- extended key usage ``serverAuth`` and ``clientAuth``;
- a random positive serial of 159 bits, subject and authority key identifiers.

Signing (CA) certificates: basic constraints critical ``CA=true``, key usage critical
``keyCertSign`` + ``cRLSign``, one URI SAN ``spiffe://<trust-domain>`` (no path), no extended
key usage, no name constraints (URI name constraints are poorly supported, as the standard
warns). Roots Interlock creates have ``pathLenConstraint=0``: they sign leaves only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from interlock.ca.keys import PrivateKey, PublicKey, check_supported
from interlock.ca.spiffe import SpiffeId

IPAddress = IPv4Address | IPv6Address


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """The digest to sign with ``key``: SHA-384 for P-384, SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def subject_key_identifier(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI of certificates ``issuer`` signs: its SKI when it has one, else one computed."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            check_supported(issuer.public_key(), field="ca.cert")
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _leaf_key_usage(public_key: PublicKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def build_leaf(
    *,
    spiffe_id: SpiffeId,
    public_key: PublicKey,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[IPAddress] = (),
) -> x509.Certificate:
    """A leaf X.509-SVID for ``spiffe_id`` and ``public_key``, signed by ``issuer``.

    ``dns_names`` and ``ip_addresses`` add DNS and IP SANs beside the one URI SAN (the
    X509-SVID standard allows other SAN types): a server that plain TLS clients reach by name
    or address (the control plane) needs them for host-name verification.
    The caller has checked that ``spiffe_id`` has a path and that the times are in order.
    """
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(spiffe_id))]
    names += [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ip) for ip in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(public_key), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer), critical=False)
    )
    return builder.sign(issuer_key, signature_hash(issuer_key))


def build_root(
    *,
    trust_domain: str,
    key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A self-signed root CA for ``trust_domain`` that may sign leaves only (path length 0).

    Its common name carries the start of its key identifier, so two roots of one trust domain
    (old and new, during a rotation) never share a subject.
    """
    public_key = key.public_key()
    ski = subject_key_identifier(public_key)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Interlock"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Interlock CA {ski.digest.hex()[:16]}"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(str(SpiffeId.for_trust_domain(trust_domain)))]
            ),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return builder.sign(key, signature_hash(key))


def uri_sans(cert: x509.Certificate) -> list[str]:
    """Every URI subject alternative name of ``cert`` (empty without a SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(uri) for uri in san.get_values_for_type(x509.UniformResourceIdentifier)]


def ca_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot sign certificates (not a CA, or no ``keyCertSign``), or ``None``."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "it has no basic constraints extension, so it is not a CA"
    if not constraints.ca:
        return "its basic constraints say CA=false, so it is not a CA"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "it has no key usage extension (keyCertSign is required)"
    if not usage.key_cert_sign:
        return "its key usage lacks keyCertSign"
    return None


def path_length(cert: x509.Certificate) -> int | None:
    """The ``pathLenConstraint`` of a CA certificate, ``None`` when unlimited."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return None


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when ``cert`` names itself as issuer and its signature verifies with its own key."""
    return cert.subject == cert.issuer and is_issued_by(cert, cert)


def is_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s subject is ``cert``'s issuer and ``issuer``'s key signed it."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):  # bad signature, other name, odd key
        return False
    return True


def unique(certs: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """``certs`` in order, without repeats (compared by SHA-256 fingerprint)."""
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint not in seen:
            seen.add(fingerprint)
            out.append(cert)
    return tuple(out)


def same_certificate(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.fingerprint(hashes.SHA256()) == b.fingerprint(hashes.SHA256())


def to_pem(certs: Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM of ``certs`` (``b""`` for none)."""
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)
