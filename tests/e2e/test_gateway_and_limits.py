"""Ingress, egress and rate limits with real Envoy: an external client reaches a service
through `interlock gateway` over HTTP and TLS; sidecars reach hosts outside the registry
through ServiceEntries (static endpoints with subsets, and DNS); a RateLimit answers 429 to
the excess of a burst, for a whole service and for one route."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import http.client
import json
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import Mesh
from tests.support.gateway import GatewayProcess
from tests.support.mesh import UpstreamApp, running, wait_until
from tests.support.policies import apply, doc, landings

pytestmark = pytest.mark.e2e

OWN = "interlock.io/v1"


def certificates(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``host``: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def https_get(port: int, host: str, ca: Path, path: str = "/") -> tuple[int, dict[str, str]]:
    """GET ``https://host{path}`` from 127.0.0.1:``port`` (SNI and Host: ``host``)."""
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection = http.client.HTTPConnection(host, port, timeout=5)
    connection.sock = context.wrap_socket(raw, server_hostname=host)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_an_external_client_reaches_a_service_through_the_gateway_over_http_and_tls(
    mesh: Mesh, tmp_path: Path
) -> None:
    mesh.service("shop", "shop-1")
    ca, cert, key = certificates(tmp_path, "shop.example.com")
    gateway = GatewayProcess("edge", [80, 443], mesh.server, tmp_path, mesh.xds_protocol)
    with running(gateway.start()):
        check_gateway(mesh, gateway, ca, cert, key)
        # A sidecar calling the gateway by name reaches it in plain text (its listeners serve
        # the Gateway's servers, not mesh mTLS): the gateway's own 404 for a host no
        # VirtualService binds, not the 503 of a failed TLS handshake.
        with mesh.server.api() as api:
            assert api.get("/v1/services/edge/instances/edge").json()["sidecar"] is False
        _, caller = mesh.service("a", "a-1")
        stat = "http.gateway_80.downstream_rq_4xx"

        def answered() -> int:
            text = httpx.get(f"http://127.0.0.1:{gateway.admin_port}/stats", timeout=2).text
            for line in text.splitlines():
                name, _, value = line.partition(": ")
                if name == stat:
                    return int(value)
            return 0

        before = answered()
        answer = httpx.get(
            f"http://127.0.0.1:{caller.outbound_port}/", headers={"Host": "edge"}, timeout=5
        )
        assert answer.status_code == 404, answer.text
        assert answered() == before + 1


def check_gateway(mesh: Mesh, gateway: GatewayProcess, ca: Path, cert: Path, key: Path) -> None:
    apply(
        mesh.server,
        doc(
            "Gateway",
            "edge-gw",
            {
                "selector": {"gateway": "edge"},
                "servers": [
                    {
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        "hosts": ["shop.example.com"],
                    },
                    {
                        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                        "hosts": ["shop.example.com"],
                        "tls": {
                            "mode": "SIMPLE",
                            "serverCertificate": str(cert),
                            "privateKey": str(key),
                        },
                    },
                ],
            },
        ),
        doc(
            "VirtualService",
            "shop",
            {
                "hosts": ["shop.example.com"],
                "gateways": ["edge-gw"],
                "http": [{"route": [{"destination": {"host": "shop"}}]}],
            },
        ),
    )
    gateway.wait_listening("gateway|80", "gateway|443")

    plain = landings(gateway.listen[80], "shop.example.com", 5, path="/in")
    assert plain == {"shop-1": 5}
    assert landings(gateway.listen[80], "other.example.com", 1) == {"status 404": 1}
    status, body = https_get(gateway.listen[443], "shop.example.com", ca, "/secure")
    assert status == 200 and body["instance"] == "shop-1" and body["path"] == "/secure"


def test_sidecars_reach_external_hosts_through_service_entries(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    stable = UpstreamApp("payments", "payments-v1")
    canary = UpstreamApp("payments", "payments-v2")
    dns = UpstreamApp("weather", "weather-1")
    mesh.apps += [stable, canary, dns]
    apply(
        mesh.server,
        doc(
            "ServiceEntry",
            "payments",
            {
                "hosts": ["api.payments.test"],
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                "resolution": "STATIC",
                "endpoints": [
                    {"address": "127.0.0.1", "ports": {"http": app.port}, "labels": {"v": v}}
                    for app, v in ((stable, "1"), (canary, "2"))
                ],
            },
        ),
        doc(
            "DestinationRule",
            "payments",
            {
                "host": "api.payments.test",
                "subsets": [
                    {"name": "v1", "labels": {"v": "1"}},
                    {"name": "v2", "labels": {"v": "2"}},
                ],
            },
        ),
        doc(
            "VirtualService",
            "payments",
            {
                "hosts": ["api.payments.test"],
                "http": [
                    {
                        "match": [{"headers": {"x-canary": {}}}],
                        "route": [{"destination": {"host": "api.payments.test", "subset": "v2"}}],
                    },
                    {"route": [{"destination": {"host": "api.payments.test", "subset": "v1"}}]},
                ],
            },
        ),
        doc(
            "ServiceEntry",
            "weather",
            {
                "hosts": ["weather.test"],
                "ports": [{"number": dns.port, "name": "http", "protocol": "HTTP"}],
                "resolution": "DNS",
                "endpoints": [{"address": "localhost"}],
            },
        ),
    )

    assert landings(a.outbound_port, "api.payments.test", 10) == {"payments-v1": 10}
    canaries = landings(a.outbound_port, "api.payments.test", 10, headers={"x-canary": "1"})
    assert canaries == {"payments-v2": 10}
    wait_until(  # a STRICT_DNS cluster answers once its first resolution is done
        lambda: landings(a.outbound_port, f"weather.test:{dns.port}", 1) == {"weather-1": 1},
        5,
        what="weather.test resolved",
    )


def burst(port: int, host: str, path: str, count: int) -> list[httpx.Response]:
    """``count`` concurrent GETs through a proxy's listener."""
    with (
        httpx.Client(timeout=5, limits=httpx.Limits(max_connections=count)) as client,
        concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool,
    ):
        url = f"http://127.0.0.1:{port}{path}"
        return list(pool.map(lambda _: client.get(url, headers={"Host": host}), range(count)))


def test_a_burst_beyond_the_rate_limit_gets_429_for_the_excess(mesh: Mesh) -> None:
    _, a = mesh.service("a", "a-1")
    mesh.service("b", "b-1")
    bucket = {"maxTokens": 5, "tokensPerFill": 5, "fillInterval": "1s"}  # 5 requests/s
    apply(
        mesh.server,
        doc(
            "RateLimit",
            "b",
            {
                "target": {"service": "b"},
                "tokenBucket": bucket,
                "responseHeaders": {"x-rate-limited": "true"},
            },
            OWN,
        ),
    )

    answers = burst(a.outbound_port, "b", "/", 50)
    ok = [r for r in answers if r.status_code == 200]
    limited = [r for r in answers if r.status_code == 429]
    assert len(ok) + len(limited) == 50
    assert 5 <= len(ok) <= 10, [r.status_code for r in answers]
    assert all(r.headers.get("x-rate-limited") == "true" for r in limited)

    # One route only: the rest of the service is not limited.
    apply(
        mesh.server,
        doc(
            "RateLimit",
            "b",
            {
                "target": {"service": "b", "routes": [{"pathPrefix": "/limited/"}]},
                "tokenBucket": bucket,
            },
            OWN,
        ),
    )
    limited_route = [r.status_code for r in burst(a.outbound_port, "b", "/limited/x", 50)]
    assert 5 <= limited_route.count(200) <= 10 and limited_route.count(429) >= 40
    assert [r.status_code for r in burst(a.outbound_port, "b", "/free", 50)] == [200] * 50
