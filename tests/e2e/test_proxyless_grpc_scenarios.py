"""grpcio takes what the gRPC target makes of every golden scenario: served by a real xDS
server, its xDS client resolves a target per virtual host, fetches listeners, routes,
clusters and endpoints, and NACKs none of them (what gRPC does not implement was taken out and
reported, never sent). Endpoints are moved to a closed port on 127.0.0.1: only the
configuration is under test here, and no packet leaves the host."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys

import pytest

from interlock.model import Proxy, ProxyKind
from interlock.model.identity import MeshIdentity
from interlock.reconcile import as_type_map
from interlock.xds.translate import Resources, translate
from interlock.xds.transport import resource_types as rt
from tests.golden.scenario import GOLDEN_DIR, load_scenario, scenario_names
from tests.support.xds_client import running_harness

pytestmark = pytest.mark.e2e

CLOSED_PORT = 9  # discard: nothing listens on it here, so calls fail fast (UNAVAILABLE)
CLIENT = """
import json, sys, grpc
futures = []
for target in json.loads(sys.argv[1]):
    channel = grpc.insecure_channel(target)
    futures.append(channel.unary_unary("/demo.Greeter/Hello").future(b"", timeout=3))
print(json.dumps(sorted({f.exception().code().name if f.exception() else "OK" for f in futures})))
sys.stdout.flush()
sys.stdin.read()
"""


def grpc_view(name: str) -> tuple[str, Resources]:
    mesh, proxy = load_scenario(GOLDEN_DIR / name)
    client = dataclasses.replace(
        Proxy(proxy.node_id, proxy.service, proxy.namespace, kind=ProxyKind.GRPC),
        labels=proxy.labels,
        locality=proxy.locality,
    )
    resources = translate(mesh, client, MeshIdentity("interlock.local"))
    loopback: dict[tuple[str, int], str] = {}  # each address its own 127.0.0.x
    for assignment in resources.endpoints:
        for group in assignment.endpoints:
            for endpoint in group.lb_endpoints:
                address = endpoint.endpoint.address.socket_address
                moved = loopback.setdefault(
                    (address.address, address.port_value), f"127.0.0.{len(loopback) + 2}"
                )
                address.address, address.port_value = moved, CLOSED_PORT
    return proxy.service, resources


async def test_grpc_accepts_the_grpc_view_of_every_golden_scenario() -> None:
    async with running_harness() as harness:
        runs = []
        for name in scenario_names():
            service, resources = grpc_view(name)
            harness.cache.set_snapshot(name, as_type_map(resources), revision=1)
            targets = sorted(
                f"xds:///{vhost.domains[0]}"
                for config in resources.routes
                for vhost in config.virtual_hosts
            )
            if targets:
                runs.append((name, service, targets))
        assert runs
        limit = asyncio.Semaphore(4)
        failures = await asyncio.gather(*(_check(harness, limit, *run) for run in runs))
    assert [f for f in failures if f] == []


async def _check(
    harness: object, limit: asyncio.Semaphore, name: str, service: str, targets: list[str]
) -> str:
    bootstrap = {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{harness.port}",  # type: ignore[attr-defined]
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": name, "cluster": service, "metadata": {"kind": "grpc"}},
    }
    env = dict(os.environ, GRPC_XDS_BOOTSTRAP_CONFIG=json.dumps(bootstrap))
    env.pop("GRPC_XDS_BOOTSTRAP", None)
    async with limit:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            json.dumps(targets),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            streams = [p for p in harness.status.proxies() if p.node_id == name]  # type: ignore[attr-defined]
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    nacks = [
        f"{rt.SHORT_NAMES.get(t.type_url, t.type_url)}: {t.last_nack.message}"
        for s in streams
        for t in s.types.values()
        if t.last_nack is not None
    ]
    fetched = {t.type_url for s in streams for t in s.types.values() if t.version_acked}
    wanted = {rt.LISTENER, rt.ROUTE}
    if nacks or not wanted <= fetched or not line:
        return f"{name}: calls {line.decode().strip()!r}, fetched {sorted(fetched)}, NACKs {nacks}"
    return ""
