"""A config Envoy rejects: it is rejected once (no NACK storm), traffic keeps flowing on the old
config, the API says who rejected which revision and why, and the next valid change lands."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from envoy.config.route.v3 import route_components_pb2, route_pb2

from interlock.model import Proxy
from interlock.xds.translate import Resources
from tests.e2e.conftest import Mesh
from tests.support.inprocess import InProcessServer
from tests.support.mesh import Traffic, wait_until

pytestmark = pytest.mark.e2e

RDS_PREFIX = "http.outbound_http.rds.outbound|http."


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:  # overrides the subprocess server
    srv = InProcessServer(tmp_path).start()
    yield srv
    srv.stop()


def with_bad_regex(_proxy: Proxy, resources: Resources) -> Resources:
    """Every outbound route config gains a first route whose regex RE2 cannot compile."""
    poisoned = []
    for config in resources.routes:
        copy = route_pb2.RouteConfiguration()
        copy.CopyFrom(config)
        for vhost in copy.virtual_hosts:
            if not vhost.routes:
                continue
            bad = route_components_pb2.Route()
            bad.CopyFrom(vhost.routes[0])
            bad.match.ClearField("prefix")
            bad.match.safe_regex.regex = "(("
            rest = list(vhost.routes)
            del vhost.routes[:]
            vhost.routes.extend([bad, *rest])
        poisoned.append(copy)
    return dataclasses.replace(resources, routes=tuple(poisoned))


def test_a_rejected_route_is_nacked_once_and_the_next_valid_change_lands(
    mesh: Mesh, server: InProcessServer
) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    wait_until(
        lambda: (
            httpx.get(f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "b"}).status_code
            == 200
        ),
        10,
        what="b reachable",
    )
    with server.api() as api:
        wait_until(
            lambda: all(p["synced_revision"] for p in api.get("/v1/proxies").json()["items"]),
            10,
            what="proxies synced",
        )
    successes_before = a.stats()[RDS_PREFIX + "update_success"]

    with Traffic(f"http://127.0.0.1:{a.outbound_port}/", "b", interval=0.02) as traffic:

        def poison() -> None:
            assert server.components is not None
            server.components.reconciler.transform = with_bad_regex

        server.on_loop(poison)
        with server.api() as api:
            instance = api.get("/v1/services/b/instances/b-1").json()
            body = {k: instance[k] for k in ("address", "port", "locality", "healthy")}
            bad_rev = api.put(
                "/v1/services/b/instances/b-1", json={**body, "labels": {"try": "1"}}
            ).json()["revision"]

        wait_until(lambda: a.stats()[RDS_PREFIX + "update_rejected"] == 1, 10, what="NACK")

        def routes_sent_to_a() -> tuple[str | None, float | None]:
            assert server.components is not None
            (stream,) = [p for p in server.components.status.proxies() if p.node_id == "a-1"]
            routes = next(t for u, t in stream.types.items() if u.endswith("RouteConfiguration"))
            return routes.version_sent, routes.sent_at

        sent = server.on_loop(routes_sent_to_a)
        time.sleep(10)  # no NACK storm: nothing more of that type is sent, nothing retried
        stats = a.stats()
        assert stats[RDS_PREFIX + "update_rejected"] == 1
        assert stats[RDS_PREFIX + "update_success"] == successes_before
        assert server.on_loop(routes_sent_to_a) == sent

        with server.api() as api:
            proxies = {p["node_id"]: p for p in api.get("/v1/proxies").json()["items"]}
            routes = next(t for t in proxies["a-1"]["types"] if t["type"] == "routes")
            assert routes["state"] == "NACKED"
            assert routes["last_nack"]["revision"] == bad_rev
            assert "missing ): ((" in routes["last_nack"]["message"]  # RE2 on our bad regex
            report = api.get(f"/v1/revisions/{bad_rev}").json()
            assert report["proxies"]["nacked"] == 2 and report["proxies"]["complete"] is True
            assert {p["node_id"] for p in report["proxies"]["nacked_proxies"]} == {"a-1", "b-1"}
            assert all("routes" in p["types"] for p in report["proxies"]["nacked_proxies"])

        # The next valid change is ACKed everywhere.
        def heal() -> None:
            assert server.components is not None
            server.components.reconciler.transform = None

        server.on_loop(heal)
        with server.api() as api:
            good_rev = api.put(
                "/v1/services/b/instances/b-1", json={**body, "labels": {"try": "2"}}
            ).json()["revision"]
            report = api.get(f"/v1/revisions/{good_rev}", params={"wait": 10}).json()
            assert report["proxies"]["acked"] == 2, report
            proxies = {p["node_id"]: p for p in api.get("/v1/proxies").json()["items"]}
            routes = next(t for t in proxies["a-1"]["types"] if t["type"] == "routes")
            assert routes["state"] == "SYNCED" and routes["revision_acked"] == good_rev
        assert a.stats()[RDS_PREFIX + "update_rejected"] == 1

    assert traffic.results and traffic.failures() == []
