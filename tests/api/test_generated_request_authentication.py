"""What the API accepts, Envoy accepts — for RequestAuthentication's ``jwksUri``,
``fromCookies`` and ``outputClaimToHeaders`` (Hypothesis, as :mod:`.test_generated_policies`).

Rules are written mostly as users do and sometimes mistyped: URIs (https, plain http to a
loopback host or not, relative, with credentials), cookie names and claim headers of any
printable characters. Every answer is a success or a problem+json naming a field; everything
accepted is translated — with its key sets not fetched yet, and fetched — and must pass
``envoy --mode validate``.
"""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlock.model.policy.request_authentication import FetchedKeys
from interlock.store import Store
from interlock.xds.translate import translate
from tests.api.test_generated_policies import (
    EXAMPLES,
    GATEWAY,
    SIDECAR,
    _apply_one,
    _delete_all,
    api,
    mostly,
)
from tests.support.envoy_validate import validate
from tests.support.jwks_issuer import RotatingIssuer

__all__ = ["api"]  # the module's fixture, shared

#: A real public key set (the specs' RSA_JWKS is a stand-in Envoy would refuse).
RSA_JWKS = RotatingIssuer.public_jwks(rsa.generate_private_key(65537, 2048))

printable = st.text(alphabet=string.printable, min_size=0, max_size=10)
uris = mostly(
    st.sampled_from(
        [
            "https://issuer.example.com/.well-known/jwks.json",
            "https://login.example.com:8443/keys?v=2",
            "http://127.0.0.1:9000/keys",
            "http://[::1]/keys",
            "https://[2001:db8::1]/keys",
        ]
    ),
    st.one_of(
        st.sampled_from(
            [
                "http://issuer.example.com/keys",
                "/keys",
                "https://user:pw@issuer.example.com/keys",
                "https://issuer.example.com/keys#frag",
                "ftp://issuer.example.com/keys",
                "https://issuer.example.com:99999/keys",
                "https://",
                "",
            ]
        ),
        st.builds(lambda tail: "https://issuer.example.com/" + tail, printable),
    ),
)
cookies = mostly(st.sampled_from(["session", "__Host-id", "id_token", "a.b", "X~1"]), printable)
headers = mostly(st.sampled_from(["x-user", "X-Tenant", "x_claim", "x-jwt-sub"]), printable)
claims = mostly(st.sampled_from(["sub", "org.tenant", "email", "a.b.c"]), printable)


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"issuer": "https://issuer.example.com"}
    source = draw(st.sampled_from(["uri", "uri", "uri", "inline", "both", "neither"]))
    if source in ("uri", "both"):
        rule["jwksUri"] = draw(uris)
    if source in ("inline", "both"):
        rule["jwks"] = RSA_JWKS
    if draw(st.booleans()):
        rule["fromCookies"] = draw(st.lists(cookies, max_size=3))
    if draw(st.booleans()):
        rule["outputClaimToHeaders"] = draw(
            st.lists(st.fixed_dictionaries({"header": headers, "claim": claims}), max_size=3)
        )
    if draw(st.integers(0, 3)) == 0:
        rule["outputPayloadToHeader"] = draw(headers)
    return rule


documents = st.lists(st.lists(rules(), min_size=1, max_size=2), min_size=1, max_size=2).map(
    lambda batch: [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": f"jwt-{index}", "namespace": "default"},
            "spec": {"jwtRules": rules_},
        }
        for index, rules_ in enumerate(batch)
    ]
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=documents)
def test_what_the_api_accepts_envoy_accepts(
    api: tuple[TestClient, Store], batch: list[dict[str, Any]], tmp_path: Path
) -> None:
    client, store = api
    try:
        if not any([_apply_one(client, document) for document in batch]):
            return
        state = store.load_state()
        fetched = dataclasses.replace(
            state,
            fetched_keys={
                rule.jwks_uri: FetchedKeys(keys=RSA_JWKS)
                for policy in state.policies.request_authentications
                for rule in policy.spec.jwt_rules
                if rule.jwks_uri is not None
            },
        )
        for mesh in (state, fetched):
            for proxy in (SIDECAR, GATEWAY):
                validate(translate(mesh, proxy))
    finally:
        _delete_all(client)
