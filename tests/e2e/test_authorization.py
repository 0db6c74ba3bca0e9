"""AuthorizationPolicy and RequestAuthentication with real Envoys: sidecars call each other over
mTLS (PERMISSIVE by default), the callee's sidecar decides by the caller's SPIFFE ID, the
request (method, path) and the end user's JWT — signed here with a key made by the test."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.e2e.conftest import Mesh
from tests.support import policies as gateway_policies
from tests.support.gateway import GatewayProcess
from tests.support.mesh import Sidecar, running, wait_until

pytestmark = pytest.mark.e2e

FRONTEND = "spiffe://interlock.local/ns/default/sa/frontend"
ISSUER = "https://auth.example.com"


def policy(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def apply(mesh: Mesh, *documents: dict[str, Any]) -> None:
    """Apply the documents and wait until every proxy ACKed the revision."""
    with mesh.server.api() as api:
        r = api.post("/v1/resources", json=list(documents))
        assert r.status_code == 200, r.text
        revision = r.json()["revision"]
        report = api.get(f"/v1/revisions/{revision}", params={"wait": 15}, timeout=20).json()
    assert report["proxies"]["complete"] and report["proxies"]["nacked"] == 0, report


def call(caller: Sidecar, path: str, method: str = "GET", token: str | None = None) -> int:
    """``caller``'s app calls backend through its sidecar: the status it gets."""
    headers = {"Host": "backend"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    r = httpx.request(
        method, f"http://127.0.0.1:{caller.outbound_port}{path}", headers=headers, timeout=5
    )
    return r.status_code


def draining(sidecar: Sidecar) -> int:
    """How many filter chains of ``sidecar``'s Envoy are still draining after a listener change."""
    return sidecar.stats().get("listener_manager.total_filter_chains_draining", 0)


def test_allow_and_deny_by_peer_identity_method_and_path(mesh: Mesh) -> None:
    backend_app, backend = mesh.service("backend", "backend-1")
    _, frontend = mesh.service("frontend", "frontend-1")
    _, other = mesh.service("other", "other-1")
    wait_until(lambda: call(frontend, "/api/x") == 200, 10, what="frontend -> backend")
    wait_until(lambda: call(other, "/api/x") == 200, 10, what="other -> backend")

    # Only frontend may GET /api/*.
    apply(
        mesh,
        policy(
            "AuthorizationPolicy",
            "backend-api",
            {
                "selector": {"matchLabels": {"app": "backend"}},
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [
                            {"source": {"principals": ["cluster.local/ns/default/sa/frontend"]}}
                        ],
                        "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*"]}}],
                    }
                ],
            },
        ),
    )
    assert call(frontend, "/api/x") == 200
    seen_as = httpx.get(
        f"http://127.0.0.1:{frontend.outbound_port}/api/x", headers={"Host": "backend"}
    )
    assert f"URI={FRONTEND}" in seen_as.json()["xfcc"]  # the identity the rule matched, over mTLS
    assert call(other, "/api/x") == 403
    assert call(frontend, "/api/x", method="POST") == 403
    assert call(frontend, "/other") == 403
    # A plain-text caller has no principal: it matches no rule.
    direct = httpx.get(f"http://127.0.0.1:{backend.inbound_port}/api/x", timeout=5)
    assert direct.status_code == 403
    # Refused requests never reached the app.
    assert {path for _, path in backend_app.hits} <= {"/api/x"}

    # DENY is evaluated before ALLOW.
    apply(
        mesh,
        policy(
            "AuthorizationPolicy",
            "no-secrets",
            {
                "action": "DENY",
                "rules": [{"to": [{"operation": {"methods": ["GET"], "paths": ["/api/secret"]}}]}],
            },
        ),
    )
    assert call(frontend, "/api/secret") == 403
    assert call(frontend, "/api/x") == 200
    stats = backend.stats()
    assert any(k.endswith("rbac.deny.denied") and v >= 1 for k, v in stats.items()), stats


# --- JWT ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class Issuer:
    """An RSA key pair and the RS256 tokens it signs (the private key never leaves the test)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        key = {
            "kty": "RSA",
            "alg": "RS256",
            "kid": "test",
            "n": _int(numbers.n),
            "e": _int(numbers.e),
        }
        return json.dumps({"keys": [key]})

    def token(self, **claims: Any) -> str:
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "test"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{_b64(signature)}"


def test_request_authentication_and_request_principals(mesh: Mesh) -> None:
    issuer = Issuer()
    now = int(time.time())
    valid = issuer.token(iss=ISSUER, sub="alice", exp=now + 3600)
    expired = issuer.token(iss=ISSUER, sub="alice", exp=now - 3600)
    header, _, signature = valid.split(".")
    tampered = ".".join(
        [
            header,
            _b64(json.dumps({"iss": ISSUER, "sub": "mallory", "exp": now + 3600}).encode()),
            signature,
        ]
    )

    _, backend = mesh.service("backend", "backend-1")
    _, frontend = mesh.service("frontend", "frontend-1")
    wait_until(lambda: call(frontend, "/") == 200, 10, what="frontend -> backend")

    apply(
        mesh,
        policy(
            "RequestAuthentication",
            "backend-jwt",
            {
                "selector": {"matchLabels": {"app": "backend"}},
                "jwtRules": [{"issuer": ISSUER, "jwks": issuer.jwks()}],
            },
        ),
    )
    # The providers are in the listener: its old filter chain (no JWT filter) drains first.
    wait_until(lambda: call(frontend, "/", token=tampered) == 401, 10, what="tampered -> 401")
    wait_until(lambda: draining(backend) == 0, 10, what="old inbound filter chain drained")
    assert call(frontend, "/", token=valid) == 200
    assert call(frontend, "/", token=expired) == 401
    assert call(frontend, "/") == 200  # no token: allowed until a policy says otherwise

    apply(
        mesh,
        policy(
            "AuthorizationPolicy",
            "users-only",
            {
                "selector": {"matchLabels": {"app": "backend"}},
                "rules": [{"from": [{"source": {"requestPrincipals": [f"{ISSUER}/*"]}}]}],
            },
        ),
    )
    assert call(frontend, "/") == 403
    assert call(frontend, "/", token=valid) == 200
    assert call(frontend, "/", token=tampered) == 401
    # Envoy holds the public key set, never a token.
    dump = json.dumps(backend.config_dump())
    assert ISSUER in dump and valid not in dump


# --- dry run --------------------------------------------------------------------------------


def _inbound_lines(sidecar: Sidecar, path: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in sidecar.log().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("direction") == "inbound" and e.get("path") == path]


def test_a_dry_run_policy_denies_nothing_and_says_what_it_would_have_denied(mesh: Mesh) -> None:
    """Istio's ``istio.io/dry-run: "true"``: the policy is evaluated as Envoy RBAC shadow rules.
    Every request still succeeds; the sidecar's stats count what the policy would have denied
    and its access log names the rule."""
    backend_app, backend = mesh.service("backend", "backend-1")
    _, frontend = mesh.service("frontend", "frontend-1")
    wait_until(lambda: call(frontend, "/api/x") == 200, 10, what="frontend -> backend")

    deny_all = policy("AuthorizationPolicy", "deny-all", {"action": "DENY", "rules": [{}]})
    deny_all["metadata"]["annotations"] = {"istio.io/dry-run": "true"}
    only_admins = policy(
        "AuthorizationPolicy",
        "only-admins",
        {"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]},
    )
    only_admins["metadata"]["annotations"] = {"istio.io/dry-run": "true"}
    apply(mesh, deny_all, only_admins)

    before = len(backend_app.hits)
    assert [call(frontend, "/api/dry") for _ in range(20)] == [200] * 20
    assert len(backend_app.hits) - before == 20  # every request reached the app

    def shadow(action: str, result: str) -> int:
        stats = backend.stats()
        return sum(v for k, v in stats.items() if k.endswith(f"rbac.{action}.shadow_{result}"))

    wait_until(lambda: shadow("deny", "denied") >= 20, 5, what="20 shadow denials counted")
    assert shadow("allow", "denied") >= 20  # no dry-run ALLOW rule matches /api/dry
    # Envoy flushes its stdout access log every 10 s (--file-flush-interval-msec).
    wait_until(lambda: len(_inbound_lines(backend, "/api/dry")) >= 20, 15, what="access log")
    line = _inbound_lines(backend, "/api/dry")[-1]
    assert line["status"] == 200
    assert line["dry_run_deny"] == "denied"
    assert line["dry_run_deny_policy"] == "default/deny-all/rules[0]"
    assert line["dry_run_allow"] == "denied"

    # Enforcing it is one annotation away.
    deny_all["metadata"]["annotations"] = {"istio.io/dry-run": "false"}
    apply(mesh, deny_all)
    assert call(frontend, "/api/dry") == 403


# --- tcp workloads --------------------------------------------------------------------------


def tcp_call(caller_address: str) -> int | str:
    """An HTTP request carried as bytes through the caller's outbound tcp listener for ``db``
    (port 8080) and the db sidecar's tcp proxy: the status, or how the connection failed."""
    try:
        return httpx.get(f"http://{caller_address}:8080/q", timeout=3).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def test_policies_on_a_tcp_service_guard_its_connections(mesh: Mesh) -> None:
    """A tcp service's sidecar enforces AuthorizationPolicy on connections (RBAC network
    filter): by peer identity; and an ALLOW rule that needs an HTTP request matches nothing."""
    # Each caller's tcp listener for db binds <its outbound address>:8080; the addresses
    # differ per variant, which may run at once on another worker.
    frontend, other = ("127.0.0.71", "127.0.0.72")
    if mesh.xds_protocol != "delta":
        frontend, other = ("127.0.0.73", "127.0.0.74")
    db_app = mesh.app("db", "db-1")
    db = mesh.sidecar("db", "db-1", db_app, extra=["--protocol", "tcp"])
    mesh.service("frontend", "frontend-1", extra=["--outbound-address", frontend])
    mesh.service("other", "other-1", extra=["--outbound-address", other])
    for address in (frontend, other):
        wait_until(lambda a=address: tcp_call(a) == 200, 15, what=f"{address} -> db over tcp")

    only_frontend = {
        "selector": {"matchLabels": {"app": "db"}},
        "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/frontend"]}}]}],
    }
    apply(mesh, policy("AuthorizationPolicy", "db-clients", only_frontend))
    # The filters are in db's listener: the old one (no RBAC) drains after the update, and
    # until it is gone a new connection may still be accepted by it.
    wait_until(lambda: draining(db) == 0, 10, what="db's old listener drained")
    wait_until(lambda: tcp_call(other) != 200, 10, what="other refused")
    assert [tcp_call(frontend) for _ in range(5)] == [200] * 5
    assert [tcp_call(other) for _ in range(3)].count(200) == 0
    stats = db.stats()
    assert any(k.endswith(".allow.rbac.denied") and v >= 1 for k, v in stats.items()), stats

    # An ALLOW rule on methods cannot hold on tcp: it matches nothing (Istio), and says so.
    by_method = {
        "selector": {"matchLabels": {"app": "db"}},
        "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}],
    }
    apply(mesh, policy("AuthorizationPolicy", "db-clients", by_method))
    wait_until(lambda: draining(db) == 0, 10, what="db's old listener drained")
    wait_until(lambda: tcp_call(frontend) != 200, 10, what="frontend refused")

    # The control plane says so, in the db proxy's problems.
    def warned() -> list[str]:
        with mesh.server.api() as api:
            proxy = api.get("/v1/proxies/db-1").json()
        return [
            p["message"]
            for p in proxy["problems"]
            if (p["resource"], p["field"], p["severity"])
            == ("AuthorizationPolicy/default/db-clients", "spec.rules[0]", "warning")
        ]

    (message,) = wait_until(warned, 5, what="the warning in the db proxy's problems")
    assert "to[0].operation.methods" in message and "matches nothing" in message


# --- gateways -------------------------------------------------------------------------------


def test_a_gateway_enforces_request_authentication_and_authorization(
    mesh: Mesh, tmp_path: Path
) -> None:
    """As at Istio's ingress gateway: policies selecting the gateway's workload check the
    external client's JWT and decide by path and source before any route is taken."""
    issuer = Issuer()
    valid = issuer.token(iss=ISSUER, sub="alice", exp=int(time.time()) + 3600)
    mesh.service("shop", "shop-1")
    gateway = GatewayProcess("edge", [80], mesh.server, tmp_path, mesh.xds_protocol)
    with running(gateway.start()):
        gateway_policies.apply(
            mesh.server,
            gateway_policies.doc(
                "Gateway",
                "edge-gw",
                {
                    "selector": {"gateway": "edge"},
                    "servers": [
                        {
                            "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                            "hosts": ["shop.example.com"],
                        }
                    ],
                },
            ),
            gateway_policies.doc(
                "VirtualService",
                "shop",
                {
                    "hosts": ["shop.example.com"],
                    "gateways": ["edge-gw"],
                    "http": [{"route": [{"destination": {"host": "shop"}}]}],
                },
            ),
        )
        gateway.wait_listening("gateway|80")

        def status(path: str, token: str | None = None) -> int:
            headers = {"Host": "shop.example.com"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            url = f"http://127.0.0.1:{gateway.listen[80]}{path}"
            return httpx.get(url, headers=headers, timeout=5).status_code

        wait_until(lambda: status("/") == 200, 10, what="the gateway routes to shop")
        on_gateway = {"selector": {"matchLabels": {"app": "edge"}}}
        apply(
            mesh,
            policy(
                "RequestAuthentication",
                "edge-jwt",
                {**on_gateway, "jwtRules": [{"issuer": ISSUER, "jwks": issuer.jwks()}]},
            ),
            policy(
                "AuthorizationPolicy",
                "no-admin",
                {
                    **on_gateway,
                    "action": "DENY",
                    "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}],
                },
            ),
            policy(
                "AuthorizationPolicy",
                "users-only",
                {
                    **on_gateway,
                    "rules": [{"from": [{"source": {"requestPrincipals": [f"{ISSUER}/*"]}}]}],
                },
            ),
        )
        wait_until(lambda: status("/", valid) == 200 and status("/") == 403, 10, what="enforced")
        assert status("/", "not.a.token") == 401  # an invalid token is refused by jwt_authn
        assert status("/admin/users", valid) == 403  # DENY before ALLOW
        assert status("/orders", valid) == 200
