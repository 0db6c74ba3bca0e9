"""Translated resources in a running Envoy: where requests land, as an app would see it.

One real Envoy runs the resources of a sidecar (inlined into a static bootstrap, see
tests/support/envoy_validate.py) in front of a tiny HTTP upstream on loopback. The upstream
stands in for both the peer sidecars (service instances point at it) and the local app.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from interlock.model import Instance, MeshState, Proxy, Service, ServiceProtocol
from interlock.xds.translate import translate
from tests.support.envoy_validate import bootstrap_json, envoy_binary, static_bootstrap
from tests.support.net import free_ports

pytestmark = pytest.mark.e2e

READY_DEADLINE_SECONDS = 60  # waiting for start-up, never a measured expectation


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with what it received: path and Host."""

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "host": self.headers.get("Host", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Sidecar:
    """A running Envoy with a sidecar's translated resources."""

    admin: int
    outbound: int
    inbound: int
    tcp: int

    def stat(self, name: str) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats?filter=^{name}$") as r:
            text = r.read().decode()
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        raise AssertionError(f"no stat {name!r} in {text!r}")


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _wait_ready(process: subprocess.Popen[bytes], admin: int, log: Path) -> None:
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    while True:
        if process.poll() is not None:
            raise AssertionError(f"envoy exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"envoy not ready:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sidecar(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    admin, outbound, inbound, tcp = free_ports(4)
    state = MeshState.build(
        1,
        [
            Service("a"),
            Service("b", protocol=ServiceProtocol.HTTP, port=8080),
            Service("empty", protocol=ServiceProtocol.HTTP, port=8080),
            Service("db", protocol=ServiceProtocol.TCP, port=tcp),
        ],
        [
            Instance("b", "b-1", "127.0.0.1", upstream, locality="local/zone-a"),
            Instance("db", "db-1", "127.0.0.1", upstream),
        ],
    )
    proxy = Proxy("a-1", "a", inbound_port=inbound, app_port=upstream, outbound_port=outbound)
    resources = translate(state, proxy)
    assert resources.problems == ()
    directory = tmp_path_factory.mktemp("envoy")
    config = directory / "bootstrap.json"
    config.write_text(bootstrap_json(static_bootstrap(resources, admin_port=admin)))
    log = directory / "envoy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(config),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(process, admin, log)
        yield Sidecar(admin=admin, outbound=outbound, inbound=inbound, tcp=tcp)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(port: int, target: str, host: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", target, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "host",
    [
        "b",
        "b:8080",
        "b.default",
        "b.default:8080",
        "b.default.svc.cluster.local",
        "b.default.svc.cluster.local:8080",
    ],
)
def test_host_header_names_the_service(sidecar: Sidecar, host: str) -> None:
    status, body = get(sidecar.outbound, "/path?q=1", host=host)
    assert status == 200
    assert json.loads(body) == {"path": "/path?q=1", "host": host}


def test_absolute_url_through_http_proxy_reaches_the_service(sidecar: Sidecar) -> None:
    # What `HTTP_PROXY=http://127.0.0.1:Q curl http://b/path` sends: an absolute-form target.
    status, body = get(sidecar.outbound, "http://b/path")
    assert status == 200
    assert json.loads(body) == {"path": "/path", "host": "b"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_through_http_proxy_reaches_the_service(sidecar: Sidecar) -> None:
    proxy = f"http://127.0.0.1:{sidecar.outbound}"
    # curl reads only the lower-case http_proxy for http:// URLs; set both as users do.
    environment = {"PATH": os.environ.get("PATH", ""), "HTTP_PROXY": proxy, "http_proxy": proxy}
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "30", "http://b/path"],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"path": "/path", "host": "b"}


def test_unknown_host_gets_404(sidecar: Sidecar) -> None:
    status, _ = get(sidecar.outbound, "/path", host="nobody")
    assert status == 404


def test_service_without_instances_gets_503_without_retries(sidecar: Sidecar) -> None:
    status, body = get(sidecar.outbound, "/path", host="empty")
    assert status == 503
    assert b"no healthy upstream" in body
    assert sidecar.stat("cluster.outbound|8080||empty.default.upstream_rq_retry") == 0


def test_tcp_service_listener_forwards_the_connection(sidecar: Sidecar) -> None:
    status, body = get(sidecar.tcp, "/raw", host="anything")
    assert status == 200
    assert json.loads(body) == {"path": "/raw", "host": "anything"}


def test_inbound_listener_hands_requests_to_the_app(sidecar: Sidecar) -> None:
    status, body = get(sidecar.inbound, "/in", host="a.default")
    assert status == 200
    assert json.loads(body) == {"path": "/in", "host": "a.default"}
