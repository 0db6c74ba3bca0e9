"""The API fuzzed, not sampled: schemathesis generates requests from the server's own
``/openapi.json`` (each operation alone, then stateful sequences that follow the data one
response gives the next request), sent with the admin token to the app the server runs (real
store, real authentication). For every response:

* no 5xx, and the status, content type and body are the ones the document declares;
* every 4xx is problem+json whose ``errors`` name the field (a route's own 405/404 aside);
* a rejected request changes nothing: the revision, the tokens and the stored mesh are as before;
* a request the document calls valid is accepted, except for the few rules JSON Schema cannot
  state (a duration's range, a rule across fields, a policy's spec): then the 422 names one of
  those fields (``STATED_IN_WORDS``), nothing else;
* the admin token still works afterwards (a stateful run once revoked it, locking every
  client out).

Bounded and deterministic: a fixed number of examples per operation, derandomized.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from interlock.api import create_app
from interlock.api.auth import ApiAuth
from interlock.api.routers.ca import CaAdmin
from interlock.ca import CertificateAuthority, RotationState
from interlock.ca.storage import seal_ca_key
from interlock.model.identity import Token, TokenRole, new_token
from interlock.model.service import Instance, Service
from interlock.store import Store
from tests.api.problems import assert_problem
from tests.api.test_tokens_and_ca import KEK, now
from tests.store.databases import sqlite_url

EXAMPLES = 15
STATEFUL_STEPS = 20

#: Fields whose rule the OpenAPI document can only state in words (a range of durations, a
#: rule across fields, what a CA certificate must be, a policy's spec whose schema lives in
#: docs/policies.md, the same object twice in one batch): a schema-valid request may still
#: be refused there, with a 422 naming it.
STATED_IN_WORDS = re.compile(
    r"^(ttl|health_check\.(interval|timeout|path)|ca_cert|ca_key|ca_chain|action|body|export_to"
    r"|(\[\d+\]\.?)?(spec|metadata\.(labels|annotations)|apiVersion)([.\[].*)?"
    r"|\[\d+\]\.metadata\.name)$",
    re.DOTALL,
)


class Target:
    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(sqlite_url(str(tmp)))
        token_id, token, digest = new_token(TokenRole.ADMIN)
        assert self.store.security.ensure_admin_token(Token(token_id, TokenRole.ADMIN), digest)
        self.headers = {"Authorization": f"Bearer {token}"}
        # Something to find: the stateful phase adds more as it goes.
        self.store.put_service(Service("b", port=8080))
        self.store.put_instance(Instance("b", "b-1", "127.0.0.1", 15006))
        ca = CertificateAuthority.create_root("interlock.local", now)
        key_id, sealed = seal_ca_key(ca, KEK)
        self.store.security.create_ca(
            "interlock.local", RotationState.initial(ca).to_json(), {key_id: sealed}
        )
        auth = ApiAuth(self.store.security.find_token, cache_seconds=0)
        admin = CaAdmin(KEK, "interlock.local", now, 3600.0)
        self.app = create_app(self.store, auth=auth, ca_admin=admin)

    def fingerprint(self) -> tuple[Any, ...]:
        with self.store.read_view() as snap:
            state = snap.state()
        tokens = tuple((t.token_id, t.revoked_at) for t in self.store.security.list_tokens())
        return (
            state.revision,
            tokens,
            repr(state.services),
            repr(state.instances),
            repr(state.policies),
        )


@pytest.fixture(scope="module", autouse=True)
def same_data_in_every_session() -> Iterator[None]:
    """Hypothesis also draws literals found in the project's imported modules, so the data
    would depend on which other tests ran first in the process: draw none (derandomized,
    the requests are then the same in every run)."""
    from hypothesis.internal.conjecture import providers

    with pytest.MonkeyPatch.context() as patch:
        if hasattr(providers, "_get_local_constants"):
            patch.setattr(providers, "_get_local_constants", providers.Constants)
        yield


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    made = Target(tmp_path_factory.mktemp("fuzz"))
    yield made
    made.store.close()


class Switch:
    """The ASGI app schemathesis calls: the current target's (the stateful test gives each
    scenario its own)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target.app(scope, receive, send)


@pytest.fixture(scope="module")
def switch(target: Target) -> Switch:
    return Switch(target)


@pytest.fixture(scope="module")
def api_schema(switch: Switch) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", switch)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def assert_problem_names_the_field(response: Any, case: Any) -> None:
    status = response.status_code
    if not 400 <= status < 500:
        return
    where = f"{case.method} {case.formatted_path} -> {status}: {response.text[:300]}"
    assert response.headers["content-type"][0].startswith("application/problem+json"), where
    problem = response.json()
    assert problem["status"] == status and problem["type"].startswith("urn:interlock:problem:")
    if status == 405 or (status == 404 and problem["detail"].startswith("nothing at")):
        return  # no route: there is no field to name
    assert problem["errors"], where
    assert all(e["field"] and e["message"] for e in problem["errors"]), where


def assert_valid_accepted(response: Any, case: Any) -> None:
    """A request generated as valid is accepted, unless refused for a rule stated in words."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    if response.status_code not in (400, 422):
        return
    fields = [e["field"] for e in response.json()["errors"]]
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:400]}"
    unstated = [f for f in fields if not STATED_IN_WORDS.match(f)]
    assert fields and not unstated, f"{unstated} in {where}"


SEEN: Counter[tuple[str, str, int]] = Counter()
"""(method, path template, status) of every request sent, for the reach assertions."""


def exercise(target: Target, case: Any) -> Any:
    query = case.query if isinstance(case.query, dict) else {}
    wait = query.get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= 300:
        query["wait"] = 0.01  # a valid long poll would hold the answer for minutes
    before = target.fingerprint()
    response = case.call(headers=target.headers)
    case.validate_response(response, checks=CHECKS, headers=target.headers)
    assert_problem_names_the_field(response, case)
    assert_valid_accepted(response, case)
    SEEN[(case.method, case.path, response.status_code)] += 1
    if 400 <= response.status_code < 500:
        assert target.fingerprint() == before, f"{case.method} {case.formatted_path} changed data"
    return response


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in error.exceptions)
    return str(error)


def _settings(**extra: Any) -> settings:
    return settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        **extra,
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_valid_and_invalid_input_well(
    api_schema: Any, target: Target, mode: GenerationMode
) -> None:
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @_settings(phases=[Phase.explicit, Phase.generate])
        def fuzz(case: Any) -> None:
            exercise(target, case)

        try:
            fuzz()
        except Unsatisfiable:
            continue  # nothing to make invalid (an operation without parameters or body)
        except (AssertionError, BaseExceptionGroup) as e:  # one report for every operation
            failures.append(f"{operation.label}: {type(e).__name__}: {_describe(e)}")
    assert not failures, "\n\n".join(failures)


def test_stateful_sequences_keep_the_mesh_consistent_and_the_admin_in(
    api_schema: Any, switch: Switch, target: Target, tmp_path: Path
) -> None:
    """Sequences of calls that feed each response's ids to the next request (GET /v1/tokens
    → DELETE /v1/tokens/{token_id}, PUT a service → its instances, ...). Each scenario starts
    from a fresh store, so that a scenario is the same every time it is replayed."""
    scenarios = iter(range(10_000))

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            switch.target = Target(tmp_path / f"scenario-{next(scenarios)}")

        def teardown(self) -> None:
            # The admin token still works: it cannot be revoked (issue 19 item 13).
            tokens = switch.target.fingerprint()[1]
            assert any(revoked is None for _, revoked in tokens[:1]), tokens
            switch.target.store.close()

        def call(self, case: Any, **kwargs: Any) -> Any:
            return exercise(switch.target, case)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            pass  # done in call

    try:
        Workflow.run(
            settings=_settings(stateful_step_count=STATEFUL_STEPS, phases=[Phase.generate])
        )
    finally:
        switch.target = target
    # It reached what once locked everyone out, and was refused.
    assert SEEN[("DELETE", "/v1/tokens/{token_id}", 409)], sorted(SEEN)


def test_a_revision_past_64_bits_is_a_422_naming_it(switch: Switch, target: Target) -> None:
    """Found by the fuzzer: an integer past 64 bits reached the database (500)."""
    with TestClient(target.app) as client:
        r = client.get("/v1/revisions/186934015227706588935547483324416", headers=target.headers)
    assert_problem(r, 422, "path.rev")
