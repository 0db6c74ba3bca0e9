"""Root rotation: the three steps, their refusals, JSON, and leaves across old and new roots."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from interlock.ca import (
    CertificateAuthority,
    RotationPhase,
    RotationState,
    abort,
    advance,
    start,
)
from interlock.model.errors import Conflict, InvalidInput
from tests.ca.conftest import TRUST_DOMAIN, WEB, fixed_clock, operator_cert, verify_client


@pytest.fixture(scope="module")
def old_ca() -> CertificateAuthority:
    return CertificateAuthority.create_root(TRUST_DOMAIN, fixed_clock)


@pytest.fixture(scope="module")
def new_ca() -> CertificateAuthority:
    return CertificateAuthority.create_root(TRUST_DOMAIN, fixed_clock)


@pytest.fixture
def idle(old_ca: CertificateAuthority) -> RotationState:
    return RotationState.initial(old_ca)


@pytest.fixture
def published(idle: RotationState, new_ca: CertificateAuthority) -> RotationState:
    return start(idle, new_ca)


@pytest.fixture
def signing_with_new(published: RotationState) -> RotationState:
    return advance(published, acked_everywhere=True)


def roots_of(state: RotationState) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(state.bundle_pem())


# --- the three steps -----------------------------------------------------------------------


def test_idle_signs_with_the_current_ca_and_publishes_its_root(
    idle: RotationState, old_ca: CertificateAuthority
) -> None:
    assert idle.phase is RotationPhase.IDLE
    assert idle.signing.key_id == old_ca.key_id
    assert roots_of(idle) == [old_ca.certificate]


def test_start_publishes_old_and_new_roots_and_keeps_signing_with_the_old(
    published: RotationState, old_ca: CertificateAuthority, new_ca: CertificateAuthority
) -> None:
    assert published.phase is RotationPhase.BUNDLE_PUBLISHED
    assert published.signing.key_id == old_ca.key_id
    assert roots_of(published) == [old_ca.certificate, new_ca.certificate]
    assert published.step == 1


def test_the_second_step_signs_with_the_new_ca_and_keeps_both_roots(
    signing_with_new: RotationState, old_ca: CertificateAuthority, new_ca: CertificateAuthority
) -> None:
    assert signing_with_new.phase is RotationPhase.SIGNING_WITH_NEW
    assert signing_with_new.signing.key_id == new_ca.key_id
    assert roots_of(signing_with_new) == [old_ca.certificate, new_ca.certificate]
    assert signing_with_new.step == 2


def test_the_last_step_drops_the_old_root(
    signing_with_new: RotationState, new_ca: CertificateAuthority
) -> None:
    done = advance(signing_with_new, acked_everywhere=True)
    assert done.phase is RotationPhase.IDLE
    assert done.incoming is None
    assert done.signing.key_id == new_ca.key_id
    assert roots_of(done) == [new_ca.certificate]
    assert done.step == 3


# --- refusals ------------------------------------------------------------------------------


def test_signing_with_new_waits_until_every_proxy_acked_the_two_root_bundle(
    published: RotationState,
) -> None:
    with pytest.raises(Conflict, match=r"bundle-published.*the old and the new root"):
        advance(published, acked_everywhere=False)


def test_dropping_the_old_root_waits_until_every_proxy_acked_a_new_certificate(
    signing_with_new: RotationState,
) -> None:
    with pytest.raises(Conflict, match=r"signing-with-new.*signed by the new CA"):
        advance(signing_with_new, acked_everywhere=False)


def test_advance_without_a_rotation_is_refused(idle: RotationState) -> None:
    with pytest.raises(Conflict, match="no CA rotation is in progress"):
        advance(idle, acked_everywhere=True)


def test_a_second_rotation_cannot_start_before_the_first_ends(
    published: RotationState, signing_with_new: RotationState
) -> None:
    third = CertificateAuthority.create_root(TRUST_DOMAIN, fixed_clock)
    for state in (published, signing_with_new):
        with pytest.raises(Conflict, match="already in progress"):
            start(state, third)


def test_rotating_to_another_trust_domain_is_refused(idle: RotationState) -> None:
    foreign = CertificateAuthority.create_root("other.example", fixed_clock)
    with pytest.raises(InvalidInput, match=r"trust domain 'other\.example'"):
        start(idle, foreign)


def test_rotating_to_the_same_key_is_refused(
    idle: RotationState, old_ca: CertificateAuthority
) -> None:
    with pytest.raises(InvalidInput, match="needs a new key"):
        start(idle, old_ca)


def test_a_published_rotation_can_be_aborted(
    published: RotationState, old_ca: CertificateAuthority
) -> None:
    back = abort(published)
    assert back.phase is RotationPhase.IDLE
    assert roots_of(back) == [old_ca.certificate]
    assert back.step == 2


def test_once_the_new_ca_signs_there_is_no_abort(
    idle: RotationState, signing_with_new: RotationState
) -> None:
    for state in (idle, signing_with_new):
        with pytest.raises(Conflict, match="only in phase bundle-published"):
            abort(state)


# --- leaves across the rotation ------------------------------------------------------------


def test_a_leaf_of_the_new_ca_verifies_against_the_old_and_new_bundle(
    signing_with_new: RotationState, new_ca: CertificateAuthority
) -> None:
    ca = signing_with_new.authority(new_ca.private_key_pem(), clock=fixed_clock)
    assert ca.key_id == new_ca.key_id
    assert ca.bundle_pem() == signing_with_new.bundle_pem()
    svid = ca.issue_svid(WEB)
    assert verify_client(svid, roots_of(signing_with_new)).chain[-1] == new_ca.certificate


def test_a_leaf_of_the_old_ca_still_verifies_while_both_roots_are_published(
    signing_with_new: RotationState, old_ca: CertificateAuthority
) -> None:
    svid = old_ca.issue_svid(WEB)
    assert verify_client(svid, roots_of(signing_with_new)).chain[-1] == old_ca.certificate


def test_after_the_rotation_a_leaf_of_the_old_ca_no_longer_verifies(
    signing_with_new: RotationState, old_ca: CertificateAuthority
) -> None:
    done = advance(signing_with_new, acked_everywhere=True)
    with pytest.raises(x509.verification.VerificationError):
        verify_client(old_ca.issue_svid(WEB), roots_of(done))


def test_bundle_published_still_signs_with_the_old_key(
    published: RotationState, old_ca: CertificateAuthority, new_ca: CertificateAuthority
) -> None:
    ca = published.authority(old_ca.private_key_pem(), clock=fixed_clock)
    assert ca.roots == (old_ca.certificate, new_ca.certificate)
    with pytest.raises(InvalidInput, match="does not match"):
        published.authority(new_ca.private_key_pem(), clock=fixed_clock)


def test_rotating_to_an_operator_intermediate_publishes_its_root(idle: RotationState) -> None:
    root = operator_cert("Example Root")
    issuing = operator_cert("Example Mesh CA", issuer=root, path_length=0)
    operator = CertificateAuthority.from_pem(
        issuing.cert_pem, issuing.key_pem, root.cert_pem, clock=fixed_clock
    )
    state = advance(start(idle, operator), acked_everywhere=True)
    ca = state.authority(issuing.key_pem, clock=fixed_clock)
    svid = ca.issue_svid(WEB)
    assert verify_client(svid, roots_of(state)).chain[-1] == root.cert


# --- JSON ----------------------------------------------------------------------------------


def test_every_state_round_trips_through_json_without_private_keys(
    idle: RotationState, published: RotationState, signing_with_new: RotationState
) -> None:
    for state in (idle, published, signing_with_new):
        text = state.to_json()
        assert "PRIVATE" not in text
        assert RotationState.from_json(text) == state


def test_malformed_json_is_refused_naming_the_field(idle: RotationState) -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        RotationState.from_json("{")
    data = json.loads(idle.to_json())
    for key, value, field in (
        ("version", 9, "rotation.version"),
        ("phase", "paused", "rotation.phase"),
        ("step", "one", "rotation.step"),
        ("incoming", {"cert_pem": 1}, "rotation.incoming.cert_pem"),
        (
            "current",
            {"cert_pem": "x", "chain_pem": "", "roots_pem": ""},
            "rotation.current.cert_pem",
        ),
    ):
        with pytest.raises(InvalidInput) as caught:
            RotationState.from_json(json.dumps({**data, key: value}))
        assert caught.value.errors[0].field == field, key


def test_an_idle_state_has_no_incoming_ca(published: RotationState) -> None:
    data = json.loads(published.to_json())
    with pytest.raises(InvalidInput, match="idle has none"):
        RotationState.from_json(json.dumps({**data, "phase": "idle"}))
