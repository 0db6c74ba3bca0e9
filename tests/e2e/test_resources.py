"""Policy resources against a running mesh: `interlock apply --wait` returns once every
connected Envoy has ACKed the revision that stored them (before any kind is translated, the
revision must still be reported as reached, never left pending)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import Mesh
from tests.model.specs import valid

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "interlock.cli"]


def cli(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--control-plane", mesh.server.api_url],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "INTERLOCK_TOKEN": mesh.server.admin_token},
    )


def test_apply_wait_blocks_until_every_proxy_acked(mesh: Mesh, tmp_path: Path) -> None:
    mesh.service("reviews", "reviews-1", labels={"version": "v1"})
    manifest = tmp_path / "reviews.yaml"
    manifest.write_text(yaml.safe_dump_all([valid("VirtualService"), valid("DestinationRule")]))

    out = cli(mesh, "apply", "-f", str(manifest), "--wait", "--timeout", "30")

    assert out.returncode == 0, out.stdout + out.stderr
    assert "virtualservice.networking.istio.io/reviews created" in out.stdout
    with mesh.server.api() as api:
        revision = api.get("/v1/revision").json()["revision"]
        report = api.get(f"/v1/revisions/{revision}").json()
    assert f"revision {revision}: ACKed by 1/1 proxies" in out.stdout
    assert report["proxies"]["complete"] and report["proxies"]["acked"] == 1
    assert {c["kind"] for c in report["changes"]} == {"VirtualService", "DestinationRule"}

    deleted = cli(mesh, "delete", "-f", str(manifest), "--wait", "--timeout", "30")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "ACKed by 1/1 proxies" in deleted.stdout
