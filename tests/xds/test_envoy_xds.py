"""A real Envoy against the xDS server on loopback: over ADS (state-of-the-world and delta) and over
per-type config sources (no ADS, SotW and delta), with hand-built snapshots.

The oracles are what a user sees: HTTP answers through Envoy's listener, Envoy's admin
``/config_dump`` and ``/stats``, and the server's proxy status. Waiting is bounded by generous
protocol timeouts; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.xds.transport import resource_types as rt
from tests.support.net import free_port
from tests.support.xds_client import (
    Harness,
    ads_source,
    grpc_source,
    make_cluster,
    make_endpoints,
    make_listener,
    make_route,
    running_harness,
)

pytestmark = pytest.mark.e2e

NODE = "envoy-1"
WAIT = 30.0  # protocol timeout for Envoy to connect, fetch, warm and apply

MODES = {
    "ads-sotw": ("GRPC", True),
    "ads-delta": ("DELTA_GRPC", True),
    "per-type-sotw": ("GRPC", False),
    "per-type-delta": ("DELTA_GRPC", False),
}


def bootstrap(xds_port: int, api_type: str, ads: bool) -> dict[str, Any]:
    api_source = {
        "api_type": api_type,
        "transport_api_version": "V3",
        "set_node_on_first_message_only": True,
        "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
    }
    if ads:
        dynamic: dict[str, Any] = {
            "ads_config": api_source,
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        }
    else:
        dynamic = {
            "cds_config": {"api_config_source": api_source, "resource_api_version": "V3"},
            "lds_config": {"api_config_source": api_source, "resource_api_version": "V3"},
        }
    return {
        "node": {"id": NODE, "cluster": "tests", "metadata": {"purpose": "xds-e2e"}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": dynamic,
        "static_resources": {
            "clusters": [
                {
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }


class Envoy:
    """One envoy process with its admin API; ``stop`` kills it by pid."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config_path = workdir / "bootstrap.json"
        self.config_path.write_text(json.dumps(config))
        self.admin_path = workdir / "admin-address.txt"
        self.log_path = workdir / "envoy.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.admin = ""

    async def start(self) -> None:
        self._spawn()
        assert self.process is not None
        async with asyncio.timeout(WAIT):
            while not (self.admin_path.exists() and self.admin_path.read_text().strip()):
                if self.process.poll() is not None:
                    raise RuntimeError(f"envoy exited:\n{self.log()}")
                await asyncio.sleep(0.05)
        self.admin = "http://" + self.admin_path.read_text().strip()

    def _spawn(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    "envoy",
                    "-c",
                    str(self.config_path),
                    "--disable-hot-restart",
                    "--concurrency",
                    "1",
                    "--drain-time-s",
                    "1",
                    "--admin-address-path",
                    str(self.admin_path),
                    "-l",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    async def config_dump(self, http: httpx.AsyncClient, eds: bool = False) -> dict[str, Any]:
        url = f"{self.admin}/config_dump" + ("?include_eds" if eds else "")
        return dict((await http.get(url)).json())

    async def stats(self, http: httpx.AsyncClient) -> dict[str, int]:
        text = (await http.get(f"{self.admin}/stats")).text
        out: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out


async def eventually(check: Callable[[], Awaitable[bool]], what: str, envoy: Envoy) -> None:
    """Wait (at most ``WAIT`` seconds) until ``check`` holds."""
    try:
        async with asyncio.timeout(WAIT):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}\n--- envoy log ---\n{envoy.log()}") from None


async def body(http: httpx.AsyncClient, port: int, path: str = "/") -> str | None:
    try:
        response = await http.get(f"http://127.0.0.1:{port}{path}")
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


@contextlib.asynccontextmanager
async def upstream_app(text: str) -> AsyncIterator[int]:
    """A tiny HTTP/1.1 server on 127.0.0.1 answering ``text`` to every request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                payload = text.encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


class Setup:
    """One mode's harness, Envoy and HTTP client, and how its snapshots are built."""

    def __init__(self, mode: str, harness: Harness, envoy: Envoy, http: httpx.AsyncClient) -> None:
        api_type, ads = MODES[mode]
        self.variant = "delta" if api_type == "DELTA_GRPC" else "sotw"
        self.ads = ads
        self.source = ads_source() if ads else grpc_source("xds", api_type)
        self.harness = harness
        self.envoy = envoy
        self.http = http
        self.listener_port = free_port()

    def resources(
        self, clusters: dict[str, int], route_body: str, upstream: str | None, bad: bool = False
    ) -> dict[str, list[Any]]:
        return {
            rt.CLUSTER: [make_cluster(name, self.source) for name in clusters],
            rt.ENDPOINT: [make_endpoints(name, port) for name, port in clusters.items()],
            rt.LISTENER: [make_listener("http", self.listener_port, "routes", self.source)],
            rt.ROUTE: [make_route("routes", route_body, upstream=upstream, bad_regex=bad)],
        }

    def publish(self, revision: int, *args: Any, **kwargs: Any) -> bool:
        return self.harness.cache.set_snapshot(
            NODE, self.resources(*args, **kwargs), revision=revision
        )

    async def serves(self, text: str, path: str = "/") -> None:
        async def check() -> bool:
            return await body(self.http, self.listener_port, path) == text

        await eventually(check, f"GET {path} answers {text!r}", self.envoy)

    async def synced(self, revision: int) -> None:
        try:
            async with asyncio.timeout(WAIT):
                await self.harness.status.wait_for_revision(revision)
        except TimeoutError:
            lagging = self.harness.status.lagging(revision)
            raise AssertionError(
                f"not at revision {revision}: {lagging}\n{self.envoy.log()}"
            ) from None


@pytest.fixture(params=list(MODES))
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    api_type, ads = MODES[request.param]
    async with running_harness() as harness, httpx.AsyncClient(timeout=5.0) as http:
        envoy = Envoy(tmp_path, bootstrap(harness.port, api_type, ads))
        try:
            yield Setup(request.param, harness, envoy, http)
        finally:
            envoy.stop()


def dynamic(dump: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(
        c for c in dump["configs"] if c["@type"] == f"type.googleapis.com/envoy.admin.v3.{kind}"
    )


async def test_envoy_applies_snapshots_and_switches_clusters_without_failing_requests(
    setup: Setup,
) -> None:
    async with upstream_app("from upstream") as app_port:
        setup.publish(1, {"backend": app_port}, "v1", "backend")
        await setup.envoy.start()
        await setup.serves("v1")
        await setup.serves("from upstream", "/up")  # EDS endpoints reached
        await setup.synced(1)

        snapshot = setup.harness.cache.get(NODE)
        assert snapshot is not None
        dump = await setup.envoy.config_dump(setup.http, eds=True)
        clusters = dynamic(dump, "ClustersConfigDump")["dynamic_active_clusters"]
        [backend] = [c for c in clusters if c["cluster"]["name"] == "backend"]
        routes = dynamic(dump, "RoutesConfigDump")["dynamic_route_configs"]
        [route] = [r for r in routes if r["route_config"]["name"] == "routes"]
        if setup.variant == "sotw":
            assert backend["version_info"] == snapshot.version(rt.CLUSTER)
            assert route["version_info"] == snapshot.version(rt.ROUTE)
        else:  # delta: each resource carries its own version
            assert backend["version_info"] == snapshot.resources(rt.CLUSTER)["backend"].version
            assert route["version_info"] == snapshot.resources(rt.ROUTE)["routes"].version
        endpoints = dynamic(dump, "EndpointsConfigDump")["dynamic_endpoint_configs"]
        assert any(e["endpoint_config"]["cluster_name"] == "backend" for e in endpoints)

        proxies = [p for p in setup.harness.status.proxies() if p.node_id == NODE]
        assert {p.variant for p in proxies} == {setup.variant}
        assert {p.service for p in proxies} == (
            {"ads"} if setup.ads else {"cds", "eds", "lds", "rds"}
        )
        assert all(p.envoy_version.startswith("envoy/1.") for p in proxies)
        assert all(p.node_metadata == {"purpose": "xds-e2e"} for p in proxies)

        # Replace cluster "backend" by "backend2" under the routes while requests keep flowing:
        # make-before-break means none of them fails.
        statuses: list[int] = []
        stop = asyncio.Event()

        async def keep_asking() -> None:
            for _ in range(5000):
                if stop.is_set():
                    return
                try:
                    got = await setup.http.get(f"http://127.0.0.1:{setup.listener_port}/up")
                    statuses.append(got.status_code)
                except httpx.HTTPError:
                    statuses.append(0)

        asker = asyncio.create_task(keep_asking())
        try:
            setup.publish(2, {"backend2": app_port}, "v2", "backend2")
            await setup.serves("v2")
            await setup.synced(2)

            async def backend_gone() -> bool:
                dump = await setup.envoy.config_dump(setup.http)
                names = {
                    c["cluster"]["name"]
                    for c in dynamic(dump, "ClustersConfigDump").get("dynamic_active_clusters", [])
                }
                return names == {"backend2"}

            await eventually(backend_gone, "cluster backend removed", setup.envoy)
        finally:
            stop.set()
            await asker
        assert statuses and set(statuses) == {200}, f"{len(statuses)} requests: {set(statuses)}"

        # Change the cluster itself (same name, same endpoints): Envoy warms the new version
        # until it gets the endpoints again; they must come without Envoy's 15 s fetch timeout.
        changed = setup.resources({"backend2": app_port}, "v2", "backend2")
        changed[rt.CLUSTER][0].connect_timeout.FromMilliseconds(3000)
        setup.harness.cache.set_snapshot(NODE, changed, revision=3)
        await setup.synced(3)

        async def updated_and_warm() -> bool:
            dump = dynamic(await setup.envoy.config_dump(setup.http), "ClustersConfigDump")
            active = [c["cluster"]["connect_timeout"] for c in dump["dynamic_active_clusters"]]
            return active == ["3s"] and not dump.get("dynamic_warming_clusters")

        await eventually(updated_and_warm, "the changed cluster warmed", setup.envoy)
        stats = await setup.envoy.stats(setup.http)
        assert stats["cluster.backend2.init_fetch_timeout"] == 0
        assert await body(setup.http, setup.listener_port, "/up") == "from upstream"


async def test_envoy_rejects_a_bad_route_once_and_no_op_writes_push_nothing(setup: Setup) -> None:
    async with upstream_app("from upstream") as app_port:
        setup.publish(1, {"backend": app_port}, "v1", "backend")
        await setup.envoy.start()
        await setup.serves("v1")
        await setup.synced(1)
        rds = "http.http.rds.routes."
        stats = await setup.envoy.stats(setup.http)

        # a write that changes nothing: no push (proved by the next real change, which comes
        # after anything the no-op could have caused), yet the proxy is current at revision 2
        assert not setup.publish(2, {"backend": app_port}, "v1", "backend")
        await setup.synced(2)
        assert setup.publish(3, {"backend": app_port}, "v3", "backend")
        await setup.serves("v3")
        await setup.synced(3)
        after = await setup.envoy.stats(setup.http)
        for name in (
            "cluster_manager.cds.update_attempt",
            "listener_manager.lds.update_attempt",
            "cluster.backend.update_attempt",
        ):
            assert after[name] == stats[name], name
        assert after[rds + "update_attempt"] == stats[rds + "update_attempt"] + 1
        assert after[rds + "update_rejected"] == 0

        # an invalid route: rejected once, not resent, the old routes keep serving
        setup.publish(4, {"backend": app_port}, "v4", "backend", bad=True)

        async def rejected() -> bool:
            return (await setup.envoy.stats(setup.http)).get(rds + "update_rejected") == 1

        await eventually(rejected, "the bad route rejected", setup.envoy)
        at_rejection = await setup.envoy.stats(setup.http)
        await asyncio.sleep(3)  # a NACK storm would show as more attempts by now
        stats = await setup.envoy.stats(setup.http)
        assert stats[rds + "update_rejected"] == 1
        # (Envoy counts a rejected delta update as two attempts, a SotW one as one)
        assert stats[rds + "update_attempt"] == at_rejection[rds + "update_attempt"]
        assert stats[rds + "update_success"] == after[rds + "update_success"]
        assert await body(setup.http, setup.listener_port) == "v3"
        [nacked] = [
            p.types[rt.ROUTE]
            for p in setup.harness.status.proxies()
            if p.node_id == NODE and rt.ROUTE in p.types
        ]
        assert nacked.last_nack is not None
        assert nacked.last_nack.revision == 4
        assert "(unclosed" in nacked.last_nack.message  # Envoy's own words about the regex
        assert nacked.revision_acked == 3

        # a later valid change is applied and ACKed; the NACK stays on record
        setup.publish(5, {"backend": app_port}, "v5", "backend")
        await setup.serves("v5")
        await setup.synced(5)
        final = await setup.envoy.stats(setup.http)
        assert final[rds + "update_rejected"] == 1
        assert final[rds + "update_attempt"] == stats[rds + "update_attempt"] + 1
