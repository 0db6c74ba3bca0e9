"""The capture and its reader on a known exchange between two test hosts: a plain HTTP request
carrying a token and answered with a private key, and the same exchange over TLS (Python's
ssl). Captured on the bridge between them, the reader must see the first in clear with every
secret, and the second as TLS both ways with none; the target assertion must fail on the first
and pass on the second."""

from __future__ import annotations

import datetime
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.hosts import HostNetwork, namespaces_unavailable
from tests.support.pcap import Analysis, Capture, analyze, assert_encrypted_wire, install_tcpdump

# Test hosts share the 198.18.0.0/24 subnet: one test at a time makes them (pytest-xdist).
pytestmark = pytest.mark.xdist_group("netns")

SERVER = r"""
import http.server, ssl, sys, threading
key_pem = open(sys.argv[1]).read()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = key_pem.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

plain = http.server.HTTPServer(("0.0.0.0", 8080), Handler)
tls = http.server.HTTPServer(("0.0.0.0", 8443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[1])
tls.socket = context.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=plain.serve_forever, daemon=True).start()
print("ready", flush=True)
tls.serve_forever()
"""

CLIENT = r"""
import http.client, ssl, sys, time
token, ca = sys.argv[1], sys.argv[2]
context = ssl.create_default_context(cafile=ca)
for attempt in range(100):
    try:
        for conn in (http.client.HTTPConnection("server", 8080, timeout=5),
                     http.client.HTTPSConnection("server", 8443, timeout=5, context=context)):
            conn.request("GET", "/", headers={"Authorization": "Bearer " + token})
            assert b"PRIVATE KEY-----" in conn.getresponse().read()
            conn.close()
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
print("done")
"""


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("server")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture(scope="module")
def tcpdump() -> None:
    if reason := namespaces_unavailable():
        pytest.skip(reason)
    if reason := install_tcpdump():
        pytest.skip(reason)


@pytest.fixture
def network() -> Iterator[HostNetwork]:
    with HostNetwork() as net:
        yield net


@pytest.mark.timeout(600)  # the first run may install tcpdump (apt-get)
def test_the_reader_sees_secrets_in_clear_text_and_none_in_tls(
    tcpdump: None, network: HostNetwork, tmp_path: Path
) -> None:
    server, client = network.add_host("server"), network.add_host("client")
    network.write_hosts_files()
    key, cert = self_signed(tmp_path)
    token = "ila_" + secrets.token_urlsafe(32)
    with Capture(network.bridge, tmp_path / "bridge.pcap"):
        proc = subprocess.Popen(
            server.exec_argv([sys.executable, "-c", SERVER, str(key), str(cert)]),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            out = subprocess.run(
                client.exec_argv([sys.executable, "-c", CLIENT, token, str(cert)]),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.stdout.strip() == "done", out.stderr
        finally:
            proc.kill()
            proc.wait(5)
    analysis = analyze(tmp_path / "bridge.pcap", [token.encode()])

    assert analysis.problems == []
    clear = [c for c in analysis.connections if c.server[1] == 8080]
    tls = [c for c in analysis.connections if c.server[1] == 8443]
    assert len(clear) == len(tls) == 1, analysis.summary()
    assert clear[0].client == (client.address, clear[0].client[1])
    assert clear[0].server == (server.address, 8080)
    assert (clear[0].client_tls, clear[0].server_tls) == (False, False)
    assert (tls[0].client_tls, tls[0].server_tls) == (True, True)
    found = {(f.kind, f.direction, f.connection.server[1]) for f in analysis.findings}
    assert found == {
        ("Interlock token", "client", 8080),
        ("given secret #1", "client", 8080),
        ("PEM private key", "server", 8080),
    }, analysis.summary()

    with pytest.raises(AssertionError, match="not TLS"):
        assert_encrypted_wire(analysis)
    only_tls = Analysis(tls, [f for f in analysis.findings if f.connection in tls], [])
    assert_encrypted_wire(only_tls)
