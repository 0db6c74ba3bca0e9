"""RequestAuthentication with ``jwksUri``, ``fromCookies`` and ``outputClaimToHeaders`` through
real Envoys. The issuer is the test's own: an HTTPS server on 127.0.0.1 with a CA of its own
(trusted by the control plane through ``--jwks-ca-file``), serving a key set and able to
rotate its signing key. The control plane refreshes key sets every second here
(``--jwks-refresh 1s``), so a rotation reaches the sidecars without re-applying the policy."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh
from tests.e2e.test_authorization import apply, draining, policy
from tests.support.jwks_issuer import ISSUER, RotatingIssuer, b64
from tests.support.mesh import ServerProcess, Sidecar, wait_until

pytestmark = pytest.mark.e2e

REFRESH_S = 1.0


class EchoApp:
    """An app that answers 200 with the request headers it received, as JSON."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[RotatingIssuer]:
    directory = tmp_path / "issuer"
    directory.mkdir()
    found = RotatingIssuer(directory)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def server(tmp_path: Path, issuer: RotatingIssuer) -> Iterator[ServerProcess]:
    """The control plane, trusting the issuer's CA and refreshing key sets every second."""
    srv = ServerProcess(
        tmp_path, extra=["--jwks-refresh", f"{REFRESH_S:g}s", "--jwks-ca-file", str(issuer.ca.pem)]
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def echo() -> Iterator[EchoApp]:
    app = EchoApp()
    try:
        yield app
    finally:
        app.close()


def get(
    caller: Sidecar, token: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    """``caller``'s app calls backend through its sidecar."""
    sent = {"Host": "backend", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.get(f"http://127.0.0.1:{caller.outbound_port}/", headers=sent, timeout=5)


def status(caller: Sidecar, token: str | None = None, **headers: str) -> int:
    return get(caller, token, headers).status_code


def proxy_problems(mesh: Mesh, node_id: str) -> list[dict[str, Any]]:
    with mesh.server.api() as api:
        problems: list[dict[str, Any]] = api.get(f"/v1/proxies/{node_id}").json()["problems"]
    return problems


def test_keys_from_jwks_uri_follow_the_issuers_rotation(
    mesh: Mesh, issuer: RotatingIssuer, echo: EchoApp
) -> None:
    backend = mesh.sidecar("backend", "backend-1", echo)
    _, frontend = mesh.service("frontend", "frontend-1")
    wait_until(lambda: status(frontend) == 200, 10, what="frontend -> backend")

    first = issuer.token(sub="alice")
    apply(
        mesh,
        policy(
            "RequestAuthentication",
            "backend-jwt",
            {
                "selector": {"matchLabels": {"app": "backend"}},
                "jwtRules": [{"issuer": ISSUER, "jwksUri": issuer.uri}],
            },
        ),
    )
    forged = first.rsplit(".", 1)[0] + "." + b64(b"not a signature")
    wait_until(lambda: status(frontend, forged) == 401, 10, what="forged token -> 401")
    wait_until(lambda: draining(backend) == 0, 10, what="old inbound filter chain drained")
    wait_until(lambda: status(frontend, first) == 200, 10, what="first key's token -> 200")
    assert status(frontend) == 200  # no token: allowed until a policy says otherwise
    assert proxy_problems(mesh, "backend-1") == []

    # The issuer rotates; nobody re-applies anything.
    issuer.rotate()
    second = issuer.token(sub="bob")
    rotated = time.monotonic()
    wait_until(lambda: status(frontend, second) == 200, 10, what="second key's token -> 200")
    took = time.monotonic() - rotated
    assert status(frontend, first) == 401
    # Within the refresh interval, plus a fetch and a push (and the second polls above).
    assert took < REFRESH_S + 4, took

    # The issuer fails: the last good keys are kept, and the policy says why.
    issuer.status = 503
    wait_until(
        lambda: any(
            p["resource"] == "RequestAuthentication/default/backend-jwt"
            and p["field"] == "spec.jwtRules[0].jwksUri"
            and "HTTP 503" in p["message"]
            and p["severity"] == "warning"
            for p in proxy_problems(mesh, "backend-1")
        ),
        10,
        what="a warning on the policy",
    )
    assert status(frontend, second) == 200
    assert status(frontend, first) == 401
    # Envoy holds the public keys, never a token.
    dump = json.dumps(backend.config_dump())
    assert issuer.kid in dump and second not in dump


def test_token_from_a_cookie_and_claims_in_headers(
    mesh: Mesh, issuer: RotatingIssuer, echo: EchoApp
) -> None:
    backend = mesh.sidecar("backend", "backend-1", echo)
    _, frontend = mesh.service("frontend", "frontend-1")
    wait_until(lambda: status(frontend) == 200, 10, what="frontend -> backend")
    apply(
        mesh,
        policy(
            "RequestAuthentication",
            "backend-jwt",
            {
                "selector": {"matchLabels": {"app": "backend"}},
                "jwtRules": [
                    {
                        "issuer": ISSUER,
                        "jwksUri": issuer.uri,
                        "fromCookies": ["session"],
                        "outputClaimToHeaders": [
                            {"header": "x-user", "claim": "sub"},
                            {"header": "x-tenant", "claim": "org.tenant"},
                        ],
                    }
                ],
            },
        ),
    )
    token = issuer.token(sub="alice", org={"tenant": "acme"})
    forged = token.rsplit(".", 1)[0] + "." + b64(b"not a signature")
    cookie = {"Cookie": f"theme=dark; session={forged}"}
    wait_until(lambda: status(frontend, **cookie) == 401, 10, what="forged cookie -> 401")
    wait_until(lambda: draining(backend) == 0, 10, what="old inbound filter chain drained")

    seen = get(frontend, headers={"Cookie": f"theme=dark; session={token}"})
    assert seen.status_code == 200, seen.text
    assert seen.json()["x-user"] == "alice"
    assert seen.json()["x-tenant"] == "acme"
    # Only the cookie is read: the same token in the Authorization header is not looked at.
    plain = get(frontend, forged)
    assert plain.status_code == 200 and "x-user" not in plain.json()
    # A client cannot write a claim's header itself: without a token it does not reach the app.
    spoofed = get(frontend, headers={"x-user": "mallory"})
    assert spoofed.status_code == 200 and "x-user" not in spoofed.json()
