"""Tracing as the translator emits it, checked by Envoy itself (validate mode)."""

from __future__ import annotations

import dataclasses

import pytest

from interlock.model import MeshState, Proxy, Service
from interlock.xds.translate import translate
from interlock.xds.translate.listeners import plan_listeners
from interlock.xds.translate.telemetry import TelemetryPlan, TracingPlan, tracing_cluster
from tests.support.envoy_validate import validate


@pytest.mark.parametrize(
    ("provider", "extension"),
    [("zipkin", "envoy.tracers.zipkin"), ("opentelemetry", "envoy.tracers.opentelemetry")],
)
def test_tracing_provider_config_is_accepted_by_envoy(provider: str, extension: str) -> None:
    state = MeshState.build(1, [Service("a"), Service("b")], [])
    proxy = Proxy("a-1", "a", inbound_port=15006, app_port=9000, outbound_port=15001)
    plan = TelemetryPlan(tracing=TracingPlan(provider, "127.0.0.1", 9411, sampling=25.0))
    listeners = plan_listeners(proxy, list(state.services.values()), plan).listeners
    base = translate(state, proxy)
    resources = dataclasses.replace(
        base,
        listeners=tuple(listeners),
        clusters=(*base.clusters, tracing_cluster(plan.tracing)),  # type: ignore[arg-type]
    )
    text = str(resources.listeners)
    assert extension in text and f"tracing|{provider}" in text
    validate(resources)
