"""A JWT issuer of the test's own: an HTTP(S) server on 127.0.0.1 (with a CA of its own for
HTTPS) serving the public key set of its current RSA key at ``/keys.json``, able to rotate the
key, fail, or answer something else. It signs RS256 tokens; private keys never leave the test."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.tls_server import LocalCa

ISSUER = "https://issuer.test"


def b64(data: bytes) -> str:
    """Base64url without padding (JOSE's encoding)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class RotatingIssuer:
    """An HTTPS server on 127.0.0.1 (plain HTTP with ``tls=False``) serving the public key set
    of its current RSA key at ``/keys.json``; :meth:`rotate` makes a new key (and kid).
    ``status`` is the status it answers with, ``body`` (when set) what it answers instead of
    the key set, ``headers`` extra response headers. Stop it with :meth:`close`."""

    def __init__(self, directory: Path, *, tls: bool = True) -> None:
        self.ca = LocalCa(directory, "issuer CA")
        self.generation = 0
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.status = 200
        self.body: bytes | None = None
        self.headers: dict[str, str] = {}
        self.fetches = 0
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                body = issuer.body if issuer.body is not None else issuer.jwks().encode()
                status = issuer.status
                if self.path != "/keys.json":
                    body, status = b"{}", 404
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for name, value in issuer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        port = self.httpd.server_address[1]
        if tls:
            identity = self.ca.issue("localhost", dns=["localhost"])
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(identity.certificate, identity.key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.uri = f"https://localhost:{port}/keys.json"
        else:
            self.uri = f"http://127.0.0.1:{port}/keys.json"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    @property
    def kid(self) -> str:
        return f"key-{self.generation}"

    def jwks(self) -> str:
        return self.public_jwks(self.key, self.kid)

    @staticmethod
    def public_jwks(private: rsa.RSAPrivateKey, kid: str = "k1") -> str:
        """The key set of ``private``'s public key."""
        numbers = private.public_key().public_numbers()

        def number(value: int) -> str:
            return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        key = {"kty": "RSA", "alg": "RS256", "kid": kid, "n": number(numbers.n), "e": "AQAB"}
        return json.dumps({"keys": [key]})

    def rotate(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.generation += 1

    def token(self, **claims: Any) -> str:
        claims = {"iss": ISSUER, "exp": int(time.time()) + 3600, **claims}
        header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = b64(json.dumps(claims).encode())
        signature = self.key.sign(
            f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{header}.{payload}.{b64(signature)}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
