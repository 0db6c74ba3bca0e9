"""The incremental path gives exactly what a full translation gives.

For every golden scenario (with and without mTLS, and a topology whose DestinationRules
require mTLS of some instances), each kind of instance change — a new instance, one gone, a
moved address, a health flip (registered, or a failing check), labels that move it between
subsets, another locality, a sidecar that fronts it or no longer does — is applied to one
service at a time;
``refresh_endpoints`` on the previous result must equal ``translate`` on the new state, byte
for byte and problem for problem, and must share every message it did not replace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from interlock.model import Instance, MeshState, Proxy, ProxyKind, Service
from interlock.model.health import Check, Health
from interlock.model.identity import MeshIdentity
from interlock.model.policy import read_resources
from interlock.reconcile import as_type_map
from interlock.xds.translate import Resources, refresh_endpoints, translate
from tests.golden.scenario import GOLDEN_DIR, load_scenario, scenario_names

IDENTITY = MeshIdentity("interlock.local")

Mutation = Callable[[str, tuple[Instance, ...]], tuple[Instance, ...]]


def _added(service: str, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
    extra = Instance(service, f"{service}-new", "127.0.0.99", 15099, {"version": "v2"}, "")
    return (*instances, extra)


def _removed(_service: str, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
    return instances[1:]


def _moved(_service: str, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
    return tuple(
        dataclasses.replace(i, address="127.0.0.77") if n == 0 else i
        for n, i in enumerate(instances)
    )


def _unhealthy(_service: str, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
    return tuple(dataclasses.replace(i, healthy=not i.healthy) for i in instances)


def _check_flipped(_service: str, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
    """A registry check fails where none did, and clears where one did (proxy gone, back)."""
    return tuple(
        dataclasses.replace(
            i, health=Health() if i.health.failing else Health({Check.PROXY: "gone"})
        )
        for i in instances
    )


def _relabelled(_service: str, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
    return tuple(
        dataclasses.replace(i, labels={**i.labels, "version": "v1" if n % 2 else "v2"})
        for n, i in enumerate(instances)
    )


def _relocated(_service: str, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
    return tuple(dataclasses.replace(i, locality="region-b/zone-9") for i in instances)


def _unplugged(_service: str, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
    """Every other instance changes sides: a sidecar fronts it now, or no longer does."""
    return tuple(
        dataclasses.replace(i, sidecar=not i.sidecar) if n % 2 == 0 else i
        for n, i in enumerate(instances)
    )


MUTATIONS: dict[str, Mutation] = {
    "added": _added,
    "removed": _removed,
    "moved": _moved,
    "unhealthy": _unhealthy,
    "check-flipped": _check_flipped,
    "relabelled": _relabelled,
    "relocated": _relocated,
    "unplugged": _unplugged,
}


def _wire(resources: Resources) -> dict[str, list[bytes]]:
    return {
        type_url: [m.SerializeToString(deterministic=True) for m in messages]
        for type_url, messages in as_type_map(resources).items()
    }


def _required_mtls() -> tuple[MeshState, Proxy]:
    """b: ISTIO_MUTUAL for the host, one plain instance; c: ISTIO_MUTUAL on one subset only,
    DISABLE on another, one plain instance and two behind a DISABLE PeerAuthentication."""
    services = [Service("a"), Service("b"), Service("c", port=9090)]
    instances = [
        Instance("a", "a-1", "127.0.0.1", 15001),
        Instance("b", "b-1", "127.0.0.1", 15002, {"version": "v1"}),
        Instance("b", "b-2", "127.0.0.2", 8080, {"version": "v2"}, sidecar=False),
        Instance("c", "c-1", "127.0.0.1", 15003, {"version": "v1"}),
        Instance("c", "c-2", "127.0.0.3", 9090, {"version": "v1"}, sidecar=False),
        Instance("c", "c-3", "127.0.0.1", 15013, {"version": "v2", "legacy": "yes"}),
        Instance("c", "c-4", "127.0.0.1", 15023, {"version": "v1", "legacy": "yes"}),
    ]
    documents = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "b", "namespace": "default"},
            "spec": {
                "host": "b",
                "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                "subsets": [{"name": "v2", "labels": {"version": "v2"}}],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "c", "namespace": "default"},
            "spec": {
                "host": "c",
                "subsets": [
                    {
                        "name": "v1",
                        "labels": {"version": "v1"},
                        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                    },
                    {
                        "name": "v2",
                        "labels": {"version": "v2"},
                        "trafficPolicy": {"tls": {"mode": "DISABLE"}},
                    },
                ],
            },
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "legacy", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"legacy": "yes"}}, "mtls": {"mode": "DISABLE"}},
        },
    ]
    resources = [
        dataclasses.replace(r, generation=1, created_revision=n + 1, revision=n + 1)
        for n, r in enumerate(read_resources(documents, batch=True))
    ]
    proxy = Proxy("a-1", "a", inbound_port=15001, app_port=16001, outbound_port=15101)
    return MeshState.build(9, services, instances, resources), proxy


def _cases() -> Iterator[tuple[str, MeshState, Proxy, MeshIdentity | None]]:
    for name in scenario_names():
        state, proxy = load_scenario(GOLDEN_DIR / name)
        yield name, state, proxy, None
        yield f"{name}+mtls", state, proxy, IDENTITY
        yield f"{name}+grpc", state, grpc_client(proxy), IDENTITY
    yield "required-mtls", *_required_mtls(), IDENTITY
    state, proxy = _required_mtls()
    yield "required-mtls+grpc", state, grpc_client(proxy), IDENTITY


def grpc_client(proxy: Proxy) -> Proxy:
    """A proxyless gRPC client of ``proxy``'s service, instance, labels and locality."""
    return dataclasses.replace(
        Proxy(proxy.node_id, proxy.service, proxy.namespace, kind=ProxyKind.GRPC),
        labels=proxy.labels,
        locality=proxy.locality,
    )


CASES = list(_cases())


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize(
    ("state", "proxy", "identity"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refresh_equals_full_translation(
    state: MeshState, proxy: Proxy, identity: MeshIdentity | None, mutation: str
) -> None:
    before = translate(state, proxy, identity)
    for service in state.services:
        changed = MUTATIONS[mutation](service, state.instances_of(service))
        after = state.with_instances(state.revision + 1, {service: changed})
        refreshed = refresh_endpoints(before, after, proxy, [service], identity)
        assert refreshed is not None, f"{service}: the incremental path refused an instance change"
        full = translate(after, proxy, identity)
        assert _wire(refreshed) == _wire(full), service
        assert refreshed.problems == full.problems, service
        # Everything but load assignments is the very same message objects.
        for kind in ("listeners", "clusters", "routes", "secrets"):
            assert all(
                a is b for a, b in zip(getattr(refreshed, kind), getattr(before, kind), strict=True)
            )


def test_with_instances_shares_what_did_not_change() -> None:
    state, _proxy = load_scenario(GOLDEN_DIR / "http-localities")
    name = next(iter(state.instances))
    after = state.with_instances(state.revision + 1, {name: ()})
    assert name not in after.instances
    assert after.revision == state.revision + 1
    assert after.services is state.services
    assert after.policies is state.policies
    for other, instances in after.instances.items():
        assert instances is state.instances[other]


def test_refresh_refuses_a_service_that_is_gone() -> None:
    state, proxy = load_scenario(GOLDEN_DIR / "http-localities")
    before = translate(state, proxy)
    assert refresh_endpoints(before, state, proxy, ["no-such-service"]) is None
