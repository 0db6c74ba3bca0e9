"""SPIFFE ID rules: one test per rule of the SPIFFE-ID standard (and the valid forms)."""

from __future__ import annotations

import pytest

from interlock.ca import MAX_ID_BYTES, SpiffeId, validate_trust_domain
from interlock.model.errors import InvalidInput


def rejected(text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        SpiffeId.parse(text)
    assert caught.value.errors[0].field == "spiffe_id"
    return caught.value


# --- valid forms ---------------------------------------------------------------------------


def test_a_valid_id_parses_into_trust_domain_and_path() -> None:
    parsed = SpiffeId.parse("spiffe://example.org/ns/default/sa/web")
    assert (parsed.trust_domain, parsed.path) == ("example.org", "/ns/default/sa/web")
    assert str(parsed) == "spiffe://example.org/ns/default/sa/web"
    assert SpiffeId.parse(str(parsed)) == parsed


def test_every_allowed_character_is_accepted() -> None:
    parsed = SpiffeId.parse("spiffe://a-b.c_d.0-9/Az09.-_/x.y")
    assert parsed.trust_domain == "a-b.c_d.0-9"


def test_an_id_without_a_path_names_the_trust_domain() -> None:
    parsed = SpiffeId.parse("spiffe://example.org")
    assert parsed.is_trust_domain
    assert parsed == SpiffeId.for_trust_domain("example.org")


def test_for_service_builds_the_namespace_and_service_account_form() -> None:
    spiffe_id = SpiffeId.for_service("interlock.local", "shop", "cart")
    assert str(spiffe_id) == "spiffe://interlock.local/ns/shop/sa/cart"


def test_for_service_reports_the_bad_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        SpiffeId.for_service("interlock.local", "shop", "..")
    assert caught.value.errors[0].field == "service"


def test_constructing_an_invalid_id_directly_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"'\.' or '\.\.'"):
        SpiffeId("example.org", "/a/../b")


# --- scheme --------------------------------------------------------------------------------


def test_the_scheme_must_be_spiffe() -> None:
    assert "scheme must be 'spiffe'" in rejected("https://example.org/web").message


def test_the_scheme_must_be_lowercase() -> None:
    assert "lowercase" in rejected("SPIFFE://example.org/web").message


def test_the_scheme_must_be_followed_by_two_slashes() -> None:
    assert "must start with 'spiffe://'" in rejected("spiffe:example.org/web").message


# --- trust domain --------------------------------------------------------------------------


def test_the_trust_domain_must_not_be_empty() -> None:
    assert "must not be empty" in rejected("spiffe:///web").message


def test_the_trust_domain_allows_only_lowercase_letters_digits_dot_dash_underscore() -> None:
    assert "only lowercase letters" in rejected("spiffe://Example.org/web").message
    assert "only lowercase letters" in rejected("spiffe://exa!mple.org/web").message


def test_the_trust_domain_must_not_carry_a_port() -> None:
    assert "port" in rejected("spiffe://example.org:8443/web").message


def test_the_trust_domain_must_not_carry_userinfo() -> None:
    assert "userinfo" in rejected("spiffe://user@example.org/web").message


def test_the_trust_domain_is_at_most_255_bytes() -> None:
    assert "at most 255 bytes" in rejected("spiffe://" + "a" * 256 + "/web").message
    assert SpiffeId.parse("spiffe://" + "a" * 255 + "/web").trust_domain == "a" * 255


def test_validate_trust_domain_reports_the_given_field() -> None:
    assert validate_trust_domain("interlock.local") == "interlock.local"
    with pytest.raises(InvalidInput) as caught:
        validate_trust_domain("Bad", field="ca.trust_domain")
    assert caught.value.errors[0].field == "ca.trust_domain"


# --- path ----------------------------------------------------------------------------------


def test_path_segments_must_not_be_empty() -> None:
    assert "must not be empty" in rejected("spiffe://example.org/a//b").message


def test_the_path_must_not_end_with_a_slash() -> None:
    assert "trailing '/'" in rejected("spiffe://example.org/a/").message
    assert "trailing '/'" in rejected("spiffe://example.org/").message


def test_path_segments_must_not_be_a_dot() -> None:
    assert "'.' or '..'" in rejected("spiffe://example.org/a/./b").message


def test_path_segments_must_not_be_two_dots() -> None:
    assert "'.' or '..'" in rejected("spiffe://example.org/a/../b").message


def test_path_segments_allow_only_letters_digits_dot_dash_underscore() -> None:
    assert "only letters, digits" in rejected("spiffe://example.org/a b").message
    assert "only letters, digits" in rejected("spiffe://example.org/caf\u00e9").message


def test_percent_encoding_is_not_allowed() -> None:
    assert "percent-encoding" in rejected("spiffe://example.org/a%20b").message
    assert "percent-encoding" in rejected("spiffe://ex%61mple.org/a").message


def test_a_query_is_not_allowed() -> None:
    assert "query" in rejected("spiffe://example.org/web?x=1").message


def test_a_fragment_is_not_allowed() -> None:
    assert "fragment" in rejected("spiffe://example.org/web#x").message


# --- length --------------------------------------------------------------------------------


def test_an_id_is_at_most_2048_bytes() -> None:
    prefix = "spiffe://example.org/"
    longest = prefix + "a" * (MAX_ID_BYTES - len(prefix))
    assert len(str(SpiffeId.parse(longest))) == MAX_ID_BYTES
    assert "at most 2048 bytes" in rejected(longest + "a").message
    with pytest.raises(InvalidInput, match="at most 2048 bytes"):
        SpiffeId("example.org", "/" + "a" * MAX_ID_BYTES)
