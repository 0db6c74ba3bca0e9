"""docker-compose.yml's commands parsed by the real CLI, its ports and addresses checked against
each other: fast, and without root. tests/e2e/test_multihost.py runs the file for real (no
Docker engine needed: one network namespace per container)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from interlock.cli.main import app
from interlock.demo import apps

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def parse_interlock(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``interlock ...`` exactly as the CLI would; returns (subcommand, params)."""
    assert args[0] == "interlock", args
    group: Any = typer.main.get_command(app)
    name = args[1]
    ctx = group.make_context("interlock", [name])
    cmd = group.get_command(ctx, name)
    assert cmd is not None, f"interlock has no command {name!r}"
    sub = cmd.make_context(name, list(args[2:]), parent=ctx)
    return name, dict(sub.params)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def port_of(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    return host, int(port)


def test_every_interlock_command_parses_with_the_real_cli(compose: dict[str, Any]) -> None:
    commands = [
        s["command"] for s in compose["services"].values() if s["command"][0] == "interlock"
    ]
    assert len(commands) == 4
    for command in commands:
        parse_interlock(command)  # raises click.UsageError on any unknown option or bad value


def test_sidecars_agree_with_their_apps_and_the_control_plane(compose: dict[str, Any]) -> None:
    services = compose["services"]
    _, server = parse_interlock(services["interlock"]["command"])
    api_host, api_port = port_of(server["api"])
    _, xds_port = port_of(server["xds"])
    assert api_host == "0.0.0.0", "the control plane must listen beyond its own container"
    assert f"{api_port}:{api_port}" in services["interlock"]["ports"]

    sidecars = {n: s for n, s in services.items() if s["command"][:2] == ["interlock", "sidecar"]}
    assert len(sidecars) == 3
    for name, spec in sidecars.items():
        _, opts = parse_interlock(spec["command"])
        app_service = spec["network_mode"].removeprefix("service:")
        assert app_service in services, f"{name} shares the network of a missing service"
        assert opts["address"] == app_service, f"{name} must register its app container's address"
        assert opts["control_plane"] == f"http://interlock:{api_port}"
        assert opts["xds"] == f"interlock:{xds_port}"
        # The sidecar registers with the admin token the server wrote beside its database,
        # in the volume both mount.
        db = server["db"].removeprefix("sqlite:///")
        assert str(opts["token_file"]) == db + ".admin-token"
        volume = services["interlock"]["volumes"][0].split(":")
        assert f"{volume[0]}:{volume[1]}:ro" in spec["volumes"]
        assert db.startswith(volume[1] + "/")
        app_cmd = services[app_service]["command"]
        assert app_cmd[:3] == ["python", "-m", "interlock.demo.apps"]
        app_opts = apps.build_parser().parse_args(app_cmd[3:])
        assert app_opts.port == opts["app_port"], f"{name}: app port mismatch"
        assert (app_opts.name, app_opts.instance) == (opts["service"], opts["instance_id"])
        if app_opts.outbound is not None:
            assert app_opts.outbound == opts["outbound_port"], f"{name}: outbound port mismatch"
        published = [p.split(":")[-1] for p in services[app_service].get("ports", [])]
        if app_service == "frontend":
            assert str(opts["inbound_port"]) in published, (
                "the frontend must be reachable from the host"
            )
    assert {parse_interlock(s["command"])[1]["service"] for s in sidecars.values()} == {
        "frontend",
        "backend",
    }

    frontend = apps.build_parser().parse_args(services["frontend"]["command"][3:])
    assert frontend.outbound is not None, "the frontend calls the backend through its sidecar"
