"""The control plane's TLS as a user meets it: the bundle and fingerprint the server gives, the
CLI's --ca-file / --ca-fingerprint, and plain text only on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.support.mesh import ServerProcess, wait_until
from tests.support.net import free_ports

CLI = [sys.executable, "-m", "interlock.cli"]
IDENTITY = "spiffe://interlock.local/ns/interlock-system/sa/interlock"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env or dict(os.environ)
    )


def without_ca(**extra: str) -> dict[str, str]:
    """The test's environment without a CA bundle (a new host's shell), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_CA_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("tls"), extra=["--server-name", "cp.example"])
    srv.start()
    yield srv
    srv.stop()


def root_fingerprint(server: ServerProcess) -> str:
    (root,) = x509.load_pem_x509_certificates(server.ca_file.read_bytes())
    return root.fingerprint(hashes.SHA256()).hex()


def served_certificate(host: str, port: int) -> x509.Certificate:
    with socket.create_connection((host, port), timeout=5) as raw:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_the_server_says_where_the_bundle_is_and_which_root_to_pin(server: ServerProcess) -> None:
    log = server.log()
    fingerprint = root_fingerprint(server)
    assert str(server.ca_file) in log
    assert f"--ca-fingerprint sha256:{fingerprint}" in log
    assert oct(server.ca_file.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("port_of", ["api_port", "xds_port"])
def test_both_ports_serve_the_control_planes_certificate(
    server: ServerProcess, port_of: str
) -> None:
    cert = served_certificate("127.0.0.1", getattr(server, port_of))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [IDENTITY]
    dns = sans.get_values_for_type(x509.DNSName)
    assert "cp.example" in dns and "localhost" in dns and socket.gethostname().lower() in dns
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    # It chains to the bundle the server wrote, and verifies by name and by address.
    for host in ("localhost", "127.0.0.1"):
        context = ssl.create_default_context(cafile=str(server.ca_file))
        with (
            socket.create_connection(("127.0.0.1", getattr(server, port_of)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_a_client_without_the_bundle_is_told_how_to_get_it(server: ServerProcess) -> None:
    out = run("get", "services", "--control-plane", server.api_url, env=without_ca())
    assert out.returncode == 1
    assert "not trusted" in out.stderr and "--ca-file" in out.stderr
    assert "--ca-fingerprint" in out.stderr and "Traceback" not in out.stderr


def test_ca_file_from_the_flag_or_the_environment(server: ServerProcess) -> None:
    flag = run(
        "get",
        "services",
        "--control-plane",
        server.api_url,
        "--ca-file",
        str(server.ca_file),
        env=without_ca(),
    )
    assert flag.returncode == 0, flag.stderr
    env = run(
        "get",
        "services",
        "--control-plane",
        server.api_url,
        env=without_ca(INTERLOCK_CA_FILE=str(server.ca_file)),
    )
    assert env.returncode == 0, env.stderr
    missing = run(
        "get",
        "services",
        "--control-plane",
        server.api_url,
        "--ca-file",
        "/nonexistent/ca.pem",
        env=without_ca(),
    )
    assert missing.returncode == 1 and "--ca-file /nonexistent/ca.pem" in missing.stderr


def test_a_pinned_fingerprint_fetches_the_bundle_and_a_wrong_one_is_refused(
    server: ServerProcess, tmp_path: Path
) -> None:
    pin = f"sha256:{root_fingerprint(server)}"
    out = run(
        "get", "services", "--control-plane", server.api_url, "--ca-fingerprint", pin,
        env=without_ca(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    # `ca bundle` bootstraps a file a new host keeps: the same bundle the server wrote.
    written = tmp_path / "ca.pem"
    out = run(
        "ca", "bundle", "--control-plane", server.api_url, "--ca-fingerprint", pin.upper(),
        "--write", str(written), env=without_ca(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert written.read_bytes() == server.ca_file.read_bytes()

    wrong = "sha256:" + "ab" * 32
    out = run(
        "get", "services", "--control-plane", server.api_url, "--ca-fingerprint", wrong,
        env=without_ca(),
    )  # fmt: skip
    assert out.returncode == 1
    assert "no root with fingerprint" in out.stderr and pin in out.stderr

    out = run(
        "get", "services", "--control-plane", server.api_url, "--ca-fingerprint", "md5:00",
        env=without_ca(),
    )  # fmt: skip
    assert out.returncode == 2 and "--ca-fingerprint" in out.stderr


def test_a_pin_is_checked_against_the_certificate_the_server_proves(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A server that offers a bundle holding the pinned root, but a certificate from another
    CA, is refused: the bundle alone proves nothing."""
    impostor = ServerProcess(tmp_path / "impostor")
    impostor.workdir.mkdir()
    impostor.start()
    try:
        # Its bundle does not hold the real root: refused outright ...
        pin = f"sha256:{root_fingerprint(server)}"
        out = run(
            "get", "services", "--control-plane", impostor.api_url, "--ca-fingerprint", pin,
            env=without_ca(),
        )  # fmt: skip
        assert out.returncode == 1 and "no root with fingerprint" in out.stderr
        # ... and a file naming the wrong CA fails verification.
        out = run(
            "get", "services", "--control-plane", impostor.api_url,
            "--ca-file", str(server.ca_file), env=without_ca(),
        )  # fmt: skip
        assert out.returncode == 1 and "not trusted" in out.stderr
    finally:
        impostor.stop()


def test_ca_bundle_shows_the_roots(server: ServerProcess) -> None:
    out = run("ca", "bundle", "-o", "json", "--control-plane", server.api_url)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["control_plane_identity"] == IDENTITY
    assert [r["sha256"] for r in data["roots"]] == [root_fingerprint(server)]
    pem = run("ca", "bundle", "--control-plane", server.api_url)
    assert pem.stdout.encode() == server.ca_file.read_bytes()
    # The bundle is public: no token needed, even without --open-reads.
    r = httpx.get(f"{server.api_url}/v1/ca/bundle", verify=server.tls())
    assert r.status_code == 200 and r.headers["etag"] == f'"{data["version"]}"'


@pytest.mark.parametrize(
    ("api", "xds"),
    [("0.0.0.0:{}", "127.0.0.1:{}"), ("127.0.0.1:{}", "0.0.0.0:{}")],
)
def test_plaintext_is_refused_off_loopback(tmp_path: Path, api: str, xds: str) -> None:
    api_port, xds_port = free_ports(2)
    out = run(
        "server",
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        "--api",
        api.format(api_port),
        "--xds",
        xds.format(xds_port),
        "--plaintext",
    )
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert "--plaintext" in text and "loopback" in text and "0.0.0.0" in text
    assert "Traceback" not in text
    assert not (tmp_path / "x.db").exists(), "nothing may be created before the refusal"


def test_plaintext_on_loopback_serves_http(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra=["--plaintext"])
    server.start()
    try:
        url = f"http://127.0.0.1:{server.api_port}"
        assert "PLAIN TEXT" in server.log()
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, 5)
        out = run("get", "services", "--control-plane", url)
        assert out.returncode == 0, out.stderr
        assert re.search(r"No resources found", out.stdout)
    finally:
        server.stop()
