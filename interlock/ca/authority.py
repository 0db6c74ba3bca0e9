"""The certificate authority: one signing CA, a trust bundle, and X.509-SVIDs it issues.

A :class:`CertificateAuthority` is an immutable value: a signing certificate and its private
key, the intermediates between it and a root, the trust bundle (root certificates proxies
trust) and a clock. It is created from nothing (:meth:`CertificateAuthority.create_root`), from
an operator's PEM files (:meth:`CertificateAuthority.from_pem`), or from what was stored
(:meth:`CertificateAuthority.from_certificates` with the unsealed key). It does no I/O.

The private key is reachable only through :meth:`CertificateAuthority.private_key_pem` (for
:func:`interlock.ca.keys.seal`) and the keys of SVIDs it generates; ``repr`` shows neither.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509

from interlock.ca import chain, profile
from interlock.ca._errors import invalid
from interlock.ca.keys import (
    KeyAlgorithm,
    PrivateKey,
    PublicKey,
    check_supported,
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_keys_equal,
)
from interlock.ca.spiffe import DEFAULT_TRUST_DOMAIN, SpiffeId, validate_trust_domain
from interlock.ca.svid import Svid

Clock = Callable[[], datetime]

DEFAULT_LEAF_LIFETIME = timedelta(hours=24)
DEFAULT_CA_LIFETIME = timedelta(days=3650)
CLOCK_SKEW = timedelta(seconds=60)
"""How far ``not_before`` is backdated, and how early an operator's CA may start."""


def _now(clock: Clock) -> datetime:
    now = clock()
    if now.tzinfo is None:
        raise ValueError("the CA's clock must return timezone-aware datetimes")
    return now.astimezone(UTC)


@dataclass(frozen=True)
class CaCertificates:
    """The public half of a CA, safe to store in clear and to show.

    ``cert_pem`` is the signing certificate, ``chain_pem`` the intermediates above it (not the
    roots), ``roots_pem`` its trust bundle. The private key is stored apart, sealed.
    """

    cert_pem: bytes
    chain_pem: bytes
    roots_pem: bytes

    @property
    def key_id(self) -> str:
        """The signing key's identifier: the same as :attr:`CertificateAuthority.key_id`."""
        cert = _load_certs(self.cert_pem, "ca.cert")[0]
        return _key_id(check_supported(cert.public_key(), field="ca.cert"))

    def roots(self) -> list[x509.Certificate]:
        """The certificates of :attr:`roots_pem`."""
        return _load_certs(self.roots_pem, "ca.roots")


def _key_id(public_key: PublicKey) -> str:
    return profile.subject_key_identifier(public_key).digest.hex()


def _load_certs(pem: bytes, field_path: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except (ValueError, binascii.Error):
        raise invalid(field_path, "not PEM certificates") from None
    return certs


class CertificateAuthority:
    """A signing CA and the trust bundle it publishes. Immutable; see the module docstring."""

    __slots__ = ("_certificate", "_chain", "_clock", "_key", "_roots", "_trust_domain")

    def __init__(
        self,
        *,
        trust_domain: str,
        certificate: x509.Certificate,
        key: PrivateKey,
        chain: Sequence[x509.Certificate],
        roots: Sequence[x509.Certificate],
        clock: Clock,
    ) -> None:
        """Assemble a CA from parts that are already checked; prefer the class methods."""
        self._trust_domain = trust_domain
        self._certificate = certificate
        self._key = key
        self._chain = tuple(chain)
        self._roots = tuple(roots)
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"CertificateAuthority(trust_domain={self._trust_domain!r}, "
            f"key_id={self.key_id!r}, roots={len(self._roots)})"
        )

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def create_root(
        cls,
        trust_domain: str,
        clock: Clock,
        lifetime: timedelta = DEFAULT_CA_LIFETIME,
        *,
        key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
    ) -> CertificateAuthority:
        """A new self-signed root for ``trust_domain``; its bundle is that root alone."""
        validate_trust_domain(trust_domain)
        if lifetime <= timedelta(0):
            raise invalid("lifetime", "the CA lifetime must be positive")
        now = _now(clock)
        key = generate_private_key(key_algorithm)
        cert = profile.build_root(
            trust_domain=trust_domain,
            key=key,
            not_before=now - CLOCK_SKEW,
            not_after=now + lifetime,
        )
        return cls(
            trust_domain=trust_domain,
            certificate=cert,
            key=key,
            chain=(),
            roots=(cert,),
            clock=clock,
        )

    @classmethod
    def from_pem(
        cls,
        cert_pem: bytes,
        key_pem: bytes,
        chain_pem: bytes | None = None,
        *,
        clock: Clock,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> CertificateAuthority:
        """An operator-supplied root or intermediate CA.

        ``cert_pem`` holds the signing certificate (only the first certificate is used when it
        holds more, the rest are treated as part of the chain). ``key_pem`` its unencrypted
        private key. For a self-signed root, ``chain_pem`` may be omitted; for an intermediate
        it holds the intermediates above it and the root(s): every self-signed certificate in
        it joins the trust bundle. Checks, each failing with :class:`InvalidInput` naming the
        field (``ca.cert``, ``ca.key``, ``ca.chain``): the key is supported and matches the
        certificate; every certificate on the path is a CA with ``keyCertSign``, within its
        validity period and path length; the path reaches a given root; a SPIFFE ID in the
        certificate, if any, names ``trust_domain`` and has no path.
        """
        validate_trust_domain(trust_domain)
        certs = _load_certs(cert_pem, "ca.cert")
        if not certs:
            raise invalid("ca.cert", "no certificate found")
        cert, extra = certs[0], certs[1:]
        key = private_key_from_pem(key_pem, field="ca.key")
        cert_key = check_supported(cert.public_key(), field="ca.cert")
        if not public_keys_equal(cert_key, key.public_key()):
            raise invalid("ca.key", "the private key does not match the CA certificate")
        chain.check_ca_identity(cert, trust_domain)
        given = extra + (_load_certs(chain_pem, "ca.chain") if chain_pem else [])
        now = _now(clock)
        if profile.is_self_signed(cert):
            if any(not profile.is_self_signed(c) for c in given):
                raise invalid(
                    "ca.chain",
                    "the CA certificate is a self-signed root: it takes no intermediates",
                )
            roots = [cert, *given]
            path: list[x509.Certificate] = [cert]
        else:
            roots = [c for c in given if profile.is_self_signed(c)]
            intermediates = [c for c in given if not profile.is_self_signed(c)]
            if not roots:
                raise invalid(
                    "ca.chain",
                    "the CA certificate is an intermediate: give the chain up to its root",
                )
            path = chain.build_path(cert, intermediates, roots)
        chain.check_path(path, now, tolerance=CLOCK_SKEW)
        ca = cls(
            trust_domain=trust_domain,
            certificate=cert,
            key=key,
            chain=path[1:-1],
            roots=path[-1:],
            clock=clock,
        )
        return ca.with_bundle(roots)

    @classmethod
    def from_certificates(
        cls,
        certificates: CaCertificates,
        key_pem: bytes,
        *,
        clock: Clock,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> CertificateAuthority:
        """The CA :meth:`certificates` described, with its (unsealed) private key."""
        ca = cls.from_pem(
            certificates.cert_pem,
            key_pem,
            certificates.chain_pem + certificates.roots_pem,
            clock=clock,
            trust_domain=trust_domain,
        )
        return ca.with_bundle(_load_certs(certificates.roots_pem, "ca.roots"))

    def with_bundle(self, roots: Sequence[x509.Certificate]) -> CertificateAuthority:
        """This CA publishing ``roots`` as its trust bundle (e.g. old + new during rotation).

        The root this CA chains to must be among them, or the SVIDs it signs would not verify.
        """
        roots = profile.unique(roots)
        anchor = self._anchor()
        if not any(profile.same_certificate(r, anchor) for r in roots):
            raise invalid("ca.roots", "the trust bundle must contain the root the CA chains to")
        for root in roots:
            if problem := profile.ca_problem(root):
                raise invalid("ca.roots", f"a bundle root cannot sign certificates: {problem}")
        return CertificateAuthority(
            trust_domain=self._trust_domain,
            certificate=self._certificate,
            key=self._key,
            chain=self._chain,
            roots=roots,
            clock=self._clock,
        )

    # --- what it is -----------------------------------------------------------------------

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    @property
    def certificate(self) -> x509.Certificate:
        """The signing certificate."""
        return self._certificate

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Intermediates between the signing certificate and its root (both excluded)."""
        return self._chain

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        """The trust bundle."""
        return self._roots

    @property
    def key_id(self) -> str:
        """The signing key's identifier (hex SHA-1 of its public key, as in the SKI)."""
        return _key_id(check_supported(self._key))

    @property
    def is_root(self) -> bool:
        """True when the signing certificate is self-signed."""
        return not self._chain and profile.is_self_signed(self._certificate)

    def certificate_pem(self) -> bytes:
        return profile.to_pem([self._certificate])

    def bundle_pem(self) -> bytes:
        """The trust bundle as concatenated PEM: what proxies validate peers against."""
        return profile.to_pem(self._roots)

    def leaf_chain_pem(self) -> bytes:
        """The intermediates sent with each leaf: the signing certificate unless it is a root,
        then the chain above it."""
        if self.is_root:
            return b""
        return profile.to_pem([self._certificate, *self._chain])

    def private_key_pem(self) -> bytes:
        """The signing key as PKCS#8 PEM, to be sealed before it is stored. A secret."""
        return private_key_to_pem(self._key)

    def certificates(self) -> CaCertificates:
        """The public half of this CA (what :meth:`from_certificates` takes back)."""
        return CaCertificates(
            cert_pem=self.certificate_pem(),
            chain_pem=profile.to_pem(self._chain),
            roots_pem=self.bundle_pem(),
        )

    # --- issuing --------------------------------------------------------------------------

    def issue_svid(
        self,
        spiffe_id: SpiffeId,
        public_key: PublicKey | None = None,
        lifetime: timedelta = DEFAULT_LEAF_LIFETIME,
        *,
        key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[profile.IPAddress] = (),
    ) -> Svid:
        """Sign a leaf X.509-SVID for ``spiffe_id`` (see :mod:`interlock.ca.profile`), with
        ``dns_names`` and ``ip_addresses`` as further SANs (a server's names).

        Without ``public_key`` a key of ``key_algorithm`` is generated and returned in the
        SVID. ``not_before`` is backdated by :data:`CLOCK_SKEW`; ``not_after`` is
        ``now + lifetime``, cut to the signing certificate's own expiry. Raises
        :class:`InvalidInput` when the ID is of another trust domain or has no path, the
        lifetime is not positive, or the signing certificate has expired.
        """
        if spiffe_id.trust_domain != self._trust_domain:
            raise invalid(
                "spiffe_id",
                f"{spiffe_id} is not in this CA's trust domain {self._trust_domain!r}",
            )
        if spiffe_id.is_trust_domain:
            raise invalid("spiffe_id", f"a leaf SVID's SPIFFE ID must have a path ({spiffe_id})")
        if lifetime <= timedelta(0):
            raise invalid("lifetime", "the SVID lifetime must be positive")
        now = _now(self._clock)
        ca_not_after = self._certificate.not_valid_after_utc
        if ca_not_after <= now:
            raise invalid("ca.cert", f"the signing CA expired at {ca_not_after.isoformat()}")
        key_pem: bytes | None = None
        if public_key is None:
            private = generate_private_key(key_algorithm)
            public_key = private.public_key()
            key_pem = private_key_to_pem(private)
        else:
            public_key = check_supported(public_key, field="public_key")
        cert = profile.build_leaf(
            spiffe_id=spiffe_id,
            public_key=public_key,
            issuer=self._certificate,
            issuer_key=self._key,
            not_before=max(now - CLOCK_SKEW, self._certificate.not_valid_before_utc),
            not_after=min(now + lifetime, ca_not_after),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
        )
        return Svid(
            spiffe_id=spiffe_id,
            cert_pem=profile.to_pem([cert]),
            key_pem=key_pem,
            chain_pem=self.leaf_chain_pem(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial=cert.serial_number,
        )

    def _anchor(self) -> x509.Certificate:
        """The root this CA's path ends at."""
        top = self._chain[-1] if self._chain else self._certificate
        if profile.is_self_signed(top):
            return top
        for root in self._roots:
            if profile.is_issued_by(top, root):
                return root
        raise AssertionError("a CertificateAuthority always chains to a root of its bundle")
