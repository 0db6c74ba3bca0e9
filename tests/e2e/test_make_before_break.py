"""Make-before-break with real Envoy: one revision moves a route from cluster X to Y and deletes
X. The server sends CDS (still with X) and EDS first, then the route, and removes X only once
the route is ACKed — so at ~200 requests/s not one request fails."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from envoy.config.route.v3 import route_pb2

from interlock.model import Proxy
from interlock.xds.translate import Resources
from tests.e2e.conftest import Mesh
from tests.support.inprocess import InProcessServer
from tests.support.mesh import Traffic, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:  # overrides the subprocess server
    srv = InProcessServer(tmp_path).start()
    yield srv
    srv.stop()


def route_shop_to(cluster: str) -> Callable[[Proxy, Resources], Resources]:
    """A stand-in for a VirtualService: host `shop` is served by ``cluster``."""

    def transform(_proxy: Proxy, resources: Resources) -> Resources:
        configs = []
        for config in resources.routes:
            copy = route_pb2.RouteConfiguration()
            copy.CopyFrom(config)
            for vhost in copy.virtual_hosts:
                if vhost.name.startswith("shop."):
                    vhost.routes[0].route.cluster = cluster
            configs.append(copy)
        return dataclasses.replace(resources, routes=tuple(configs))

    return transform


def test_moving_a_route_and_deleting_its_old_cluster_fails_no_request(
    mesh: Mesh, server: InProcessServer
) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("x", "x-1")
    mesh.service("y", "y-1")
    with server.api() as api:
        api.put("/v1/services/shop", json={"port": 8080}).raise_for_status()

    def use(cluster: str) -> None:
        def set_transform() -> None:
            assert server.components is not None
            server.components.reconciler.transform = route_shop_to(cluster)

        server.on_loop(set_transform)

    use("outbound|8080||x.default")
    server.run_coroutine(server.components.reconciler.rebuild(force=True))  # type: ignore[union-attr]

    def lands() -> str:
        r = httpx.get(f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "shop"}, timeout=2)
        return str(r.json()["service"]) if r.status_code == 200 else ""

    wait_until(lambda: lands() == "x", 10, what="shop served by x")

    with Traffic(f"http://127.0.0.1:{a.outbound_port}/", "shop", interval=0.005) as traffic:
        time.sleep(1.0)
        use("outbound|8080||y.default")  # applies with the next build...
        with server.api() as api:  # ...which this one write (route move + X gone) triggers
            revision = api.delete("/v1/services/x", params={"cascade": "true"}).json()["revision"]
            report = api.get(f"/v1/revisions/{revision}", params={"wait": 10}).json()
            assert report["proxies"]["complete"] and not report["proxies"]["nacked"], report
        wait_until(lambda: lands() == "y", 5, what="shop served by y")
        time.sleep(1.0)

    served = [r for r in traffic.results if r[1] == 200]
    assert len(traffic.results) > 300, "the generator did not reach ~200 requests/s"
    assert traffic.failures() == []
    assert served[-1][2] == "y-1"
    clusters = {
        c["cluster"]["name"]
        for cfg in a.config_dump()["configs"]
        if cfg["@type"].endswith(".ClustersConfigDump")
        for c in cfg.get("dynamic_active_clusters", [])
    }
    assert "outbound|8080||x.default" not in clusters  # X is gone once nothing routes to it
