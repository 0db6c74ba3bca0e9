"""RequestAuthentication → Envoy's ``jwt_authn`` HTTP filter, on the inbound side of a sidecar.

Every ``jwtRules`` entry of every RequestAuthentication that applies to the workload
(:mod:`.workload_policies`) is one provider (``<namespace>/<name>/jwtRules[<i>]``): its issuer,
audiences and key set (``local_jwks``), where the token is read from (Envoy's default, like
Istio's: ``Authorization: Bearer`` and the ``access_token`` query parameter; else the rule's
headers, parameters and cookies), whether the token is forwarded, and whether the payload and
claims are copied to headers.

A rule's key set is inline (``jwks``) or fetched by the control plane from its ``jwksUri``
(``MeshState.fetched_keys``, as istiod does): Envoy never reaches the issuer. Keys not fetched
yet (or never fetched successfully) give the provider a key set that verifies nothing
(:data:`NO_KEYS`) — every token of that issuer is refused, never accepted unverified — and
an error problem on the policy; a failed refresh that keeps the last good keys is a warning.

One requirement covers every request: a token of *any* provider, or no token at all
(``requires_any`` with ``allow_missing``). So, as in Istio, a request with a token that does
not verify (bad signature, expired, unknown issuer, wrong audience) is refused with 401, and a
request without one passes — an AuthorizationPolicy with ``requestPrincipals`` refuses it then.
The verified payload is written to the dynamic metadata ``envoy.filters.http.jwt_authn`` under
``payload`` (:data:`PAYLOAD_KEY`), where the RBAC filters read ``iss``, ``sub`` and the claims.

The providers live in the filter's own configuration (in the listener: jwt_authn has no
per-route providers), so the filter is in the inbound connection manager only while some
RequestAuthentication applies, and such a change replaces the inbound listener (Envoy drains
the old one's connections).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import empty_pb2

from interlock.model import MeshState, Problem, Proxy, Severity
from interlock.model.policy.policies import Policy
from interlock.model.policy.request_authentication import JWTRule, RequestAuthentication
from interlock.xds.translate.common import typed
from interlock.xds.translate.workload_policies import applicable

JWT_AUTHN = "envoy.filters.http.jwt_authn"
#: Where the verified payload goes in ``jwt_authn``'s dynamic metadata.
PAYLOAD_KEY = "payload"
#: The key set of a provider whose keys are not known: it verifies no token. Envoy refuses a
#: provider without a key, so it is one public key whose private key was thrown away when it
#: was made (as istiod does); a token that names its ``kid`` still fails its signature.
NO_KEYS = (
    '{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"interlock-no-keys",'
    '"x":"tYq7lTakVZlcruuBcKlYZDr5n2w_zFF-ZnitBRDDJ5o",'
    '"y":"KY3rNc_VJfqX4U2lFOS5fqnF-zc97QPJKKcbFt1OtQA"}]}'
)


def key_set(rule: JWTRule, state: MeshState) -> str:
    """The key set ``rule``'s tokens are verified with: inline, or as fetched from its
    ``jwksUri`` (:data:`NO_KEYS` while none was fetched)."""
    if rule.jwks is not None:
        return rule.jwks
    fetched = state.fetched_keys.get(rule.jwks_uri or "")
    return fetched.keys if fetched is not None and fetched.keys is not None else NO_KEYS


def key_problems(
    policies: Sequence[Policy[RequestAuthentication]], state: MeshState
) -> list[Problem]:
    """What is wrong with the fetched key sets of ``policies``' rules: none yet (an error:
    their tokens are refused), or a failed refresh (a warning: the last good keys are kept)."""
    problems: list[Problem] = []
    for policy in policies:
        for index, rule in enumerate(policy.spec.jwt_rules):
            if rule.jwks_uri is None:
                continue
            field = f"spec.jwtRules[{index}].jwksUri"
            fetched = state.fetched_keys.get(rule.jwks_uri)
            if fetched is None or fetched.keys is None:
                why = fetched.error if fetched is not None and fetched.error else "not fetched yet"
                problems.append(
                    Problem(
                        policy.ref,
                        field,
                        f"no keys from {rule.jwks_uri} ({why}): tokens of {rule.issuer} are "
                        "refused until a fetch succeeds",
                        Severity.ERROR,
                    )
                )
            elif fetched.error is not None:
                problems.append(
                    Problem(
                        policy.ref,
                        field,
                        f"refreshing the keys from {rule.jwks_uri} failed ({fetched.error}); "
                        "the keys fetched before are used",
                        Severity.WARNING,
                    )
                )
    return problems


def provider(rule: JWTRule, state: MeshState) -> jwt_pb2.JwtProvider:
    """One ``jwtRules`` entry as a provider."""
    p = jwt_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=rule.forward_original_token,
        from_headers=[
            jwt_pb2.JwtHeader(name=h.name, value_prefix=h.prefix or "") for h in rule.from_headers
        ],
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
        forward_payload_header=rule.output_payload_to_header or "",
        claim_to_headers=[
            jwt_pb2.JwtClaimToHeader(header_name=c.header, claim_name=c.claim)
            for c in rule.output_claim_to_headers
        ],
        payload_in_metadata=PAYLOAD_KEY,
    )
    p.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=key_set(rule, state)))
    return p


def provider_name(policy: Policy[RequestAuthentication], index: int) -> str:
    return f"{policy.namespace}/{policy.name}/jwtRules[{index}]"


def authentication(
    policies: Sequence[Policy[RequestAuthentication]], state: MeshState
) -> jwt_pb2.JwtAuthentication:
    """The filter configuration for ``policies``: every rule a provider, and one requirement
    on every request — a valid token of any provider, or none."""
    config = jwt_pb2.JwtAuthentication()
    names: list[str] = []
    for policy in policies:
        for index, rule in enumerate(policy.spec.jwt_rules):
            name = provider_name(policy, index)
            config.providers[name].CopyFrom(provider(rule, state))
            names.append(name)
    requirements = [jwt_pb2.JwtRequirement(provider_name=n) for n in names]
    requirements.append(jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty()))
    config.rules.append(
        jwt_pb2.RequirementRule(
            match=rc.RouteMatch(prefix="/"),
            requires=jwt_pb2.JwtRequirement(
                requires_any=jwt_pb2.JwtRequirementOrList(requirements=requirements)
            ),
        )
    )
    return config


def applicable_authentications(
    state: MeshState, proxy: Proxy, root_namespace: str
) -> list[Policy[RequestAuthentication]]:
    """The RequestAuthentications that apply to ``proxy``'s workload, oldest first."""
    return applicable(state.policies.request_authentications, proxy, root_namespace)


def authn_filter(
    policies: Sequence[Policy[RequestAuthentication]], state: MeshState
) -> hcm_pb2.HttpFilter | None:
    """The ``jwt_authn`` filter for ``policies``; None when they hold no rule (nothing to do)."""
    if not any(p.spec.jwt_rules for p in policies):
        return None
    return hcm_pb2.HttpFilter(name=JWT_AUTHN, typed_config=typed(authentication(policies, state)))
