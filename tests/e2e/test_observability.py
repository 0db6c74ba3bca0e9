"""What operators see of the traffic: per-source/destination Prometheus metrics on the callee's
sidecar, JSON access logs, and the live service graph the control plane builds from ALS."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Mesh
from tests.support.mesh import Traffic, wait_until
from tests.support.net import free_port

pytestmark = pytest.mark.e2e


def samples(text: str, name: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(name)
    ]


def test_callee_sidecar_exports_requests_by_source_destination_and_code(mesh: Mesh) -> None:
    stats_port = free_port()
    _, frontend = mesh.service("frontend", "frontend-1")
    backend_app = mesh.app("backend", "backend-1", statuses=[200, 200, 200, 503])
    mesh.sidecar("backend", "backend-1", backend_app, extra=["--stats-port", str(stats_port)])
    url = f"http://127.0.0.1:{frontend.outbound_port}/"
    wait_until(lambda: httpx.get(url, headers={"Host": "backend"}).status_code in (200, 503), 10)
    for _ in range(40):
        httpx.get(url, headers={"Host": "backend"})

    scrape = f"http://127.0.0.1:{stats_port}/stats/prometheus"
    text = httpx.get(scrape, timeout=5).text
    counts = {
        labels["envoy_response_code"]: value
        for name, labels, value in samples(text, "envoy_vhost_vcluster_upstream_rq")
        if name == "envoy_vhost_vcluster_upstream_rq_total"  # the parser adds _total
        and "envoy_response_code" in labels  # (Envoy's own upstream_rq_total has no code)
        and labels.get("source_service") == "frontend"
        and labels.get("destination_service") == "backend"
    }
    assert counts.get("200", 0) >= 30 and counts.get("503", 0) >= 10, counts

    def histogram_count() -> float:
        """Requests in the frontend → backend duration histogram (Envoy merges histograms on
        its stats flush, every 5 s)."""
        text = httpx.get(scrape, timeout=5).text
        return max(
            (
                v
                for _, labels, v in samples(text, "envoy_vhost_vcluster_upstream_rq_time_count")
                if labels.get("source_service") == "frontend"
                and labels.get("destination_service") == "backend"
            ),
            default=0.0,
        )

    wait_until(lambda: histogram_count() >= 40, 15, what="a duration histogram per pair")

    # The scrape port serves the stats and nothing of the admin API.
    assert httpx.get(f"http://127.0.0.1:{stats_port}/config_dump", timeout=5).status_code == 404
    assert httpx.post(f"http://127.0.0.1:{stats_port}/quitquitquit", timeout=5).status_code == 404


def test_access_logs_are_json_and_the_graph_shows_rate_and_errors(mesh: Mesh) -> None:
    _, frontend = mesh.service("frontend", "frontend-1")
    backend_app = mesh.app("backend", "backend-1", statuses=[200, 200, 200, 200, 500])
    backend = mesh.sidecar("backend", "backend-1", backend_app)
    url = f"http://127.0.0.1:{frontend.outbound_port}/orders"
    wait_until(lambda: httpx.get(url, headers={"Host": "backend"}).status_code in (200, 500), 10)
    time.sleep(2.5)  # let the warm-up requests age out of the rate below

    rate = 20.0
    with Traffic(url, "backend", interval=1 / rate) as traffic:
        time.sleep(8.0)
        with mesh.server.api() as api:
            graph = api.get("/v1/graph", params={"window": 7}).json()
    sent = len(traffic.results)
    edge = next(
        e
        for e in graph["edges"]
        if e["source"] == "frontend.default" and e["destination"] == "backend.default"
    )
    assert abs(edge["rps"] - rate) <= 0.2 * rate, (edge, sent)
    assert abs(edge["error_rate"] - 0.20) <= 0.05, edge
    assert edge["p99_ms"] is not None and edge["p99_ms"] < 1000
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert (
        nodes["backend.default"]["kind"] == "service" and nodes["backend.default"]["instances"] == 1
    )

    # Both sidecars wrote JSON lines with the documented fields.
    time.sleep(1.0)
    lines = [json.loads(line) for line in backend.log().splitlines() if line.startswith("{")]
    inbound = [e for e in lines if e["direction"] == "inbound" and e["path"] == "/orders"]
    assert inbound, backend.log()[-2000:]
    entry = inbound[-1]
    for key in (
        "start_time",
        "source_service",
        "destination_service",
        "source_principal",
        "destination_principal",
        "method",
        "path",
        "status",
        "duration_ms",
        "upstream_host",
        "response_flags",
        "trace_id",
    ):
        assert key in entry, key
    assert entry["source_service"] == "frontend.default"
    assert entry["destination_service"] == "backend.default"
    assert entry["method"] == "GET" and isinstance(entry["status"], int)
    statuses = {e["status"] for e in inbound}
    assert statuses == {200, 500}
    outbound = [json.loads(line) for line in frontend.log().splitlines() if line.startswith("{")]
    assert any(
        e["direction"] == "outbound" and e["destination_service"] == "backend.default"
        for e in outbound
    )


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        v
        for (n, ls), v in values.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


def test_control_plane_metrics_parse_and_convergence_moves_on_a_change(
    mesh: Mesh, xds_protocol: str
) -> None:
    mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    with mesh.server.api() as api:
        revision = api.get("/v1/revision").json()["revision"]
        assert api.get(f"/v1/revisions/{revision}", params={"wait": 10}).json()["proxies"][
            "complete"
        ]
        before = metric_values(api.get("/metrics").text)
        assert (
            total(before, "interlock_xds_connected_proxies", type="eds", variant=xds_protocol) == 2
        )

        body = {"address": "127.0.0.9", "port": 15006}
        new = api.put("/v1/services/b/instances/b-9", json=body).json()["revision"]
        assert api.get(f"/v1/revisions/{new}", params={"wait": 10}).json()["proxies"]["acked"] == 2
        after = metric_values(api.get("/metrics").text)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("interlock_xds_convergence_seconds_count", type="eds") >= 2  # one per proxy
    assert moved("interlock_xds_pushes_total", type="eds", variant=xds_protocol) >= 2
    assert moved("interlock_reconcile_builds_total") >= 1
    assert (
        total(
            after,
            "interlock_api_request_seconds_count",
            method="PUT",
            route="/v1/services/{name}/instances/{instance_id}",
        )
        >= 1
    )
