"""An existing Envoy fleet, as docs/existing-envoy.md tells it: the guide's own example
bootstraps (written by hand, not rendered by Interlock), filled in and run on real Envoy, with
the instances and tokens from `interlock credentials --instance`.

- Sidecar mode: Interlock owns the Envoy's listeners and clusters; a meshed sidecar calls it
  over mTLS and it calls the sidecar back; rolled back, the instance leaves the callers.
- Discovery-only: an edge Envoy with its own static listener and route takes CDS/EDS only;
  registering and deregistering instances of ``backend`` (one behind a sidecar, reached over
  mTLS, the others plain) moves its traffic, 503 when none is left, and its static
  configuration is never touched.
"""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.support.envoy_validate import envoy_binary
from tests.support.existing_envoy import FleetEnvoy, fill, fleet_credentials, guide_example
from tests.support.mesh import (
    INTERLOCK,
    ServerProcess,
    UpstreamApp,
    strip_volatile,
    wait_until,
)
from tests.support.net import free_ports

pytestmark = pytest.mark.e2e

SPIFFE = "spiffe://interlock.local/ns/default/sa/{}"


def trust_files(server: ServerProcess, ca_dir: Path) -> None:
    """The guide's ``xds-ca.yaml`` beside the ``ca.pem`` `interlock credentials` wrote."""
    assert (ca_dir / "ca.pem").read_bytes() == server.ca_file.read_bytes()
    (ca_dir / "xds-ca.yaml").write_text(fill(guide_example("xds-ca.yaml"), {"CA_DIR": ca_dir}))


def xds_fields(server: ServerProcess, ca_dir: Path, token_file: Path) -> dict[str, object]:
    host, _, port = server.xds_address.rpartition(":")
    return {"XDS_HOST": host, "XDS_PORT": port, "CA_DIR": ca_dir, "TOKEN_FILE": token_file}


def get(port: int, host: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=5)


def test_sidecar_mode_a_hand_written_bootstrap_joins_the_mesh(
    server: ServerProcess, tmp_path: Path
) -> None:
    mesh = Mesh(server, tmp_path, "delta")
    app = UpstreamApp("b", "b-1")
    inbound, outbound, admin = free_ports(3)
    envoy: FleetEnvoy | None = None
    try:
        fleet_credentials(
            server, tmp_path / "fleet", "b", {"b-1": f"127.0.0.1:{inbound}"}, "--sidecar"
        )
        ca_dir = tmp_path / "fleet" / "b"
        trust_files(server, ca_dir)
        bootstrap = tmp_path / "b-1.yaml"
        bootstrap.write_text(
            fill(
                guide_example("sidecar.yaml"),
                {
                    **xds_fields(server, ca_dir, ca_dir / "b-1" / "xds-token"),
                    "ADDRESS": "127.0.0.1",
                    "INBOUND_PORT": inbound,
                    "APP_PORT": app.port,
                    "OUTBOUND_PORT": outbound,
                    "ADMIN_PORT": admin,
                },
            )
        )
        envoy = FleetEnvoy(envoy_binary(), bootstrap, admin).wait_live()
        _, a = mesh.service("a", "a-1")

        # a -> b-1 over mTLS: the hand-written Envoy holds b's SVID and took the caller's.
        wait_until(lambda: get(a.outbound_port, "b").status_code == 200, 15, what="a -> b-1")
        answer = get(a.outbound_port, "b").json()
        assert answer["instance"] == "b-1"
        assert f"URI={SPIFFE.format('a')}" in answer["xfcc"]
        assert f"By={SPIFFE.format('b')}" in answer["xfcc"]
        # ... and b-1's app calls a through the outbound listener Interlock gave its Envoy.
        wait_until(lambda: get(outbound, "a").status_code == 200, 15, what="b-1 -> a")
        back = get(outbound, "a").json()
        assert back["instance"] == "a-1" and f"URI={SPIFFE.format('b')}" in back["xfcc"]

        with server.api() as api:
            proxy = api.get("/v1/proxies/b-1").json()
        assert proxy["envoy_version"].startswith("envoy/") and proxy["problems"] == []
        assert {t["type"]: t["state"] for t in proxy["types"]} == {
            "clusters": "SYNCED",
            "endpoints": "SYNCED",
            "listeners": "SYNCED",
            "routes": "SYNCED",
            "secrets": "SYNCED",
        }

        # Rolled back as the guide says: Envoy back on its old bootstrap (here: stopped), then
        # the instance deleted, which takes it out of every caller's endpoints and revokes
        # its token.
        envoy.stop()
        envoy = None
        deleted = subprocess.run(
            [*INTERLOCK, "delete", "instance", "b", "b-1", "--control-plane", server.api_url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert deleted.returncode == 0, deleted.stderr
        wait_until(lambda: get(a.outbound_port, "b").status_code == 503, 10, what="a -> b 503")
        token_id = (ca_dir / "b-1" / "xds-token-id").read_text()
        with server.api() as api:
            tokens = {t["token_id"]: t for t in api.get("/v1/tokens").json()["items"]}
        assert tokens[token_id]["revoked_at"] is not None
    finally:
        if envoy is not None:
            envoy.stop()
        mesh.close()
        app.close()


def static_config(envoy: FleetEnvoy) -> list[Any]:
    """What the bootstrap gave the Envoy: its static listeners and clusters (as dumped)."""
    kept = []
    for cfg in envoy.config_dump()["configs"]:  # type: ignore[attr-defined]
        for key in ("static_listeners", "static_clusters"):
            kept.append(strip_volatile(cfg.get(key)))
    return kept


def dynamic(envoy: FleetEnvoy, key: str) -> list[Any]:
    return [
        item
        for cfg in envoy.config_dump()["configs"]
        for item in cfg.get(key, [])  # type: ignore[attr-defined]
    ]


def test_discovery_only_an_edge_envoy_follows_registrations_and_keeps_its_own_config(
    server: ServerProcess, tmp_path: Path
) -> None:
    mesh = Mesh(server, tmp_path, "delta")
    plain = {i: UpstreamApp("backend", i) for i in ("backend-2", "backend-3")}
    listen, admin = free_ports(2)
    envoy: FleetEnvoy | None = None

    def put(instance: str) -> None:
        body = {"address": "127.0.0.1", "port": plain[instance].port}
        with server.api() as api:
            r = api.put(f"/v1/services/backend/instances/{instance}", json=body)
            assert r.is_success, r.text

    def deregister(instance: str) -> None:
        with server.api() as api:
            assert api.delete(f"/v1/services/backend/instances/{instance}").is_success

    def landed(count: int = 20) -> collections.Counter[str]:
        assert envoy is not None and envoy.alive()
        seen: collections.Counter[str] = collections.Counter()
        with httpx.Client(timeout=5) as client:  # one connection: Envoy balances requests
            for _ in range(count):
                r = client.get(f"http://127.0.0.1:{listen}/", headers={"Host": "edge.example"})
                seen[r.json()["instance"] if r.status_code == 200 else str(r.status_code)] += 1
        return seen

    def lands_on(*instances: str) -> None:
        wait_until(lambda: set(landed()) == set(instances), 15, what=f"edge -> {instances}")

    try:
        fleet_credentials(server, tmp_path / "fleet", "edge", {"edge-1": f"127.0.0.1:{listen}"})
        ca_dir = tmp_path / "fleet" / "edge"
        trust_files(server, ca_dir)
        mesh.service("backend", "backend-1")  # behind an `interlock sidecar`: mTLS
        bootstrap = tmp_path / "edge.yaml"
        bootstrap.write_text(
            fill(
                guide_example("discovery-only.yaml"),
                {
                    **xds_fields(server, ca_dir, ca_dir / "edge-1" / "xds-token"),
                    "LISTEN_PORT": listen,
                    "ADMIN_PORT": admin,
                },
            )
        )
        envoy = FleetEnvoy(envoy_binary(), bootstrap, admin).wait_live()
        lands_on("backend-1")
        static = static_config(envoy)
        clusters = {c["cluster"]["name"] for c in dynamic(envoy, "dynamic_active_clusters")}
        assert "outbound|8080||backend.default" in clusters

        put("backend-2")  # registered over REST, no sidecar: plain text
        lands_on("backend-1", "backend-2")
        put("backend-3")
        lands_on("backend-1", "backend-2", "backend-3")
        deregister("backend-2")
        lands_on("backend-1", "backend-3")
        mesh.sidecars[0].stop()  # the sidecar leaves the mesh: deregisters, then stops
        deregister("backend-3")
        lands_on("503")

        # Its own listener and route, as the bootstrap wrote them; nothing else came over LDS.
        assert static_config(envoy) == static
        assert dynamic(envoy, "dynamic_listeners") == []
        with server.api() as api:
            types = {t["type"] for t in api.get("/v1/proxies/edge-1").json()["types"]}
        assert types == {"clusters", "endpoints", "secrets"}
    finally:
        if envoy is not None:
            envoy.stop()
        mesh.close()
        for app in plain.values():
            app.close()
