"""RequestAuthentication's ``jwksUri``, ``fromCookies`` and ``outputClaimToHeaders`` in the
translator: the fetched key set (``MeshState.fetched_keys``) inlined into the provider, what a
proxy gets before any fetch succeeded, the problems on the policy, and which views a key
rotation changes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2

from interlock.model import MeshState, Problem, Severity
from interlock.model.policy.request_authentication import FetchedKeys
from interlock.reconcile import as_type_map
from interlock.xds.translate import Resources, translate
from interlock.xds.translate.jwt import NO_KEYS
from tests.xds.test_translate_authz import BACKEND, inbound_filters, state

URI = "https://login.example.com/keys"
REF = "RequestAuthentication/default/jwt"
FIELD = "spec.jwtRules[0].jwksUri"


def keys(kid: str) -> str:
    key = {
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "x": "smUU1_V4ikTGhhB_GtAL2HYgJeK41ny2MWD7AvPkqQw",
    }
    return json.dumps({"keys": [{**key, "y": "q18F2nY0a66yaSb0_mRTMIz5K3QskwHKLFNGGzosoVo"}]})


def mesh(fetched: FetchedKeys | None = None, **rule: Any) -> MeshState:
    ra = {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "backend"}},
            "jwtRules": [{"issuer": "https://login.example.com", "jwksUri": URI, **rule}],
        },
    }
    found = state(ra)
    return dataclasses.replace(found, fetched_keys={URI: fetched} if fetched else {})


def provider(resources: Resources) -> jwt_pb2.JwtProvider:
    config = jwt_pb2.JwtAuthentication()
    inbound_filters(resources)[0].typed_config.Unpack(config)
    return config.providers["default/jwt/jwtRules[0]"]


def jwks_problems(resources: Resources) -> list[Problem]:
    return [p for p in resources.problems if p.resource == REF]


def test_fetched_keys_are_inlined_and_need_no_problem() -> None:
    resources = translate(mesh(FetchedKeys(keys=keys("k1"))), BACKEND)
    assert provider(resources).local_jwks.inline_string == keys("k1")
    assert jwks_problems(resources) == []


def test_before_any_fetch_no_token_verifies_and_the_policy_says_so() -> None:
    for fetched, why in [(None, "not fetched yet"), (FetchedKeys(error="HTTP 404"), "HTTP 404")]:
        resources = translate(mesh(fetched), BACKEND)
        assert provider(resources).local_jwks.inline_string == NO_KEYS
        [problem] = jwks_problems(resources)
        assert (problem.field, problem.severity) == (FIELD, Severity.ERROR)
        assert why in problem.message and "refused" in problem.message


def test_a_failed_refresh_keeps_the_last_good_keys_with_a_warning() -> None:
    resources = translate(mesh(FetchedKeys(keys=keys("k1"), error="HTTP 503")), BACKEND)
    assert provider(resources).local_jwks.inline_string == keys("k1")
    [problem] = jwks_problems(resources)
    assert (problem.field, problem.severity) == (FIELD, Severity.WARNING)
    assert "HTTP 503" in problem.message and "fetched before are used" in problem.message


def test_cookies_and_claims_to_headers() -> None:
    resources = translate(
        mesh(
            FetchedKeys(keys=keys("k1")),
            fromCookies=["session", "__Host-id"],
            outputClaimToHeaders=[
                {"header": "x-user", "claim": "sub"},
                {"header": "x-tenant", "claim": "org.tenant"},
            ],
        ),
        BACKEND,
    )
    p = provider(resources)
    assert list(p.from_cookies) == ["session", "__Host-id"]
    assert [(c.header_name, c.claim_name) for c in p.claim_to_headers] == [
        ("x-user", "sub"),
        ("x-tenant", "org.tenant"),
    ]
    assert not p.from_headers  # no headers named: Envoy's defaults stay with the cookies


def test_a_rotation_changes_only_the_views_the_policy_selects() -> None:
    frontend = dataclasses.replace(BACKEND, node_id="frontend-1", service="frontend")
    before = mesh(FetchedKeys(keys=keys("k1")))
    after = dataclasses.replace(before, fetched_keys={URI: FetchedKeys(keys=keys("k2"))})

    def serialized(state: MeshState, proxy: Any) -> dict[str, list[bytes]]:
        typed = as_type_map(translate(state, proxy))
        return {t: [m.SerializeToString(deterministic=True) for m in ms] for t, ms in typed.items()}

    assert serialized(before, frontend) == serialized(after, frontend)
    changed = {
        t for t, ms in serialized(before, BACKEND).items() if ms != serialized(after, BACKEND)[t]
    }
    assert changed == {"type.googleapis.com/envoy.config.listener.v3.Listener"}
