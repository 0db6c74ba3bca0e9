"""Cost as Envoy sees it: a write that changes no proxy's config pushes nothing, and a burst of
writes is debounced into a few pushes that end in the final state."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import Sidecar

pytestmark = pytest.mark.e2e

EDS_B = "cluster.outbound|8080||b.default."


def update_attempts(sc: Sidecar) -> dict[str, int]:
    """Every xDS subscription counter of one Envoy (CDS, LDS, RDS and each cluster's EDS)."""
    return {
        k: v
        for k, v in sc.stats().items()
        if k.endswith((".update_attempt", ".update_success", ".update_rejected"))
    }


def settled(mesh: Mesh) -> int:
    with mesh.server.api() as api:
        revision = api.get("/v1/revision").json()["revision"]
        report = api.get(f"/v1/revisions/{revision}", params={"wait": 10}).json()
    assert report["proxies"]["complete"] and report["proxies"]["acked"] == len(mesh.sidecars)
    return int(revision)


def test_a_write_that_changes_no_config_pushes_nothing(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    _, b = mesh.service("b", "b-1")
    settled(mesh)
    time.sleep(0.5)
    before = {sc.instance_id: update_attempts(sc) for sc in (a, b)}

    with mesh.server.api() as api:
        # The same body again: no new revision at all.
        service = api.get("/v1/services/b").json()
        same = {k: service[k] for k in ("namespace", "protocol", "port")}
        assert api.put("/v1/services/b", json=same).json()["revision"] == service["revision"]
        # A new revision whose translation is identical (labels select nothing yet).
        inst = api.get("/v1/services/b/instances/b-1").json()
        body = {k: inst[k] for k in ("address", "port", "locality", "healthy", "sidecar")}
        new = api.put("/v1/services/b/instances/b-1", json={**body, "labels": {"team": "x"}})
        revision = new.json()["revision"]
        assert revision > service["revision"]
        # Every proxy reaches that revision without being sent anything.
        report = api.get(f"/v1/revisions/{revision}", params={"wait": 10}).json()
        assert report["proxies"]["acked"] == 2, report
    time.sleep(1.0)
    after = {sc.instance_id: update_attempts(sc) for sc in (a, b)}
    assert after == before


def test_a_burst_of_100_writes_in_a_second_is_a_few_pushes_ending_in_the_final_state(
    mesh: Mesh,
) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    settled(mesh)
    before = a.stats()[EDS_B + "update_success"]

    started = time.monotonic()
    with mesh.server.api() as api:
        for i in range(100):
            body = {"address": f"127.0.1.{i % 250 + 1}", "port": 15006}
            assert api.put("/v1/services/b/instances/burst", json=body).status_code in (200, 201)
            time.sleep(max(0.0, started + (i + 1) / 100 - time.monotonic()))
    settled(mesh)
    pushes = a.stats()[EDS_B + "update_success"] - before
    assert 1 <= pushes <= 10, f"{pushes} EDS pushes for 100 writes"

    # The last write is what Envoy holds.
    dump = a.config_dump()
    eds = next(c for c in dump["configs"] if c["@type"].endswith(".EndpointsConfigDump"))
    b_eds = next(
        e["endpoint_config"]
        for e in eds["dynamic_endpoint_configs"]
        if e["endpoint_config"]["cluster_name"] == "outbound|8080||b.default"
    )
    hosts = {
        ep["endpoint"]["address"]["socket_address"]["address"]
        for group in b_eds["endpoints"]
        for ep in group["lb_endpoints"]
    }
    assert "127.0.1.100" in hosts and not any(
        h.startswith("127.0.1.") and h != "127.0.1.100" for h in hosts
    )
