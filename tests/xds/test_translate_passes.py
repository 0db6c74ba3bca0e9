"""The policy passes' contract: one protocol, one order, no state kept between translations."""

from __future__ import annotations

import inspect

from interlock.model.identity import MeshIdentity
from interlock.reconcile import as_type_map
from interlock.xds.translate import Resources, translate
from interlock.xds.translate.passes import PASSES
from tests.golden.scenario import GOLDEN_DIR, load_scenario, scenario_names


def _wire(resources: Resources) -> dict[str, list[bytes]]:
    return {
        type_url: [m.SerializeToString(deterministic=True) for m in messages]
        for type_url, messages in as_type_map(resources).items()
    }


def test_every_pass_has_the_one_signature() -> None:
    names = [type(p).__name__ for p in PASSES]
    assert names == [
        "DestinationRules",
        "ServiceEntries",
        "VirtualServices",
        "Gateways",
        "RateLimits",
        "Authorization",
        "HashPolicies",
    ]
    for policy_pass in PASSES:
        parameters = inspect.signature(policy_pass.apply).parameters
        assert [p.annotation for p in parameters.values()] == ["PassContext", "Draft"], policy_pass
        assert inspect.signature(policy_pass.apply).return_annotation == "list[Problem]"


def test_passes_keep_nothing_between_translations() -> None:
    """The passes are shared singletons: translating every scenario in turn, then the first
    again, gives the first's result byte for byte (problems included)."""
    identity = MeshIdentity("interlock.local")
    scenarios = [load_scenario(GOLDEN_DIR / name) for name in scenario_names()]
    first = translate(*scenarios[0], identity)
    for state, proxy in scenarios[1:]:
        translate(state, proxy, identity)
    again = translate(*scenarios[0], identity)
    assert _wire(again) == _wire(first)
    assert again.problems == first.problems
