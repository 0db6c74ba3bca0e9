"""Which Envoy releases are served: read from the node, refused outside the range."""

from __future__ import annotations

import pytest
from envoy.config.core.v3.base_pb2 import BuildVersion, Node
from envoy.type.v3.semantic_version_pb2 import SemanticVersion

from interlock.model.envoy_version import (
    SUPPORTED_RELEASES,
    EnvoyVersion,
    node_envoy_version,
    parse_envoy_version,
    supported_range,
    unsupported_reason,
)
from interlock.xds.transport.status import REFUSED_KEPT, REFUSED_SHOWN_SECONDS, StatusRegistry


def envoy_node(major: int, minor: int, patch: int, name: str = "envoy") -> Node:
    version = SemanticVersion(major_number=major, minor_number=minor, patch=patch)
    return Node(
        id="b-1", user_agent_name=name, user_agent_build_version=BuildVersion(version=version)
    )


def test_the_release_is_read_from_envoy_nodes_only() -> None:
    assert node_envoy_version(envoy_node(1, 38, 3)) == EnvoyVersion(1, 38, 3)
    assert node_envoy_version(envoy_node(1, 38, 3, name="gRPC Python")) is None
    assert node_envoy_version(Node(id="b-1", user_agent_name="envoy")) is None


def test_the_version_line_envoy_prints_is_parsed() -> None:
    line = "envoy  version: 9e55809/1.40.0/Clean/RELEASE/BoringSSL"
    assert parse_envoy_version(line) == EnvoyVersion(1, 40, 0)
    assert parse_envoy_version("no version here") is None


@pytest.mark.parametrize("release", SUPPORTED_RELEASES)
def test_every_patch_of_a_supported_release_is_served(release: tuple[int, int]) -> None:
    assert unsupported_reason(EnvoyVersion(*release, 0)) is None
    assert unsupported_reason(EnvoyVersion(*release, 17)) is None


def test_releases_outside_the_range_are_refused_with_what_to_do() -> None:
    assert supported_range() == "1.37 to 1.40"
    older = unsupported_reason(EnvoyVersion(1, 36, 4))
    assert older == (
        "Envoy 1.36.4 is outside the supported range (Envoy 1.37 to 1.40): it is served no "
        "configuration; upgrade this proxy's Envoy"
    )
    newer = unsupported_reason(EnvoyVersion(1, 41, 0))
    assert newer is not None and "an Interlock that supports this one" in newer


def test_a_refusal_is_listed_until_the_proxy_connects_or_goes_quiet() -> None:
    now = [1000.0]
    registry = StatusRegistry(clock=lambda: now[0])

    def refuse(node_id: str) -> None:
        registry.refuse(
            node_id=node_id,
            node_cluster="b",
            node_metadata={},
            envoy_version="envoy/1.36.4",
            peer="",
            reason="old",
        )

    refuse("b-1")
    refuse("b-2")
    assert [r.node_id for r in registry.refused()] == ["b-1", "b-2"]
    registry.open(
        1,
        node_id="b-1",
        node_cluster="b",
        node_metadata={},
        snapshot_key="k",
        variant="delta",
        service="ads",
        envoy_version="envoy/1.40.0",
    )
    assert [r.node_id for r in registry.refused()] == ["b-2"]
    now[0] += REFUSED_SHOWN_SECONDS + 1
    assert registry.refused() == []
    for i in range(REFUSED_KEPT + 5):
        refuse(f"n-{i}")
    assert len(registry.refused()) == REFUSED_KEPT
