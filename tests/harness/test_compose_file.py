"""Reading a compose file the way the multi-host harness runs it: the repository's own
docker-compose.yml, and each rule of what is honoured, rewritten or refused."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.compose_file import (
    DEFAULT_COMPOSE_FILE,
    ComposeError,
    ComposeProject,
    rewrite_paths,
)


def load(tmp_path: Path, text: str, **environ: str) -> ComposeProject:
    path = tmp_path / "compose.yml"
    path.write_text(text)
    return ComposeProject.load(path, environ)


def test_the_repository_compose_file_starts_the_control_plane_and_apps_before_sidecars() -> None:
    project = ComposeProject.load(DEFAULT_COMPOSE_FILE)
    order = project.start_order()
    sidecars = [n for n in project.services if n.endswith("-sidecar")]
    assert sidecars
    for name in sidecars:
        sidecar = project.services[name]
        app = sidecar.network_owner
        assert app is not None and app != name
        assert order.index("interlock") < order.index("credentials") < order.index(name)
        assert order.index(app) < order.index(name)
        assert [(m.kind, m.read_only) for m in sidecar.mounts] == [("volume", True)]
        assert sidecar.restart == "on-failure"
    assert project.network_owners() == [
        "interlock",
        "credentials",
        "frontend",
        "backend-v1",
        "backend-v2",
    ]
    assert project.services["frontend"].container_port(15006) == 15006


def test_environment_interpolation_dependencies_and_restart(tmp_path: Path) -> None:
    (tmp_path / "extra.env").write_text("# a comment\nFROM_FILE=1\nOVERRIDDEN=file\n")
    project = load(
        tmp_path,
        """
x-common: &common
  restart: on-failure:2
services:
  one:
    <<: *common
    command: echo ${WHO:-nobody} $$HOME "${GIVEN}"
    env_file: extra.env
    environment: [OVERRIDDEN=list, INHERITED, ABSENT]
    stop_signal: SIGINT
    stop_grace_period: 1m30s
  two:
    command: ["sleep", "1"]
    environment: {FLAG: true, NUMBER: 3}
    depends_on:
      one: {condition: service_completed_successfully}
    healthcheck: {test: ["CMD-SHELL", "exit 0"]}
    networks: {default: {aliases: [deux, zwei]}}
volumes: {}
""",
        GIVEN="a b",
        INHERITED="yes",
    )
    one, two = project.services["one"], project.services["two"]
    assert one.command == ("echo", "nobody", "$HOME", "a b")
    assert dict(one.environment) == {"FROM_FILE": "1", "OVERRIDDEN": "list", "INHERITED": "yes"}
    assert (one.restart, one.max_restarts) == ("on-failure", 2)
    assert (one.stop_signal, one.stop_grace) == (signal.SIGINT, 90.0)
    assert dict(two.environment) == {"FLAG": "true", "NUMBER": "3"}
    assert dict(two.depends_on) == {"one": "service_completed_successfully"}
    assert two.healthcheck == ("/bin/sh", "-c", "exit 0")
    assert two.aliases == ("deux", "zwei")
    assert project.start_order() == ["one", "two"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: {a: {image: x}}", "no command"),
        ("services: {a: {command: x, privileged: true}}", "key 'privileged' is not supported"),
        ("services: {a: {command: x, network_mode: host}}", "network_mode 'host'"),
        ("services: {a: {command: x, depends_on: [b]}}", "missing service 'b'"),
        (
            "services: {a: {command: x, depends_on: [b]}, b: {command: x, depends_on: [a]}}",
            "cycle",
        ),
        ("services: {a: {command: x, volumes: ['v:/v']}}", "volume 'v' is not declared"),
        ("services: {a: {command: x, restart: sometimes}}", "restart 'sometimes'"),
        ("services: {a: {command: x, ports: ['8000-8001:8000-8001']}}", "port ranges"),
        ("services: {a: {command: '${NEEDED:?give it}'}}", "NEEDED"),
        ("services: {a: {command: x}}\nconfigs: {}", "top-level key 'configs'"),
    ],
)
def test_what_cannot_be_emulated_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ComposeError, match=message):
        load(tmp_path, text)


def test_volumes_and_the_paths_rewritten_to_them(tmp_path: Path) -> None:
    project = load(
        tmp_path,
        """
services:
  a:
    command: x
    volumes:
      - data:/data:ro
      - ./here:/src
      - /scratch
      - {type: volume, source: data, target: /data/inner, read_only: false}
volumes: {data: {}}
""",
    )
    mounts = project.services["a"].mounts
    assert [(m.kind, m.target, m.read_only) for m in mounts] == [
        ("volume", "/data", True),
        ("bind", "/src", False),
        ("anonymous", "/scratch", False),
        ("volume", "/data/inner", False),
    ]
    assert mounts[1].source == str(tmp_path / "here")

    dirs = {"/data": Path("/run/v/data"), "/data/inner": Path("/run/v/inner")}
    assert rewrite_paths("/data", dirs) == "/run/v/data"
    assert (
        rewrite_paths("/data/interlock.db.admin-token", dirs)
        == "/run/v/data/interlock.db.admin-token"
    )
    assert rewrite_paths("/data/inner/key.pem", dirs) == "/run/v/inner/key.pem"
    assert rewrite_paths("sqlite:////data/x.db", dirs) == "sqlite:////run/v/data/x.db"
    assert rewrite_paths("--db=/data/x.db", dirs) == "--db=/run/v/data/x.db"
    # Only where a path begins: not inside other paths, words or longer names.
    for untouched in ("/database", "/srv/data/x", "see /data/x", "http://data/x", "data/x"):
        assert rewrite_paths(untouched, dirs) == untouched
