"""An existing fleet whose bootstraps name per-type config sources (CDS, LDS, RDS, EDS each on a
stream of its own, no ADS) gets a working config from the same server."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import wait_until

pytestmark = pytest.mark.e2e


def status(port: int, host: str) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/x", headers={"Host": host}, timeout=3).status_code


def test_per_type_config_sources_route_and_follow_changes(mesh: Mesh, xds_protocol: str) -> None:
    per_type = ["--xds-api", "per-type"]
    _, a = mesh.service("a", "a-1", extra=per_type)
    mesh.service("b", "b-1", extra=per_type)
    wait_until(lambda: status(a.outbound_port, "b") == 200, 10, what="b through per-type xDS")

    # RDS and EDS came from the per-type services, as the node metadata asked.
    dump = a.config_dump()
    routes = next(c for c in dump["configs"] if c["@type"].endswith(".RoutesConfigDump"))
    names = sorted(r["route_config"]["name"] for r in routes.get("dynamic_route_configs", []))
    assert names[0].startswith("inbound|") and names[1:] == ["outbound|http"], routes
    clusters = next(c for c in dump["configs"] if c["@type"].endswith(".ClustersConfigDump"))
    b_cluster = next(
        c["cluster"]
        for c in clusters["dynamic_active_clusters"]
        if c["cluster"]["name"] == "outbound|8080||b.default"
    )
    source = b_cluster["eds_cluster_config"]["eds_config"]["api_config_source"]
    assert source["grpc_services"][0]["envoy_grpc"]["cluster_name"] == "interlock_xds"
    assert source["api_type"] == ("DELTA_GRPC" if xds_protocol == "delta" else "GRPC")

    with mesh.server.api() as api:
        proxy = api.get("/v1/proxies/a-1").json()
        assert {s["api"] for s in proxy["streams"]} >= {"cds", "lds", "rds", "eds"}
        assert all(t["state"] == "SYNCED" for t in proxy["types"])
        # A change reaches the per-type EDS stream too.
        assert api.delete("/v1/services/b/instances/b-1").status_code == 200
    wait_until(lambda: status(a.outbound_port, "b") == 503, 5, what="503 once b is gone")
