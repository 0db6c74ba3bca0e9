"""Proxyless gRPC, with grpcio's own xDS client and real gRPC servers registered as instances:
a workload bootstrapped by ``interlock bootstrap --grpc`` (TLS to the control plane, its
proxy token as JWT call credentials) calls ``xds:///`` targets, and what the mesh says —
instances, VirtualService splits and matches, retries — decides which server answers."""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from interlock.model.token_envelope import wrap
from interlock.xds.transport import resource_types as rt
from tests.support.grpc_apps import Greeter, GrpcClient
from tests.support.mesh import INTERLOCK, ServerProcess, wait_until
from tests.support.net import free_ports
from tests.support.xds_client import XdsClient

pytestmark = pytest.mark.e2e

_SERVICES = itertools.count(1)


class Workload:
    """The parts of one test: greeter servers registered as instances of ``service`` (its
    own, on a server the module's tests share), and a gRPC client workload (instance
    ``c-<service>`` of ``caller``) with its bootstrap."""

    def __init__(self, server: ServerProcess, workdir: Path, service: str) -> None:
        self.server = server
        self.workdir = workdir
        self.service = service
        self.client_id = f"c-{service}"
        self.target = f"xds:///{service}"
        self.fqdn_target = f"xds:///{service}.default.svc.cluster.local:50051"
        self.greeters: dict[str, Greeter] = {}
        self.client: GrpcClient | None = None
        with server.api() as api:
            r = api.put(f"/v1/services/{service}", json={"port": 50051, "protocol": "grpc"})
            assert r.is_success, r.text
            assert api.put("/v1/services/caller", json={"port": 9}).is_success
            body = {"address": "127.0.0.1", "port": 9}
            r = api.put(f"/v1/services/caller/instances/{self.client_id}", json=body)
            assert r.is_success, r.text

    def greeter(self, instance: str, labels: dict[str, str] | None = None, **kw: Any) -> Greeter:
        greeter = self.greeters[instance] = Greeter(instance, **kw)
        body = {"address": "127.0.0.1", "port": greeter.port, "labels": labels or {}}
        with self.server.api() as api:
            r = api.put(f"/v1/services/{self.service}/instances/{instance}", json=body)
            assert r.is_success, r.text
        return greeter

    def deregister(self, instance: str) -> None:
        with self.server.api() as api:
            r = api.delete(f"/v1/services/{self.service}/instances/{instance}")
            assert r.is_success, r.text

    def apply(self, *documents: dict[str, Any]) -> None:
        """Apply the documents; once the client is connected, wait until it ACKed them (a
        NACK from grpcio would mean something it cannot take was sent)."""
        with self.server.api() as api:
            r = api.post("/v1/resources", json=list(documents))
            assert r.status_code == 200, r.text
            if self.client is None:
                return
            revision = r.json()["revision"]
            report = api.get(f"/v1/revisions/{revision}", params={"wait": 10}, timeout=15)
        proxies = report.json()["proxies"]
        assert proxies["complete"] and proxies["nacked"] == 0, proxies

    def bootstrap(self) -> Path:
        """``interlock bootstrap --grpc`` as a user runs it; the bootstrap file's path."""
        out = subprocess.run(
            [
                *INTERLOCK,
                "bootstrap",
                "--grpc",
                "--service",
                "caller",
                "--instance-id",
                self.client_id,
                "--xds",
                self.server.xds_address,
                "--control-plane",
                self.server.api_url,
                "--ca-dir",
                str(self.workdir / "grpc-ca"),
                "--token-file",
                str(self.workdir / "grpc-token.jwt"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert "ilp_" not in out.stdout + out.stderr  # the token is in its file, nowhere else
        token_file = self.workdir / "grpc-token.jwt"
        assert token_file.stat().st_mode & 0o777 == 0o600
        path = self.workdir / "grpc-bootstrap.json"
        path.write_text(out.stdout)
        return path

    def start_client(self) -> GrpcClient:
        self.client = GrpcClient(self.bootstrap(), self.workdir / "grpc-client.log")
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.stop()
        for greeter in self.greeters.values():
            greeter.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One control plane for the module's tests (each has its own service and client)."""
    server = ServerProcess(tmp_path_factory.mktemp("grpc-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workload(shared_server: ServerProcess, tmp_path: Path) -> Iterator[Workload]:
    parts = Workload(shared_server, tmp_path, f"greeter-{next(_SERVICES)}")
    try:
        yield parts
    finally:
        parts.close()


def answered(client: GrpcClient, target: str, count: int, **kw: Any) -> collections.Counter[str]:
    return collections.Counter(client.call(target, count, **kw))


def test_calls_reach_the_instances_and_leave_a_deregistered_one(workload: Workload) -> None:
    workload.greeter("g1")
    workload.greeter("g2")
    client = workload.start_client()

    # Both the short name and the FQDN with port resolve; round robin reaches both servers.
    for target in (workload.target, workload.fqdn_target):
        wait_until(lambda t=target: set(client.call(t, 4)) == {"g1", "g2"}, 15, what=target)

    workload.deregister("g2")
    wait_until(lambda: set(client.call(workload.target, 4)) == {"g1"}, 10, what="calls leave g2")
    assert answered(client, workload.target, 20) == {"g1": 20}
    g2_calls = workload.greeters["g2"].calls
    client.call(workload.target, 10)
    assert workload.greeters["g2"].calls == g2_calls

    # A deleted service leaves the client too: its listener is gone, calls fail.
    with workload.server.api() as api:
        assert api.delete(f"/v1/services/{workload.service}", params={"cascade": "true"}).is_success
    wait_until(lambda: client.call(workload.target, 1) == ["UNAVAILABLE"], 10, what="service gone")
    g1_calls = workload.greeters["g1"].calls
    assert client.call(workload.target, 3) == ["UNAVAILABLE"] * 3
    assert workload.greeters["g1"].calls == g1_calls


def test_a_virtual_service_split_and_header_match_steer_calls(workload: Workload) -> None:
    workload.greeter("v1-a", {"version": "v1"})
    workload.greeter("v2-a", {"version": "v2"})
    client = workload.start_client()
    wait_until(lambda: set(client.call(workload.target, 4)) == {"v1-a", "v2-a"}, 15, what="both")

    workload.apply(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": workload.service, "namespace": "default"},
            "spec": {
                "host": workload.service,
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": workload.service, "namespace": "default"},
            "spec": {
                "hosts": [workload.service],
                "http": [
                    {
                        "name": "canary",
                        "match": [{"headers": {"x-canary": {"exact": "yes"}}}],
                        "route": [{"destination": {"host": workload.service, "subset": "v2"}}],
                    },
                    {
                        "name": "split",
                        "route": [
                            {
                                "destination": {"host": workload.service, "subset": "v1"},
                                "weight": 90,
                            },
                            {
                                "destination": {"host": workload.service, "subset": "v2"},
                                "weight": 10,
                            },
                        ],
                    },
                ],
            },
        },
    )
    canary = {"x-canary": "yes"}
    wait_until(
        lambda: set(client.call(workload.target, 10, metadata=canary)) == {"v2-a"},
        10,
        what="canary",
    )
    assert answered(client, workload.target, 20, metadata=canary) == {"v2-a": 20}
    split = answered(client, workload.target, 200)
    assert set(split) == {"v1-a", "v2-a"}, split
    assert 160 <= split["v1-a"] <= 196, split  # 90 % of 200 (binomial: ±4 sd)


def test_a_retry_policy_turns_unavailable_into_success(workload: Workload) -> None:
    workload.greeter("good")
    workload.greeter("bad", fail_with=grpc.StatusCode.UNAVAILABLE)
    client = workload.start_client()

    def virtual_service(retries: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": workload.service, "namespace": "default"},
            "spec": {
                "hosts": [workload.service],
                "http": [
                    {"route": [{"destination": {"host": workload.service}}], "retries": retries}
                ],
            },
        }

    workload.apply(virtual_service({"attempts": 0}))
    wait_until(
        lambda: set(client.call(workload.target, 6)) == {"good", "UNAVAILABLE"},
        15,
        what="no retries",
    )

    workload.apply(virtual_service({"attempts": 3, "retryOn": "unavailable"}))
    wait_until(lambda: set(client.call(workload.target, 10)) == {"good"}, 10, what="retries")
    assert answered(client, workload.target, 30) == {"good": 30}
    assert workload.greeters["bad"].calls > 0  # the bad one is still picked, then retried


def test_timeouts_faults_and_ring_hash_reach_grpc_and_the_rest_is_reported(
    workload: Workload,
) -> None:
    for name in ("h1", "h2", "h3"):
        workload.greeter(name)
    client = workload.start_client()
    wait_until(lambda: len(set(client.call(workload.target, 6))) == 3, 15, what="all three")

    workload.apply(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": workload.service, "namespace": "default"},
            "spec": {
                "host": workload.service,
                "trafficPolicy": {
                    "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}},
                    # not implemented by gRPC: taken out (no NACK), reported
                    "outlierDetection": {"consecutive5xxErrors": 3},
                    "connectionPool": {"tcp": {"maxConnections": 10}},
                },
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": workload.service, "namespace": "default"},
            "spec": {
                "hosts": [workload.service],
                "http": [
                    {
                        "name": "slow",
                        "match": [{"headers": {"x-slow": {"exact": "yes"}}}],
                        "fault": {"delay": {"fixedDelay": "3s", "percentage": {"value": 100}}},
                        "timeout": "0.5s",
                        "route": [{"destination": {"host": workload.service}}],
                    },
                    {
                        "name": "broken",
                        "match": [{"headers": {"x-abort": {"exact": "yes"}}}],
                        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}},
                        "route": [{"destination": {"host": workload.service}}],
                    },
                    {
                        "name": "main",
                        "headers": {"request": {"set": {"x-extra": "1"}}},
                        "mirror": {"host": workload.service},
                        "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}]},
                        "route": [{"destination": {"host": workload.service}}],
                    },
                ],
            },
        },
    )
    # gRFC A31 and A33: the route's timeout ends a delayed call; an abort fails it.
    slow = client.call(workload.target, 2, metadata={"x-slow": "yes"}, timeout=10)
    assert slow == ["DEADLINE_EXCEEDED"] * 2
    assert set(client.call(workload.target, 5, metadata={"x-abort": "yes"})) == {"UNAVAILABLE"}
    # gRFC A42: a user's calls stay on one instance; users spread over the instances.
    homes = {}
    for user in (f"user-{n}" for n in range(10)):
        answers = set(client.call(workload.target, 5, metadata={"x-user": user}))
        assert len(answers) == 1, (user, answers)
        homes[user] = answers.pop()
    assert len(set(homes.values())) >= 2, homes

    # What gRPC does not implement is reported on the proxy, naming the policy.
    with workload.server.api() as api:
        proxy = api.get(f"/v1/proxies/{workload.client_id}").json()
    assert proxy["envoy_version"].startswith("gRPC")  # grpcio's user agent
    reported = {(p["resource"], p["field"]) for p in proxy["problems"]}
    vs = f"VirtualService/default/{workload.service}"
    service = f"Service/default/{workload.service}"
    assert {
        (vs, "http[main].headers.request"),
        (vs, "http[main].mirror"),
        (vs, "http[main].corsPolicy"),
        (service, "DestinationRule.trafficPolicy.outlierDetection"),
        (service, "DestinationRule.trafficPolicy.connectionPool.tcp.maxConnections"),
    } <= reported, reported


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "proxyless-grpc.md"


def test_the_guide_example_runs_as_written(tmp_path: Path) -> None:
    """docs/proxyless-grpc.md ends with a script a user copies: it runs unchanged here (only
    its ports, which it reads from the environment, are free ones)."""
    text = GUIDE.read_text()
    script = text[text.rindex("```bash\n") + len("```bash\n") :]
    script = script[: script.index("```")]
    api_port, xds_port = free_ports(2)
    venv_bin = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        API_PORT=str(api_port),
        XDS_PORT=str(xds_port),
        PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    for key in ("INTERLOCK_TOKEN", "INTERLOCK_CA_FILE", "INTERLOCK_CONTROL_PLANE"):
        env.pop(key, None)
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the guide's example did not finish in 90 s:\n{out.decode()}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything of its session left behind
    output = out.decode(errors="replace")
    assert proc.returncode == 0, output
    assert output.rstrip().endswith("['g1', 'g2']"), output
    assert "ilp_" not in output


async def test_an_expired_or_mismatched_token_envelope_is_refused(
    shared_server: ServerProcess,
) -> None:
    """The envelope is only a wrapper: past its exp, or around another instance's token, the
    stream is refused before anything is sent, and the token never reaches the log."""
    with shared_server.api() as api:
        assert api.put("/v1/services/caller", json={"port": 9}).is_success
        body = {"address": "127.0.0.1", "port": 9}
        assert api.put("/v1/services/caller/instances/c-env", json=body).is_success
        token = str(api.post("/v1/services/caller/instances/c-env/token").json()["token"])
    now = int(time.time())
    cases = [
        (wrap(token, "default/caller/c-env", now - 7200, 3600), "c-env", "UNAUTHENTICATED"),
        (wrap(token, "default/caller/c-env", now, 3600), "c-other", "PERMISSION_DENIED"),
        (wrap(token, "default/caller/c-env", now, 3600), "c-env", None),
    ]
    async with shared_server.xds_channel() as channel:
        for envelope, node, refused in cases:
            client = XdsClient(
                channel,
                node,
                cluster="caller",
                variant="sotw",
                node_metadata={"kind": "grpc"},
                call_metadata=(("authorization", f"Bearer {envelope}"),),
                auto_ack=True,
            )
            async with client as c:
                await c.subscribe(rt.LISTENER, ["nosuch"])
                if refused is None:
                    assert (await c.recv_type(rt.LISTENER)).names == []
                    continue
                ended = await c.finished()
                assert ended.code.name == refused, (node, ended)
                assert c.received == 0
    assert token not in shared_server.log()
