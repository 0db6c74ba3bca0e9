"""An Envoy outside the supported range (1.36.4, the newest release Envoy no longer supports)
is refused and says so, instead of being served configuration it may reject:

- `interlock sidecar` with it: Envoy rejects the bootstrap, and the sidecar says why.
- A hand-written bootstrap it accepts (the guide's sidecar-mode example, with the token's
  ``Bearer`` prefix in the file: 1.36 has no ``header_value_prefix``): its stream is refused
  before anything is sent, and proxy-status (API and CLI) shows it REFUSED with the reason.
  The same bootstrap on a supported Envoy connects and the refusal is gone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_existing_envoy import trust_files, xds_fields
from tests.support.envoy_validate import envoy_binary as venv_envoy
from tests.support.envoys import UNSUPPORTED, envoy_binary
from tests.support.existing_envoy import FleetEnvoy, fill, fleet_credentials, guide_example
from tests.support.mesh import INTERLOCK, ServerProcess, Sidecar, UpstreamApp, wait_until
from tests.support.net import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(f"envoy-{UNSUPPORTED}")]

REASON = (
    f"Envoy {UNSUPPORTED} is outside the supported range (Envoy 1.37 to 1.40): it is served "
    "no configuration; upgrade this proxy's Envoy"
)


def test_the_sidecar_says_its_envoy_is_unsupported(server: ServerProcess, tmp_path: Path) -> None:
    app = UpstreamApp("b", "b-1")
    sidecar = Sidecar(
        "b", "b-1", app.port, server, tmp_path, extra=["--envoy", str(envoy_binary(UNSUPPORTED))]
    )
    try:
        sidecar.start()
        assert sidecar.proc is not None
        code = sidecar.proc.wait(30)
    finally:
        sidecar.stop()
        app.close()
    assert code != 0
    said = " ".join(sidecar.log().split())  # Envoy pads its message with spaces
    assert "no such field: 'header_value_prefix'" in said  # Envoy's own words
    assert f"sidecar: {REASON}" in said


def test_a_proxy_on_an_unsupported_envoy_is_refused_and_shown(
    server: ServerProcess, tmp_path: Path
) -> None:
    app = UpstreamApp("b", "b-1")
    inbound, outbound, admin = free_ports(3)
    envoy: FleetEnvoy | None = None
    try:
        fleet_credentials(
            server, tmp_path / "fleet", "b", {"b-1": f"127.0.0.1:{inbound}"}, "--sidecar"
        )
        ca_dir = tmp_path / "fleet" / "b"
        trust_files(server, ca_dir)
        token = ca_dir / "b-1" / "xds-token"
        bearer = tmp_path / "bearer-token"
        bearer.write_text(f"Bearer {token.read_text()}")
        bearer.chmod(0o600)
        text = fill(
            guide_example("sidecar.yaml"),
            {
                **xds_fields(server, ca_dir, bearer),
                "ADDRESS": "127.0.0.1",
                "INBOUND_PORT": inbound,
                "APP_PORT": app.port,
                "OUTBOUND_PORT": outbound,
                "ADMIN_PORT": admin,
            },
        )
        assert '                header_value_prefix: "Bearer "\n' in text
        bootstrap = tmp_path / "b-1.yaml"
        bootstrap.write_text(text.replace('                header_value_prefix: "Bearer "\n', ""))

        envoy = FleetEnvoy(str(envoy_binary(UNSUPPORTED)), bootstrap, admin)

        def refused() -> dict[str, object] | None:
            envoy.alive()  # type: ignore[union-attr]
            with server.api() as api:
                r = api.get("/v1/proxies/b-1")
            return r.json() if r.status_code == 200 else None

        proxy = wait_until(refused, 20, interval=0.2, what="b-1 listed as refused")
        assert proxy["envoy_version"] == f"envoy/{UNSUPPORTED}"
        assert [p["message"] for p in proxy["problems"]] == [REASON]
        assert proxy["streams"] == [] and proxy["types"] == [] and proxy["refused_at"]
        # Nothing was pushed: no listener, no cluster from the control plane.
        configs = envoy.config_dump()["configs"]
        assert not any(
            c.get(k) for c in configs for k in ("dynamic_listeners", "dynamic_active_clusters")
        )  # type: ignore[union-attr]
        status = subprocess.run(
            [*INTERLOCK, "proxy-status", "--control-plane", server.api_url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        (row,) = [line.split() for line in status.stdout.splitlines() if line.startswith("b-1")]
        assert row[2] == "REFUSED" and row[-1] == f"envoy/{UNSUPPORTED}"
        assert f"problem: b-1: {REASON}" in " ".join(status.stderr.split())

        # The same bootstrap on a supported Envoy: served, and no longer listed as refused.
        envoy.stop()
        envoy = FleetEnvoy(venv_envoy(), bootstrap, admin)

        def served() -> bool:
            envoy.alive()  # type: ignore[union-attr]
            with server.api() as api:
                proxy = api.get("/v1/proxies/b-1").json()
            return proxy["problems"] == [] and proxy["synced_revision"] is not None

        wait_until(served, 20, interval=0.2, what="b-1 served on a supported Envoy")
    finally:
        if envoy is not None:
            envoy.stop()
        app.close()
