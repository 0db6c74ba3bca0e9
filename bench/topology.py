"""Topologies for benchmarks: S services x E endpoints each, with policies (in memory, or
seeded into a store), and the instances the simulated fleet's streams speak for.

Policies: every ``POLICY_EVERY``-th service has a DestinationRule (subsets ``v1``/``v2`` by
label, so two more EDS clusters each) and a VirtualService (a 90/10 split between the subsets,
a timeout and retries), as a canary rollout would.

The fleet: its streams are the sidecars of ``views`` client services, ``fleet-0`` … (one
instance per stream, registered, each with its own proxy token). Proxies of one service with
the same ports share a *view* (one translation), so ``views`` is how many translations each
revision costs on top of the real Envoys' — the number to read every push figure against.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from interlock.model import Instance, MeshState, Proxy, Service
from interlock.model.identity import Token, TokenRole, new_token
from interlock.model.policy.documents import read_resources
from interlock.store import Store

POLICY_EVERY = 20
NET = "networking.istio.io/v1"


def services(count: int) -> list[Service]:
    return [Service(f"svc-{i}", "default", port=8080) for i in range(count)]


def instances_of(service: int, endpoints: int) -> list[Instance]:
    return [
        Instance(
            f"svc-{service}",
            f"svc-{service}-{j}",
            f"10.{service // 250 % 250}.{service % 250}.{j % 250 + 1}",
            15006 + j // 250,
            labels={"version": "v1" if j % 2 else "v2"},
            locality="region-a/zone-1" if j % 3 else "region-a/zone-2",
        )
        for j in range(endpoints)
    ]


def policy_documents(service_count: int) -> list[dict[str, Any]]:
    """A DestinationRule and a VirtualService for every ``POLICY_EVERY``-th service."""
    docs: list[dict[str, Any]] = []
    for i in range(0, service_count, POLICY_EVERY):
        host = f"svc-{i}"
        docs.append(
            {
                "apiVersion": NET,
                "kind": "DestinationRule",
                "metadata": {"name": host, "namespace": "default"},
                "spec": {
                    "host": host,
                    "subsets": [
                        {"name": "v1", "labels": {"version": "v1"}},
                        {"name": "v2", "labels": {"version": "v2"}},
                    ],
                },
            }
        )
        docs.append(
            {
                "apiVersion": NET,
                "kind": "VirtualService",
                "metadata": {"name": host, "namespace": "default"},
                "spec": {
                    "hosts": [host],
                    "http": [
                        {
                            "timeout": "5s",
                            "retries": {"attempts": 2, "perTryTimeout": "1s"},
                            "route": [
                                {"destination": {"host": host, "subset": "v1"}, "weight": 90},
                                {"destination": {"host": host, "subset": "v2"}, "weight": 10},
                            ],
                        }
                    ],
                },
            }
        )
    return docs


def state(service_count: int, endpoints: int, revision: int = 1) -> MeshState:
    """Services and instances only (no policies): what B6 and B7 translate."""
    return MeshState.build(
        revision,
        services(service_count),
        [i for s in range(service_count) for i in instances_of(s, endpoints)],
    )


def sidecar(index: int = 0) -> Proxy:
    return Proxy(
        f"svc-{index}-0", f"svc-{index}", inbound_port=15006, app_port=9000, outbound_port=15001
    )


@dataclass(frozen=True)
class FleetNode:
    """One simulated proxy: its node id (= instance id), service and proxy token."""

    node_id: str
    service: str
    token: str


def fleet_instance(view: int, index: int) -> Instance:
    return Instance(
        f"fleet-{view}",
        f"fleet-{view}-{index}",
        f"10.{200 + index // 62500 % 50}.{index // 250 % 250}.{index % 250 + 1}",
        15006,
        labels={"version": "v1"},
    )


def seed(
    store: Store,
    service_count: int,
    endpoints: int,
    *,
    fleet: int = 0,
    views: int = 1,
    policies: bool = True,
) -> tuple[list[FleetNode], float]:
    """Write the topology, and ``fleet`` instances of ``views`` client services each with a
    proxy token, through the store's public API (what the REST API calls, without HTTP).

    Returns the fleet's nodes (round-robin over the views) and the seconds it took."""
    started = time.monotonic()
    for service in services(service_count):
        store.put_service(service)
    for s in range(service_count):
        for instance in instances_of(s, endpoints):
            store.put_instance(instance)
    if policies and service_count:
        store.apply_resources(read_resources(policy_documents(service_count), batch=True))
    nodes: list[FleetNode] = []
    views = max(1, views)
    for v in range(min(views, fleet)):
        store.put_service(Service(f"fleet-{v}", "default", port=8080))
    for n in range(fleet):
        view, index = n % views, n // views
        instance = fleet_instance(view, index)
        store.put_instance(instance)
        token_id, token, digest = new_token(TokenRole.PROXY)
        record = Token(
            token_id,
            TokenRole.PROXY,
            service=instance.service,
            namespace="default",
            instance_id=instance.instance_id,
            created_at=time.time(),
        )
        store.security.add_token(record, digest)
        nodes.append(FleetNode(instance.instance_id, instance.service, token))
    return nodes, time.monotonic() - started
