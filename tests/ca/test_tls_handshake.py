"""Two SVIDs complete a mutual-TLS handshake under OpenSSL's strict X.509 checks.

A second TLS stack (Python's ``ssl``, i.e. OpenSSL) validates the issued chains both ways over
a socket pair, in-process. Certificates are issued on the real clock because OpenSSL checks
validity against the system time; nothing here measures time.
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from interlock.ca import CertificateAuthority, SpiffeId, Svid
from tests.ca.conftest import TRUST_DOMAIN, operator_cert

SOCKET_TIMEOUT_SECONDS = 30  # a safety net against a hung handshake, not a measurement
WEB = SpiffeId.for_service(TRUST_DOMAIN, "default", "web")
CART = SpiffeId.for_service(TRUST_DOMAIN, "shop", "cart")


def real_clock() -> datetime:
    return datetime.now(UTC)


def context(side: ssl._SSLMethod, svid: Svid, bundle: bytes, tmp_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(side)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = False  # SVIDs name workloads by URI SAN, not DNS
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_verify_locations(cadata=bundle.decode())
    assert svid.key_pem is not None
    chain = tmp_path / f"{svid.serial}.chain.pem"
    key = tmp_path / f"{svid.serial}.key.pem"
    chain.write_bytes(svid.certificate_chain_pem())
    key.write_bytes(svid.key_pem)
    ctx.load_cert_chain(str(chain), str(key))
    return ctx


def peer_uri(tls: ssl.SSLSocket) -> str:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    [uri] = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uri


def handshake(
    server: Svid, client: Svid, bundle: bytes, tmp_path: Path
) -> tuple[str | BaseException, str]:
    """(what the server saw of the client, what the client saw of the server)."""
    server_ctx = context(ssl.PROTOCOL_TLS_SERVER, server, bundle, tmp_path)
    client_ctx = context(ssl.PROTOCOL_TLS_CLIENT, client, bundle, tmp_path)
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(SOCKET_TIMEOUT_SECONDS)
    client_sock.settimeout(SOCKET_TIMEOUT_SECONDS)
    seen_by_server: list[str | BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                seen_by_server.append(peer_uri(tls))
                tls.sendall(b"ok")
        except BaseException as exc:  # reported to the test thread
            seen_by_server.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock) as tls:
            seen_by_client = peer_uri(tls)
            assert tls.recv(2) == b"ok"
    finally:
        thread.join(SOCKET_TIMEOUT_SECONDS)
    return seen_by_server[0], seen_by_client


def test_two_svids_of_a_created_root_authenticate_each_other(tmp_path: Path) -> None:
    ca = CertificateAuthority.create_root(TRUST_DOMAIN, real_clock)
    seen_by_server, seen_by_client = handshake(
        ca.issue_svid(WEB), ca.issue_svid(CART), ca.bundle_pem(), tmp_path
    )
    assert (seen_by_server, seen_by_client) == (str(CART), str(WEB))


def test_svids_of_an_operator_intermediate_authenticate_each_other(tmp_path: Path) -> None:
    year_ago = real_clock() - timedelta(days=365)
    root = operator_cert("Example Root", not_before=year_ago)
    issuing = operator_cert("Example Mesh CA", issuer=root, path_length=0, not_before=year_ago)
    ca = CertificateAuthority.from_pem(
        issuing.cert_pem, issuing.key_pem, root.cert_pem, clock=real_clock
    )
    seen_by_server, seen_by_client = handshake(
        ca.issue_svid(WEB), ca.issue_svid(CART), ca.bundle_pem(), tmp_path
    )
    assert (seen_by_server, seen_by_client) == (str(CART), str(WEB))


def test_during_rotation_old_and_new_svids_authenticate_each_other(tmp_path: Path) -> None:
    old = CertificateAuthority.create_root(TRUST_DOMAIN, real_clock)
    new = CertificateAuthority.create_root(TRUST_DOMAIN, real_clock)
    bundle = old.bundle_pem() + new.bundle_pem()
    seen_by_server, seen_by_client = handshake(
        old.issue_svid(WEB), new.issue_svid(CART), bundle, tmp_path
    )
    assert (seen_by_server, seen_by_client) == (str(CART), str(WEB))


def test_an_svid_of_another_root_is_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.create_root(TRUST_DOMAIN, real_clock)
    stranger = CertificateAuthority.create_root(TRUST_DOMAIN, real_clock)
    with pytest.raises(ssl.SSLError):
        handshake(ca.issue_svid(WEB), stranger.issue_svid(CART), ca.bundle_pem(), tmp_path)
