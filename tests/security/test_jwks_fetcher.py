"""The control plane's fetcher of ``jwksUri`` key sets, against a real issuer on 127.0.0.1
(HTTPS with a CA of its own, or plain HTTP): what it holds after each answer, and when it says
so."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interlock.model import MeshState
from interlock.model.policy import read_resources
from interlock.security.jwks import JwksSettings, KeyFetcher
from tests.support.jwks_issuer import ISSUER, RotatingIssuer


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[RotatingIssuer]:
    found = RotatingIssuer(tmp_path)
    try:
        yield found
    finally:
        found.close()


def state(*uris: str) -> MeshState:
    """A mesh whose one RequestAuthentication names ``uris``."""
    document: dict[str, Any] = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": "default"},
        "spec": {"jwtRules": [{"issuer": ISSUER, "jwksUri": uri} for uri in uris]},
    }
    return MeshState.build(1, [], [], read_resources([document], batch=True))


def kids(keys: str | None) -> list[str]:
    assert keys is not None
    return [k["kid"] for k in json.loads(keys)["keys"]]


async def test_fetches_verified_keys_and_keeps_them_through_failures(
    issuer: RotatingIssuer,
) -> None:
    changes: list[int] = []
    fetcher = KeyFetcher(JwksSettings(ca_file=issuer.ca.pem), on_change=lambda: changes.append(1))
    mesh = state(issuer.uri)
    await fetcher.prime(mesh)
    held = fetcher.keys_for(mesh)[issuer.uri]
    assert kids(held.keys) == ["key-0"] and held.error is None
    assert changes == [1]
    assert fetcher.keys_for(mesh) is fetcher.keys_for(mesh)  # unchanged: the same object

    issuer.status = 503
    await fetcher.prime(mesh)  # nothing to prime: keys are held
    await fetcher._attempt([issuer.uri])
    held = fetcher.keys_for(mesh)[issuer.uri]
    assert kids(held.keys) == ["key-0"] and held.error == "HTTP 503"
    assert changes == [1, 1]

    issuer.status = 200
    issuer.rotate()
    await fetcher._attempt([issuer.uri])
    held = fetcher.keys_for(mesh)[issuer.uri]
    assert kids(held.keys) == ["key-1"] and held.error is None


async def test_the_refresh_loop_picks_up_a_rotation(issuer: RotatingIssuer) -> None:
    changed = asyncio.Event()
    fetcher = KeyFetcher(JwksSettings(refresh=0.2, ca_file=issuer.ca.pem), on_change=changed.set)
    mesh = state(issuer.uri)
    await fetcher.prime(mesh)
    changed.clear()
    fetcher.start()
    try:
        issuer.rotate()
        async with asyncio.timeout(5):
            await changed.wait()
        assert kids(fetcher.keys_for(mesh)[issuer.uri].keys) == ["key-1"]
        assert fetcher.running
    finally:
        await fetcher.stop()
    assert not fetcher.running


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"x" * 300_000, "larger than 262144 bytes"),
        (b"{keys", "not valid JSON"),
        (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric key"),
        (b'{"keys": []}', "JSON Web Key Set"),
        (
            b'{"keys": [{"kty": "RSA", "kid": "k1", "alg": "HS256", "n": "AQAB", "e": "AQAB"}]}',
            "keys[0] (kid 'k1') cannot verify tokens: alg 'HS256' is not an RSA algorithm",
        ),
    ],
    ids=["too large", "not JSON", "a secret key", "no keys", "a key Envoy would refuse"],
)
async def test_a_bad_answer_is_an_error_and_never_keys(
    issuer: RotatingIssuer, answer: bytes, says: str
) -> None:
    issuer.body = answer
    fetcher = KeyFetcher(JwksSettings(ca_file=issuer.ca.pem))
    mesh = state(issuer.uri)
    await fetcher.prime(mesh)
    held = fetcher.keys_for(mesh)[issuer.uri]
    assert held.keys is None
    assert held.error is not None and says in held.error


async def test_an_issuer_the_trust_store_does_not_trust_is_refused(
    issuer: RotatingIssuer,
) -> None:
    fetcher = KeyFetcher(JwksSettings())  # the system's trust store only
    mesh = state(issuer.uri)
    await fetcher.prime(mesh)
    held = fetcher.keys_for(mesh)[issuer.uri]
    assert held.keys is None
    assert held.error is not None and "not trusted" in held.error
    assert issuer.fetches == 0  # no request was sent over the unverified connection


async def test_a_redirect_is_not_followed(issuer: RotatingIssuer) -> None:
    issuer.status = 302
    issuer.headers = {"location": "https://elsewhere.example.com/keys.json"}
    fetcher = KeyFetcher(JwksSettings(ca_file=issuer.ca.pem))
    mesh = state(issuer.uri)
    await fetcher.prime(mesh)
    error = fetcher.keys_for(mesh)[issuer.uri].error
    assert error is not None and "redirected to https://elsewhere.example.com/keys.json" in error


async def test_plain_http_from_a_loopback_issuer(tmp_path: Path) -> None:
    plain = RotatingIssuer(tmp_path, tls=False)
    try:
        fetcher = KeyFetcher(JwksSettings())
        mesh = state(plain.uri)
        await fetcher.prime(mesh)
        assert kids(fetcher.keys_for(mesh)[plain.uri].keys) == ["key-0"]
    finally:
        plain.close()


async def test_distinct_uris_are_bounded_and_forgotten_when_no_policy_names_them(
    issuer: RotatingIssuer,
) -> None:
    fetcher = KeyFetcher(JwksSettings(ca_file=issuer.ca.pem, max_uris=1))
    other = issuer.uri.replace("/keys.json", "/keys.json?second")
    mesh = state(issuer.uri, other)
    await fetcher.prime(mesh)
    held = fetcher.keys_for(mesh)
    assert kids(held[issuer.uri].keys) == ["key-0"]
    assert held[other].keys is None
    assert "more than 1 distinct jwksUri" in (held[other].error or "")
    assert dict(fetcher.keys_for(state())) == {}


def test_a_ca_file_that_cannot_be_read_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--jwks-ca-file"):
        KeyFetcher(JwksSettings(ca_file=tmp_path / "missing.pem"))
