"""The X509-SVID standard's rules, one test each, read back from real certificates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from interlock.ca import CLOCK_SKEW, CertificateAuthority, KeyAlgorithm, SpiffeId, Svid
from interlock.model.errors import InvalidInput
from tests.ca.conftest import NOW, TRUST_DOMAIN, WEB, fixed_clock, verify_client


def ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def key_usage(cert: x509.Certificate) -> x509.KeyUsage:
    value = ext(cert, x509.KeyUsage).value
    assert isinstance(value, x509.KeyUsage)
    return value


# --- leaf SVIDs ----------------------------------------------------------------------------


def test_leaf_has_exactly_one_uri_san_which_is_its_spiffe_id(leaf: x509.Certificate) -> None:
    san = ext(leaf, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(WEB)]


def test_leaf_with_empty_subject_has_a_critical_san(leaf: x509.Certificate) -> None:
    assert leaf.subject == x509.Name([])
    assert ext(leaf, x509.SubjectAlternativeName).critical


def test_leaf_spiffe_id_must_have_a_path(root_ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidInput, match="must have a path"):
        root_ca.issue_svid(SpiffeId.for_trust_domain(TRUST_DOMAIN))


def test_leaf_spiffe_id_must_be_in_the_cas_trust_domain(root_ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidInput, match="not in this CA's trust domain"):
        root_ca.issue_svid(SpiffeId.for_service("other.example", "default", "web"))


def test_leaf_basic_constraints_are_critical_with_ca_false(leaf: x509.Certificate) -> None:
    constraints = ext(leaf, x509.BasicConstraints)
    assert constraints.critical
    assert isinstance(constraints.value, x509.BasicConstraints)
    assert constraints.value.ca is False


def test_leaf_key_usage_is_critical_with_digital_signature(leaf: x509.Certificate) -> None:
    assert ext(leaf, x509.KeyUsage).critical
    assert key_usage(leaf).digital_signature


def test_leaf_key_usage_has_no_key_cert_sign_or_crl_sign(leaf: x509.Certificate) -> None:
    usage = key_usage(leaf)
    assert not usage.key_cert_sign
    assert not usage.crl_sign


def test_ecdsa_leaf_key_usage_is_digital_signature_only(leaf: x509.Certificate) -> None:
    usage = key_usage(leaf)
    assert not usage.key_encipherment
    assert not usage.key_agreement
    assert not usage.data_encipherment
    assert not usage.content_commitment


def test_rsa_leaf_key_usage_adds_key_encipherment(root_ca: CertificateAuthority) -> None:
    svid = root_ca.issue_svid(WEB, key_algorithm=KeyAlgorithm.RSA_2048)
    usage = key_usage(x509.load_pem_x509_certificate(svid.cert_pem))
    assert usage.digital_signature and usage.key_encipherment
    assert not usage.key_cert_sign and not usage.crl_sign
    verify_client(svid, root_ca.roots)


def test_leaf_extended_key_usage_has_server_and_client_auth(leaf: x509.Certificate) -> None:
    usages = ext(leaf, x509.ExtendedKeyUsage).value
    assert isinstance(usages, x509.ExtendedKeyUsage)
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_leaf_serial_is_random_positive_and_at_least_64_bits(root_ca: CertificateAuthority) -> None:
    serials = {root_ca.issue_svid(WEB).serial for _ in range(3)}
    assert len(serials) == 3
    assert all(s > 0 and s.bit_length() > 64 for s in serials)


def test_leaf_validity_is_backdated_by_the_skew_and_lasts_its_lifetime(svid: Svid) -> None:
    assert svid.not_before == NOW - CLOCK_SKEW
    assert svid.not_after == NOW + timedelta(hours=24)


def test_leaf_has_key_identifiers_linking_it_to_its_issuer(
    leaf: x509.Certificate, root_ca: CertificateAuthority
) -> None:
    aki = ext(leaf, x509.AuthorityKeyIdentifier).value
    issuer_ski = ext(root_ca.certificate, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(issuer_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == issuer_ski.digest
    ski = ext(leaf, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())


def test_leaf_chains_to_the_bundle(svid: Svid, root_ca: CertificateAuthority) -> None:
    verified = verify_client(svid, root_ca.roots)
    assert verified.subjects == [x509.UniformResourceIdentifier(str(WEB))]
    assert verified.chain[-1] == root_ca.certificate


def test_leaf_does_not_chain_to_another_trust_bundle(svid: Svid) -> None:
    stranger = CertificateAuthority.create_root(TRUST_DOMAIN, fixed_clock)
    with pytest.raises(x509.verification.VerificationError):
        verify_client(svid, stranger.roots)


# --- signing (CA) certificates -------------------------------------------------------------


def test_ca_basic_constraints_are_critical_with_ca_true(root_ca: CertificateAuthority) -> None:
    constraints = ext(root_ca.certificate, x509.BasicConstraints)
    assert constraints.critical
    assert isinstance(constraints.value, x509.BasicConstraints)
    assert constraints.value.ca is True


def test_ca_key_usage_is_critical_with_key_cert_sign_and_crl_sign(
    root_ca: CertificateAuthority,
) -> None:
    assert ext(root_ca.certificate, x509.KeyUsage).critical
    usage = key_usage(root_ca.certificate)
    assert usage.key_cert_sign and usage.crl_sign
    assert not usage.digital_signature


def test_ca_has_one_uri_san_naming_the_trust_domain_without_a_path(
    root_ca: CertificateAuthority,
) -> None:
    san = ext(root_ca.certificate, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TRUST_DOMAIN}"]


def test_ca_has_no_extended_key_usage(root_ca: CertificateAuthority) -> None:
    with pytest.raises(x509.ExtensionNotFound):
        ext(root_ca.certificate, x509.ExtendedKeyUsage)


def test_root_is_self_signed_and_signs_leaves_only(root_ca: CertificateAuthority) -> None:
    root_ca.certificate.verify_directly_issued_by(root_ca.certificate)
    constraints = ext(root_ca.certificate, x509.BasicConstraints).value
    assert isinstance(constraints, x509.BasicConstraints)
    assert constraints.path_length == 0


def test_two_roots_of_one_trust_domain_have_distinct_subjects(
    root_ca: CertificateAuthority,
) -> None:
    other = CertificateAuthority.create_root(TRUST_DOMAIN, fixed_clock)
    assert other.certificate.subject != root_ca.certificate.subject
