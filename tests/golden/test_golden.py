"""Golden scenarios: the translator's output for each ``tests/golden/<scenario>/input.yaml`` is
exactly its ``expected.<kind>.yaml`` files (``pytest --update-golden`` rewrites them), it is
self-consistent, and a real Envoy accepts it."""

from __future__ import annotations

import difflib

import pytest

from interlock.xds.translate import check_consistency, translate
from tests.golden.scenario import (
    GOLDEN_DIR,
    KINDS,
    golden_path,
    load_scenario,
    render,
    scenario_names,
)
from tests.support.envoy_validate import validate

SCENARIOS = scenario_names()


def test_the_required_scenarios_exist() -> None:
    assert {
        "http-localities",
        "http2-grpc",
        "tcp-port-collision",
        "no-instances",
        "client-only",
        # one per traffic policy kind
        "vs-canary",
        "vs-tcp",
        "dr-policies",
        "service-entries",
        "gateway-servers",
        "rate-limits",
        "health-checks",
    } <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_translation_matches_golden(scenario: str, update_golden: bool) -> None:
    directory = GOLDEN_DIR / scenario
    actual = render(translate(*load_scenario(directory)))
    if update_golden:
        for kind in KINDS:
            path = golden_path(directory, kind)
            if kind in actual:
                path.write_text(actual[kind])
            else:
                path.unlink(missing_ok=True)
        return
    if not any(golden_path(directory, kind).exists() for kind in KINDS):
        pytest.fail(f"{directory} has no expected.*.yaml; run `pytest --update-golden`, review")
    diffs = []
    for kind in KINDS:
        path = golden_path(directory, kind)
        expected = path.read_text() if path.exists() else ""
        if actual.get(kind, "") != expected:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        expected.splitlines(keepends=True),
                        actual.get(kind, "").splitlines(keepends=True),
                        fromfile=f"{scenario}/{path.name}",
                        tofile=f"translated {kind}",
                    )
                )
            )
    if diffs:
        pytest.fail("translation differs from the golden files:\n" + "\n".join(diffs))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden_resources_are_consistent(scenario: str) -> None:
    assert check_consistency(translate(*load_scenario(GOLDEN_DIR / scenario))) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_real_envoy_accepts_golden_resources(scenario: str) -> None:
    validate(translate(*load_scenario(GOLDEN_DIR / scenario)))
