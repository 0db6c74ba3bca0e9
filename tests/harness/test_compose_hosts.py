"""The harness running a small compose file on test hosts: a one-shot service that must
complete first, names resolving across hosts, a shared network namespace, read-only volumes,
a minimal environment, restarts on failure, SIGKILL of a whole service, and nothing left behind
afterwards, even when the test fails inside."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.compose import ComposeHosts, alive, compose_hosts
from tests.support.hosts import NETNS_ETC, ip, namespaces_unavailable
from tests.support.mesh import wait_until

# Test hosts share the 198.18.0.0/24 subnet: one test at a time makes them (pytest-xdist).
pytestmark = [pytest.mark.timeout(60), pytest.mark.xdist_group("netns")]

COMPOSE = """
services:
  setup:
    command: ["python", "-c", "import sys; open(sys.argv[1], 'w').write('made by setup')",
              "/shared/greeting"]
    volumes: ["shared:/shared"]
  server:
    command: ["python", "-m", "http.server", "--directory", "/shared", "8000"]
    depends_on: {setup: {condition: service_completed_successfully}}
    volumes: ["shared:/shared:ro"]
    environment: {GREETING: hello}
  server-helper:
    network_mode: "service:server"
    command: ["sleep", "600"]
  flaky:
    command: ["python", "-c", "{flaky}", "/state/starts"]
    restart: on-failure
    volumes: ["state:/state"]
  client:
    command: ["sh", "-c", "sleep 600 & sleep 600"]
  split:
    command: ["python", "-c", "{split}", "/out"]
    volumes: ["left:/out/left", "right:/out/right"]
volumes:
  shared: {}
  state: {}
  left: {}
  right: {}
"""
# Writes into two volumes through the directory above them, as `--out /creds` does.
SPLIT = (
    "import pathlib, sys, time; "
    "[(pathlib.Path(sys.argv[1]) / d / 'f').write_text(d) for d in ('left', 'right')]; "
    "time.sleep(600)"
)
# Fails (exit 3) on its first two starts, then runs.
FLAKY = (
    "import pathlib, sys, time; p = pathlib.Path(sys.argv[1]); "
    "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
    "sys.exit(3) if n < 2 else time.sleep(600)"
)
FETCH = (
    "import sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


@pytest.fixture(scope="module")
def root() -> None:
    if reason := namespaces_unavailable():
        pytest.skip(reason)


@pytest.fixture
def compose_file(tmp_path: Path) -> Path:
    path = tmp_path / "compose.yml"
    text = COMPOSE.replace("{flaky}", FLAKY.replace('"', '\\"'))
    path.write_text(text.replace("{split}", SPLIT.replace('"', '\\"')))
    return path


@pytest.fixture
def hosts(root: None, compose_file: Path, tmp_path: Path) -> Iterator[ComposeHosts]:
    with compose_hosts(compose_file, logs_to=tmp_path / "logs") as running:
        running.up(timeout=20)
        yield running


def fetch(hosts: ComposeHosts, where: str, url: str) -> str:
    out = hosts.run(where, ["python", "-c", FETCH, url], timeout=15)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_services_find_each_other_and_their_volumes(hosts: ComposeHosts) -> None:
    assert hosts.services["setup"].completed
    # By name, across the bridge, from another host; and on loopback from a shared namespace.
    greeting = wait_until(
        lambda: fetch(hosts, "client", "http://server:8000/greeting"), 10, 0.1, what="server"
    )
    assert greeting == "made by setup"
    assert fetch(hosts, "server-helper", "http://127.0.0.1:8000/greeting") == "made by setup"
    assert hosts.address("server-helper") == hosts.address("server") != hosts.address("client")
    assert hosts.netns("server-helper") == hosts.netns("server")

    # :ro is enforced for the server and not for setup; the same files are behind both. (The
    # path is an argument of its own: inside the script's text it would not be rewritten.)
    write = ["sh", "-c", 'echo x > "$1"', "sh", "/shared/new"]
    refused = hosts.run("server", write)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert hosts.run("setup", write).returncode == 0
    assert (hosts.volume("shared") / "new").read_text() == "x\n"

    # The compose environment, over a minimal one: nothing of the test's own leaks in.
    os.environ["ILK_TEST_ONLY"] = "leak"
    try:
        env = hosts.run("server", ["sh", "-c", "echo $GREETING-$ILK_TEST_ONLY-$TMPDIR"]).stdout
    finally:
        del os.environ["ILK_TEST_ONLY"]
    assert env.strip() == f"hello--{hosts.private_dir('server') / 'tmp'}"


def test_a_directory_above_volumes_leads_into_them(hosts: ComposeHosts) -> None:
    """`--out /out` with volumes at /out/left and /out/right writes into the volumes, never
    into the test machine's own /out."""
    left, right = hosts.volume("left") / "f", hosts.volume("right") / "f"
    wait_until(lambda: left.exists() and right.exists(), 10, what="the split writes")
    assert (left.read_text(), right.read_text()) == ("left", "right")
    assert not Path("/out").exists()


def test_restart_on_failure_and_a_sigkill_of_every_process(hosts: ComposeHosts) -> None:
    flaky = hosts.services["flaky"]
    starts = hosts.volume("state") / "starts"
    wait_until(lambda: flaky.running and starts.read_text() == "3", 10, what="two restarts")
    assert (flaky.starts, flaky.exit_codes) == (3, [3, 3])

    pids = wait_until(lambda: len(hosts.pids("client")) >= 2 and hosts.pids("client"), 5)
    hosts.kill("client")
    assert not any(alive(p) for p in pids)  # the background children too
    hosts.kill("flaky")  # killed through the API: no restart, although -9 is a failure
    time.sleep(0.5)
    assert not flaky.running and flaky.starts == 3

    hosts.restart("client", sigkill=True)
    assert hosts.services["client"].starts == 2 and len(hosts.pids("client")) >= 1
    assert hosts.stop("client", timeout=2) is not None
    assert "[harness] killed (SIGKILL)" in hosts.logs("client")


def test_nothing_is_left_behind_even_when_the_test_fails(root: None, compose_file: Path) -> None:
    with pytest.raises(RuntimeError, match="inside"), compose_hosts(compose_file) as running:
        running.up(timeout=20)
        names = set(running.network.namespaces)
        made = (running.network.bridge, running.run_dir, list(running.network.hosts.values()))
        raise RuntimeError("a failure inside")
    bridge, run_dir, hosts = made
    assert names and not names & set(ip("netns", "list").split())
    assert bridge not in ip("link", "show")
    assert not any(h.veth in ip("link", "show") for h in hosts)
    assert not any((NETNS_ETC / n).exists() for n in names)
    assert not run_dir.exists()
