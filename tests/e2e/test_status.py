""" "Did my change land?": /v1/proxies, /v1/revisions/{rev}, proxy-status, proxy-config and
--wait, against real Envoys."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.conftest import Mesh
from tests.support.mesh import wait_until

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "interlock.cli"]


def cli(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--control-plane", mesh.server.api_url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def all_synced(mesh: Mesh, count: int) -> bool:
    with mesh.server.api() as api:
        items = api.get("/v1/proxies").json()["items"]
    return (
        len(items) == count
        and all(t["state"] == "SYNCED" for p in items for t in p["types"])
        and all(
            {t["type"] for t in p["types"]} >= {"clusters", "endpoints", "listeners", "routes"}
            for p in items
        )
    )


def test_proxies_report_what_they_acked(mesh: Mesh, xds_protocol: str) -> None:
    mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    wait_until(lambda: all_synced(mesh, 2), 10, what="both proxies SYNCED")
    with mesh.server.api() as api:
        revision = api.get("/v1/revision").json()["revision"]
        proxies = {p["node_id"]: p for p in api.get("/v1/proxies").json()["items"]}
    a = proxies["a-1"]
    assert a["service"] == "a" and a["namespace"] == "default"
    assert a["variant"] == xds_protocol
    assert "1.40" in a["envoy_version"]
    assert a["synced_revision"] == revision
    eds = next(t for t in a["types"] if t["type"] == "endpoints")
    assert eds["version_acked"] == eds["version_sent"] and eds["revision_acked"] == revision
    assert eds["last_nack"] is None

    table = cli(mesh, "proxy-status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:7] == ["NAME", "SERVICE", "XDS", "CDS", "EDS", "LDS", "RDS"]
    row = next(line.split() for line in lines if line.startswith("a-1"))
    assert row[1:7] == ["a.default", xds_protocol.upper(), "SYNCED", "SYNCED", "SYNCED", "SYNCED"]


def test_put_with_wait_returns_once_every_proxy_acked(mesh: Mesh) -> None:
    mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    wait_until(lambda: all_synced(mesh, 2), 10, what="both proxies SYNCED")

    out = cli(
        mesh,
        "put",
        "instance",
        "b",
        "b-9",
        "--address",
        "127.0.0.9",
        "--port",
        "15006",
        "--labels",
        "version=v9",
        "--wait",
        "--timeout",
        "10",
    )
    assert out.returncode == 0, out.stderr
    assert "ACKed by 2/2 proxies" in out.stdout
    revision = int(out.stdout.split("(revision ")[1].split(")")[0])

    with mesh.server.api() as api:
        report = api.get(f"/v1/revisions/{revision}").json()
    assert report["changes"] == [{"kind": "Instance", "name": "b/b-9", "op": "upsert"}]
    assert report["proxies"]["acked"] == 2 and report["proxies"]["complete"] is True

    # The endpoint really is in a's Envoy (the oracle is Envoy, not our own record).
    a = mesh.sidecars[0]
    dump = json.dumps(a.config_dump())
    assert "127.0.0.9" in dump

    cfg = cli(mesh, "proxy-config", "a-1", "--type", "endpoints")
    assert cfg.returncode == 0, cfg.stderr
    assert "127.0.0.9:15006" in cfg.stdout
    as_json = json.loads(cli(mesh, "proxy-config", "a-1", "-t", "listeners", "-o", "json").stdout)
    assert {r["name"] for r in as_json["resources"]["listeners"]} == {"inbound", "outbound|http"}

    missing = cli(mesh, "proxy-config", "nobody")
    assert missing.returncode == 1 and "not connected" in missing.stderr
