"""The JWT-shaped envelope gRPC clients send a proxy token in: readable as a JWT with an
``exp`` (what grpcio's jwt_token_file credentials need), and holding nothing but the token."""

from __future__ import annotations

import base64
import json

import pytest

from interlock.model.token_envelope import EnvelopeError, looks_wrapped, unwrap, wrap

TOKEN = "ilp_" + "x" * 43


def claims(envelope: str) -> dict[str, object]:
    payload = envelope.split(".")[1]
    data: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return data


def test_an_envelope_is_a_jwt_with_an_expiry_that_gives_the_token_back() -> None:
    envelope = wrap(TOKEN, "default/caller/c1", issued_at=1_000, lifetime=3_600)
    assert looks_wrapped(envelope) and envelope.count(".") == 2
    assert claims(envelope)["exp"] == 4_600 and claims(envelope)["sub"] == "default/caller/c1"
    opened = unwrap(envelope, now=2_000)
    assert (opened.token, opened.expires_at) == (TOKEN, 4_600)
    assert TOKEN not in repr(opened)


def test_an_expired_or_foreign_envelope_is_refused_without_echoing_it() -> None:
    envelope = wrap(TOKEN, "default/caller/c1", issued_at=1_000, lifetime=10)
    with pytest.raises(EnvelopeError, match="expired") as expired:
        unwrap(envelope, now=1_010)
    assert TOKEN not in str(expired.value)
    header = base64.urlsafe_b64encode(b'{"alg":"RS256"}').rstrip(b"=").decode()
    with pytest.raises(EnvelopeError, match="not an Interlock"):
        unwrap(header + "." + envelope.split(".")[1] + ".sig", now=1_000)
    with pytest.raises(EnvelopeError, match="readable"):
        unwrap("eyJ!!!.eyJ???.", now=0)
    assert not looks_wrapped(TOKEN)
