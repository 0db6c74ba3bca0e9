"""The CA: created roots, operator-supplied roots and intermediates, issuing, renewal."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from cryptography import x509

from interlock.ca import (
    CaCertificates,
    CertificateAuthority,
    SpiffeId,
    Svid,
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
)
from interlock.model.errors import InvalidInput
from tests.ca.conftest import (
    NOW,
    TRUST_DOMAIN,
    WEB,
    Issued,
    SettableClock,
    fixed_clock,
    operator_cert,
    verify_client,
)


def field_of(error: InvalidInput) -> str:
    return error.errors[0].field


# --- a created root ------------------------------------------------------------------------


def test_a_created_root_publishes_itself_as_the_bundle(root_ca: CertificateAuthority) -> None:
    assert root_ca.is_root
    assert root_ca.roots == (root_ca.certificate,)
    assert root_ca.bundle_pem() == root_ca.certificate_pem()
    assert root_ca.leaf_chain_pem() == b""
    assert root_ca.certificate.not_valid_after_utc == NOW + timedelta(days=3650)


def test_a_root_round_trips_through_pem(root_ca: CertificateAuthority) -> None:
    again = CertificateAuthority.from_pem(
        root_ca.certificate_pem(), root_ca.private_key_pem(), clock=fixed_clock
    )
    assert again.key_id == root_ca.key_id
    assert again.roots == root_ca.roots
    verify_client(again.issue_svid(WEB), root_ca.roots)


def test_a_ca_round_trips_through_its_public_half_and_key(root_ca: CertificateAuthority) -> None:
    certificates = root_ca.certificates()
    assert b"PRIVATE KEY" not in certificates.cert_pem + certificates.roots_pem
    assert certificates.key_id == root_ca.key_id
    again = CertificateAuthority.from_certificates(
        certificates, root_ca.private_key_pem(), clock=fixed_clock
    )
    assert again.certificates() == certificates


def test_repr_never_shows_private_keys(root_ca: CertificateAuthority, svid: Svid) -> None:
    assert svid.key_pem is not None
    assert "PRIVATE" not in repr(root_ca)
    assert "PRIVATE" not in repr(svid)


def test_create_root_refuses_a_bad_trust_domain() -> None:
    with pytest.raises(InvalidInput, match="only lowercase letters"):
        CertificateAuthority.create_root("Interlock.Local", fixed_clock)


# --- operator-supplied roots ---------------------------------------------------------------


def test_an_operator_root_is_used_as_is() -> None:
    root = operator_cert("Example Root")
    ca = CertificateAuthority.from_pem(root.cert_pem, root.key_pem, clock=fixed_clock)
    assert ca.is_root
    assert ca.roots == (root.cert,)
    svid = ca.issue_svid(WEB)
    assert verify_client(svid, [root.cert]).chain[-1] == root.cert


def test_an_operator_root_whose_key_does_not_match_is_refused() -> None:
    root = operator_cert("Example Root")
    other_key = private_key_to_pem(generate_private_key())
    with pytest.raises(InvalidInput, match="does not match") as caught:
        CertificateAuthority.from_pem(root.cert_pem, other_key, clock=fixed_clock)
    assert field_of(caught.value) == "ca.key"


def test_a_certificate_that_is_not_a_ca_is_refused() -> None:
    not_ca = operator_cert("Just A Server", ca=False, key_cert_sign=False)
    with pytest.raises(InvalidInput, match="CA=false, so it is not a CA") as caught:
        CertificateAuthority.from_pem(not_ca.cert_pem, not_ca.key_pem, clock=fixed_clock)
    assert field_of(caught.value) == "ca.cert"


def test_a_ca_without_key_cert_sign_is_refused() -> None:
    no_sign = operator_cert("Odd CA", ca=True, key_cert_sign=False)
    with pytest.raises(InvalidInput, match="lacks keyCertSign"):
        CertificateAuthority.from_pem(no_sign.cert_pem, no_sign.key_pem, clock=fixed_clock)


def test_an_expired_operator_ca_is_refused() -> None:
    old = operator_cert("Old Root", not_after=NOW - timedelta(days=1))
    with pytest.raises(InvalidInput, match="expired at"):
        CertificateAuthority.from_pem(old.cert_pem, old.key_pem, clock=fixed_clock)


def test_an_operator_ca_naming_another_trust_domain_is_refused() -> None:
    root = operator_cert("Example Root", uri="spiffe://other.example")
    with pytest.raises(InvalidInput, match=r"names trust domain 'other\.example'"):
        CertificateAuthority.from_pem(root.cert_pem, root.key_pem, clock=fixed_clock)


def test_an_operator_ca_whose_spiffe_id_has_a_path_is_refused() -> None:
    root = operator_cert("Example Root", uri=f"spiffe://{TRUST_DOMAIN}/ca")
    with pytest.raises(InvalidInput, match="must not have a path"):
        CertificateAuthority.from_pem(root.cert_pem, root.key_pem, clock=fixed_clock)


def test_garbage_certificate_pem_is_refused() -> None:
    root = operator_cert("Example Root")
    with pytest.raises(InvalidInput, match=r"not PEM certificates|no certificate found"):
        CertificateAuthority.from_pem(b"hello", root.key_pem, clock=fixed_clock)


# --- operator-supplied intermediates -------------------------------------------------------


@pytest.fixture(scope="module")
def operator_root() -> Issued:
    return operator_cert("Example Root")


@pytest.fixture(scope="module")
def intermediate(operator_root: Issued) -> Issued:
    return operator_cert("Example Mesh CA", issuer=operator_root, path_length=0)


def test_an_operator_intermediate_signs_leaves_that_chain_to_the_given_root(
    operator_root: Issued, intermediate: Issued
) -> None:
    ca = CertificateAuthority.from_pem(
        intermediate.cert_pem, intermediate.key_pem, operator_root.cert_pem, clock=fixed_clock
    )
    assert not ca.is_root
    assert ca.roots == (operator_root.cert,)
    svid = ca.issue_svid(WEB)
    assert x509.load_pem_x509_certificates(svid.chain_pem) == [intermediate.cert]
    verified = verify_client(svid, ca.roots)
    assert verified.chain[1:] == [intermediate.cert, operator_root.cert]


def test_an_intermediate_two_levels_below_the_root_carries_its_whole_chain(
    operator_root: Issued,
) -> None:
    middle = operator_cert("Example Regional CA", issuer=operator_root)
    issuing = operator_cert("Example Mesh CA", issuer=middle, path_length=0)
    ca = CertificateAuthority.from_pem(
        issuing.cert_pem,
        issuing.key_pem,
        operator_root.cert_pem + middle.cert_pem,  # any order
        clock=fixed_clock,
    )
    assert ca.chain == (middle.cert,)
    svid = ca.issue_svid(WEB)
    assert x509.load_pem_x509_certificates(svid.chain_pem) == [issuing.cert, middle.cert]
    verify_client(svid, ca.roots)


def test_an_intermediate_needs_its_chain(intermediate: Issued) -> None:
    with pytest.raises(InvalidInput, match="give the chain up to its root") as caught:
        CertificateAuthority.from_pem(
            intermediate.cert_pem, intermediate.key_pem, clock=fixed_clock
        )
    assert field_of(caught.value) == "ca.chain"


def test_an_intermediate_that_does_not_chain_to_the_given_root_is_refused(
    intermediate: Issued,
) -> None:
    unrelated = operator_cert("Example Root")  # same name, another key
    with pytest.raises(InvalidInput, match="does not chain to the given roots") as caught:
        CertificateAuthority.from_pem(
            intermediate.cert_pem, intermediate.key_pem, unrelated.cert_pem, clock=fixed_clock
        )
    assert field_of(caught.value) == "ca.chain"


def test_an_intermediate_whose_key_does_not_match_is_refused(
    operator_root: Issued, intermediate: Issued
) -> None:
    with pytest.raises(InvalidInput, match="does not match"):
        CertificateAuthority.from_pem(
            intermediate.cert_pem, operator_root.key_pem, operator_root.cert_pem, clock=fixed_clock
        )


def test_an_intermediate_under_a_parent_that_is_not_a_ca_is_refused(
    operator_root: Issued,
) -> None:
    not_ca = operator_cert("Example Server", issuer=operator_root, ca=False, key_cert_sign=False)
    below = operator_cert("Example Mesh CA", issuer=not_ca)
    with pytest.raises(InvalidInput, match=r"chain certificate .* cannot sign certificates"):
        CertificateAuthority.from_pem(
            below.cert_pem,
            below.key_pem,
            not_ca.cert_pem + operator_root.cert_pem,
            clock=fixed_clock,
        )


def test_an_intermediate_beyond_the_roots_path_length_is_refused() -> None:
    strict_root = operator_cert("Strict Root", path_length=0)
    middle = operator_cert("Example Regional CA", issuer=strict_root)
    issuing = operator_cert("Example Mesh CA", issuer=middle)
    with pytest.raises(InvalidInput, match="allows 0 intermediate"):
        CertificateAuthority.from_pem(
            issuing.cert_pem,
            issuing.key_pem,
            middle.cert_pem + strict_root.cert_pem,
            clock=fixed_clock,
        )


def test_a_root_takes_no_intermediates(operator_root: Issued, intermediate: Issued) -> None:
    with pytest.raises(InvalidInput, match="takes no intermediates"):
        CertificateAuthority.from_pem(
            operator_root.cert_pem, operator_root.key_pem, intermediate.cert_pem, clock=fixed_clock
        )


# --- issuing -------------------------------------------------------------------------------


def test_issuing_for_a_given_public_key_returns_no_private_key(
    root_ca: CertificateAuthority,
) -> None:
    public = generate_private_key().public_key()
    svid = root_ca.issue_svid(WEB, public)
    assert svid.key_pem is None
    leaf = x509.load_pem_x509_certificate(svid.cert_pem)
    assert leaf.public_key() == public


def test_a_generated_key_matches_the_certificate(svid: Svid) -> None:
    assert svid.key_pem is not None
    key = private_key_from_pem(svid.key_pem)
    assert x509.load_pem_x509_certificate(svid.cert_pem).public_key() == key.public_key()


def test_the_lifetime_is_configurable(root_ca: CertificateAuthority) -> None:
    svid = root_ca.issue_svid(WEB, lifetime=timedelta(hours=1))
    assert svid.not_after == NOW + timedelta(hours=1)


def test_the_lifetime_must_be_positive(root_ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidInput, match="must be positive") as caught:
        root_ca.issue_svid(WEB, lifetime=timedelta(0))
    assert field_of(caught.value) == "lifetime"


def test_a_leaf_never_outlives_its_ca() -> None:
    clock = SettableClock()
    ca = CertificateAuthority.create_root(TRUST_DOMAIN, clock, lifetime=timedelta(days=30))
    clock.now = NOW + timedelta(days=29, hours=20)
    svid = ca.issue_svid(WEB)
    assert svid.not_after == ca.certificate.not_valid_after_utc


def test_an_expired_ca_issues_nothing() -> None:
    clock = SettableClock()
    ca = CertificateAuthority.create_root(TRUST_DOMAIN, clock, lifetime=timedelta(days=30))
    clock.now = NOW + timedelta(days=31)
    with pytest.raises(InvalidInput, match="signing CA expired"):
        ca.issue_svid(WEB)


def test_a_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CertificateAuthority.create_root(TRUST_DOMAIN, lambda: NOW.replace(tzinfo=None))


def test_a_bundle_must_keep_the_root_the_ca_chains_to(root_ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create_root(TRUST_DOMAIN, fixed_clock)
    assert root_ca.with_bundle([*root_ca.roots, *other.roots]).roots == (
        root_ca.certificate,
        other.certificate,
    )
    with pytest.raises(InvalidInput, match="must contain the root the CA chains to"):
        root_ca.with_bundle(other.roots)


def test_certificates_reject_a_foreign_pem_as_roots() -> None:
    broken = CaCertificates(cert_pem=b"x", chain_pem=b"", roots_pem=b"y")
    with pytest.raises(InvalidInput):
        broken.key_id  # noqa: B018


# --- renewal -------------------------------------------------------------------------------


class Extreme:
    """A random source that always draws one end of the range."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_renewal_is_half_way_give_or_take_ten_percent(svid: Svid) -> None:
    lifetime = svid.not_after - svid.not_before
    earliest = svid.not_before + lifetime * 0.4
    latest = svid.not_before + lifetime * 0.6
    times = [svid.renew_at(random.Random(seed)) for seed in range(200)]
    assert all(earliest <= t <= latest for t in times)
    assert len(set(times)) > 100  # jittered, not one instant


def test_renewal_reaches_both_ends_of_the_jitter(svid: Svid) -> None:
    lifetime = svid.not_after - svid.not_before
    assert svid.renew_at(Extreme(high=False)) == svid.not_before + lifetime * 0.4
    assert svid.renew_at(Extreme(high=True)) == svid.not_before + lifetime * 0.6


def test_renewal_is_deterministic_for_a_seeded_source(svid: Svid) -> None:
    assert svid.renew_at(random.Random(7)) == svid.renew_at(random.Random(7))


class Fixed:
    """A (misbehaving) random source that always returns ``value``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def uniform(self, a: float, b: float) -> float:
        return self.value


def test_renewal_is_never_later_than_the_safety_margin(root_ca: CertificateAuthority) -> None:
    day = root_ca.issue_svid(WEB)
    assert day.renew_at(Fixed(10.0)) == day.not_after - timedelta(minutes=5)
    short = root_ca.issue_svid(WEB, lifetime=timedelta(minutes=10))
    assert short.renew_at(Fixed(10.0)) == short.not_after - short.lifetime / 10
    assert short.renew_at(Extreme(high=True), jitter=0.4) <= short.not_after - short.lifetime / 10


def test_renewal_is_never_before_the_certificate_starts(svid: Svid) -> None:
    assert svid.renew_at(Fixed(-10.0)) == svid.not_before


def test_renewal_jitter_is_bounded(svid: Svid) -> None:
    with pytest.raises(ValueError):
        svid.renew_at(random.Random(1), jitter=0.5)


def test_an_svid_for_another_service_is_its_own(root_ca: CertificateAuthority) -> None:
    other = SpiffeId.for_service(TRUST_DOMAIN, "shop", "cart")
    verified = verify_client(root_ca.issue_svid(other), root_ca.roots)
    assert verified.subjects == [x509.UniformResourceIdentifier(str(other))]
