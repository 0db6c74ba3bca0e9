"""Authenticated proxies against a real server: a scripted xDS client (and a real Envoy) with no
token, a bad one, a token of another service, a stream asking for another identity's secret,
and revocation. Then the secrets audit: no private key or token issued during the test shows up
in a log, an API response, ``proxy-config`` or an Envoy config dump."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa

from interlock.ca import load_kek
from interlock.ca.storage import unseal_ca_key, unseal_svid_key
from interlock.xds.transport import resource_types as rt
from tests.e2e.conftest import Mesh
from tests.support.mesh import ServerProcess, wait_until
from tests.support.xds_client import XdsClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that re-checks tokens twice a second (revocation is observed quickly)."""
    srv = ServerProcess(tmp_path, extra=["--token-recheck", "0.5s"])
    srv.start()
    yield srv
    srv.stop()


def register(server: ServerProcess, service: str, instance: str, port: int) -> str:
    """Register ``service``/``instance`` and return a proxy token for it."""
    with server.api() as api:
        assert api.put(f"/v1/services/{service}", json={"port": 8080}).is_success
        body = {"address": "127.0.0.1", "port": port}
        assert api.put(f"/v1/services/{service}/instances/{instance}", json=body).is_success
        r = api.post(f"/v1/services/{service}/instances/{instance}/token")
        assert r.status_code == 201
        return str(r.json()["token"])


def node_metadata(port: int) -> dict[str, Any]:
    return {"inbound_port": str(port), "app_port": str(port + 1), "outbound_port": str(port + 2)}


@pytest.fixture
async def channel(server: ServerProcess) -> AsyncIterator[Any]:
    async with server.xds_channel() as ch:
        yield ch


def client(
    channel: Any, node: str, service: str, token: str | None, variant: str = "delta"
) -> XdsClient:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    return XdsClient(
        channel,
        node,
        cluster=service,
        variant=variant,
        node_metadata=node_metadata(21000),
        call_metadata=metadata,
        auto_ack=True,
    )


@pytest.mark.parametrize("variant", ["delta", "sotw"])
async def test_streams_without_a_valid_token_get_nothing(
    server: ServerProcess, channel: Any, variant: str
) -> None:
    token_a = register(server, "a", "a-1", 21000)
    register(server, "b", "b-1", 21100)
    cases = [
        (None, "a-1", "a", grpc.StatusCode.UNAUTHENTICATED),
        ("ilp_not-a-token", "a-1", "a", grpc.StatusCode.UNAUTHENTICATED),
        (token_a, "b-1", "b", grpc.StatusCode.PERMISSION_DENIED),  # A's token claiming B
        (token_a, "a-2", "a", grpc.StatusCode.PERMISSION_DENIED),  # another instance of A
    ]
    for token, node, service, code in cases:
        for type_url, names in ((rt.CLUSTER, None), (rt.SECRET, ["default", "ROOTCA"])):
            async with client(channel, node, service, token, variant) as c:
                await c.subscribe(type_url, names)
                ended = await c.finished()
                assert ended.code == code, (node, ended)
                assert c.received == 0
    with server.api() as api:
        assert api.get("/v1/proxies").json()["items"] == []
        metrics = api.get("/metrics").text
    assert 'interlock_xds_streams_rejected_total{code="unauthenticated"} 4.0' in metrics
    assert 'interlock_xds_streams_rejected_total{code="permission_denied"} 4.0' in metrics


@pytest.mark.parametrize("variant", ["delta", "sotw"])
async def test_a_proxy_gets_its_own_secrets_only_and_loses_its_stream_when_revoked(
    server: ServerProcess, channel: Any, variant: str
) -> None:
    token_a = register(server, "a", "a-1", 21000)
    register(server, "b", "b-1", 21100)
    async with client(channel, "a-1", "a", token_a, variant) as c:
        guesses = [
            "spiffe://interlock.local/ns/default/sa/b",
            "b",
            "default-b",
            "DEFAULT",
            "default ",
            "../default",
        ]
        await c.subscribe(rt.SECRET, guesses)
        await c.subscribe(rt.CLUSTER)
        await c.recv_type(rt.CLUSTER)
        await c.subscribe(rt.SECRET, [*guesses, "ROOTCA"] if variant == "sotw" else ["ROOTCA"])
        bundle = await c.recv_type(rt.SECRET)
        assert bundle.names == ["ROOTCA"]
        await c.subscribe(
            rt.SECRET, [*guesses, "ROOTCA", "default"] if variant == "sotw" else ["default"]
        )
        own = await c.recv_type(rt.SECRET)
        _, secret = own.resources["default"]
        cert = secret.tls_certificate.certificate_chain.inline_bytes
        assert (
            b"BEGIN CERTIFICATE" in cert
            and b"PRIVATE KEY" in secret.tls_certificate.private_key.inline_bytes
        )
        assert set(c.view(rt.SECRET).resources) == {"default", "ROOTCA"}

        with server.api() as api:
            metrics = api.get("/metrics").text
            count = re.search(r"^interlock_sds_denied_total (\S+)$", metrics, re.M)
            assert count is not None and float(count.group(1)) >= len(guesses)
            tokens = api.get("/v1/tokens").json()["items"]
            token_id = next(t["token_id"] for t in tokens if t["instance_id"] == "a-1")
            assert api.delete(f"/v1/tokens/{token_id}").status_code == 200
        ended = await c.finished()
        assert ended.code == grpc.StatusCode.UNAUTHENTICATED
    assert "it may not have" in server.log()
    assert "spiffe://interlock.local/ns/default/sa/b" in server.log()
    # A new stream with the revoked token is refused at once.
    async with client(channel, "a-1", "a", token_a, variant) as again:
        await again.subscribe(rt.CLUSTER)
        assert (await again.finished()).code == grpc.StatusCode.UNAUTHENTICATED


def test_a_real_envoy_with_a_bad_token_receives_nothing(mesh: Mesh, tmp_path: Path) -> None:
    """Envoy itself, with a bootstrap whose token file holds garbage: no listener, no cluster."""
    with mesh.server.api() as api:
        assert api.put("/v1/services/a", json={"port": 8080}).is_success
    token_file = tmp_path / "bad-token"
    token_file.write_text("ilp_forged")
    token_file.chmod(0o600)
    from tests.support.net import free_ports

    inbound, outbound, admin = free_ports(3)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "interlock.cli",
            "bootstrap",
            "--service",
            "a",
            "--instance-id",
            "a-9",
            "--app-port",
            "9",
            "--inbound-port",
            str(inbound),
            "--outbound-port",
            str(outbound),
            "--admin-port",
            str(admin),
            "--xds",
            mesh.server.xds_address,
            "--xds-protocol",
            mesh.xds_protocol,
            "--token-file",
            str(token_file),
            "--control-plane",
            mesh.server.api_url,
            "--ca-dir",
            str(tmp_path / "ca"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    bootstrap = tmp_path / "bootstrap.yaml"
    bootstrap.write_text(out.stdout)
    assert "ilp_forged" not in out.stdout
    envoy = subprocess.Popen(
        ["envoy", "-c", str(bootstrap), "--disable-hot-restart", "-l", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: "the proxy token is unknown or revoked" in mesh.server.log(),
            10,
            what="the server to refuse the stream",
        )
        dump = httpx.get(f"http://127.0.0.1:{admin}/config_dump", timeout=2).json()
        dynamic = [
            item.get("name")
            for config in dump["configs"]
            for key in config
            if key.startswith("dynamic_")
            for item in config[key]
        ]
        # Only the bundle it verifies the control plane with, which it reads from a file.
        assert dynamic == ["interlock_ca"]
        assert "ilp_forged" not in httpx.get(f"http://127.0.0.1:{admin}/config_dump").text
    finally:
        envoy.terminate()
        envoy.wait(10)


# --- the secrets audit ----------------------------------------------------------------------


def issued_secrets(server: ServerProcess, workdir: Path) -> set[str]:
    """Every private key PEM the server issued or holds (unsealed with its KEK) and every
    token it issued (the admin token, and the proxy tokens the sidecars keep on disk)."""
    db = Path(server.db_url.removeprefix("sqlite:///"))
    kek = load_kek(str(db.with_name(db.name + ".kek")), None)
    found = {server.admin_token}
    engine = sa.create_engine(server.db_url)
    try:
        with engine.connect() as conn:
            for key_id, sealed in conn.exec_driver_sql("SELECT key_id, sealed FROM ca_keys"):
                found.add(unseal_ca_key(bytes(sealed), kek, key_id).decode())
            rows = conn.exec_driver_sql(
                "SELECT namespace, service, instance_id, sealed_key FROM svids"
            )
            for namespace, service, instance_id, sealed in rows:
                pem = unseal_svid_key(
                    bytes(sealed),
                    kek,
                    namespace=namespace,
                    service=service,
                    instance_id=instance_id,
                )
                found.add(pem.decode())
    finally:
        engine.dispose()
    for token_file in workdir.glob("interlock-sidecar-*/xds-token"):
        found.add(token_file.read_text().strip())
    return found


def forms(secret: str) -> list[str]:
    """The secret as text, as the base64 a config dump would show, and its key body alone."""
    out = [secret, base64.b64encode(secret.encode()).decode()]
    body = "".join(line for line in secret.splitlines() if not line.startswith("-----"))
    if body and body != secret:
        out.append(body[:64])
    return out


def test_no_key_or_token_appears_anywhere(mesh: Mesh, tmp_path: Path) -> None:
    _, a = mesh.service("a", "a-1")
    _, b = mesh.service("b", "b-1")
    wait_until(
        lambda: (
            httpx.get(
                f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "b"}, timeout=2
            ).status_code
            == 200
        ),
        10,
        what="a -> b",
    )
    secrets = issued_secrets(mesh.server, tmp_path)
    keys = [s for s in secrets if "PRIVATE KEY" in s]
    assert len(keys) >= 3, "the CA key and one SVID key per sidecar"
    assert len(secrets) - len(keys) >= 3, "the admin token and a proxy token per sidecar"

    texts: dict[str, str] = {}
    with mesh.server.api() as api:
        for path in (
            "/v1/services",
            "/v1/services/a/instances",
            "/v1/proxies",
            "/v1/proxies/a-1",
            "/v1/proxies/a-1/config",
            "/v1/proxies/b-1/config",
            "/v1/ca",
            "/v1/ca/bundle",
            "/v1/tokens",
            "/v1/revision",
            "/v1/revisions/1",
            "/v1/resources",
            "/v1/graph",
            "/metrics",
            "/openapi.json",
        ):
            r = api.get(path)
            assert r.status_code == 200, (path, r.text)
            texts[path] = r.text
        secrets_served = api.get("/v1/proxies/a-1/config", params={"type": "secrets"}).json()
    served = secrets_served["resources"]["secrets"]
    assert {s["name"] for s in served} == {"default", "ROOTCA"}
    assert all(
        s["tls_certificate"]["private_key"] == "[redacted]"
        for s in served
        if s["name"] == "default"
    )
    env = {
        "INTERLOCK_TOKEN": mesh.server.admin_token,
        "INTERLOCK_CA_FILE": str(mesh.server.ca_file),
        "PATH": "/usr/bin:/bin",
    }
    for node in ("a-1", "b-1"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "interlock.cli",
                "proxy-config",
                node,
                "-o",
                "json",
                "--control-plane",
                mesh.server.api_url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        texts[f"proxy-config {node}"] = out.stdout + out.stderr
    for sidecar in (a, b):
        for path in ("/config_dump?include_eds", "/certs", "/stats"):
            texts[f"{sidecar.instance_id} {path}"] = httpx.get(
                f"{sidecar.admin_url}{path}", timeout=5
            ).text
        texts[f"log {sidecar.instance_id}"] = sidecar.log()
    texts["server log"] = mesh.server.log()

    for where, text in texts.items():
        for secret in secrets:
            for form in forms(secret):
                assert form not in text, f"a secret ({form[:12]}...) appears in {where}"
    assert mesh.server.admin_token_file.stat().st_mode & 0o777 == 0o600
    db = Path(mesh.server.db_url.removeprefix("sqlite:///"))
    assert db.with_name(db.name + ".kek").stat().st_mode & 0o777 == 0o600


def test_a_sidecar_needs_only_a_registration_token_for_its_service(
    mesh: Mesh, tmp_path: Path
) -> None:
    with mesh.server.api() as api:
        r = api.post("/v1/services/c/registration-token")
        assert r.status_code == 201
    token_file = tmp_path / "c-registration-token"
    token_file.write_text(r.json()["token"])
    token_file.chmod(0o600)
    app = mesh.app("c", "c-1")
    c = mesh.sidecar("c", "c-1", app, extra=["--token-file", str(token_file)])
    _, a = mesh.service("a", "a-1")
    wait_until(
        lambda: (
            httpx.get(
                f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "c"}, timeout=2
            ).json()["instance"]
            == "c-1"
        ),
        10,
        what="c registered with a registration token",
    )
    assert r.json()["token"] not in c.log()
