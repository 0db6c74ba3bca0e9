"""Golden scenarios: the translator's output for each ``tests/golden/<scenario>/input.yaml`` is
exactly ``expected.yaml`` (``pytest --update-golden`` rewrites it), it is self-consistent, and a
real Envoy accepts it."""

from __future__ import annotations

import difflib

import pytest

from interlock.xds.translate import check_consistency, translate
from tests.golden.scenario import GOLDEN_DIR, load_scenario, render, scenario_names
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
    expected_path = directory / "expected.yaml"
    if update_golden:
        expected_path.write_text(actual)
        return
    if not expected_path.exists():
        pytest.fail(f"{expected_path} is missing; run `pytest --update-golden` and review it")
    expected = expected_path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{scenario}/expected.yaml",
                tofile="translated",
            )
        )
        pytest.fail(f"translation differs from the golden file:\n{diff}")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden_resources_are_consistent(scenario: str) -> None:
    assert check_consistency(translate(*load_scenario(GOLDEN_DIR / scenario))) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_real_envoy_accepts_golden_resources(scenario: str) -> None:
    validate(translate(*load_scenario(GOLDEN_DIR / scenario)))
