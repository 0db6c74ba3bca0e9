"""Proxy tokens (issue, list, revoke, revoked with their instance) and the CA endpoints (state
and the three rotation steps), on a real store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from interlock.api import create_app
from interlock.api.routers.ca import CaAdmin
from interlock.ca import CertificateAuthority, RotationState, private_key_to_pem
from interlock.ca.storage import seal_ca_key
from interlock.model.identity import TokenRole, token_hash
from interlock.store import Store
from tests.api.problems import assert_problem

KEK = bytes(range(32))


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def ca_client(store: Store) -> Iterator[TestClient]:
    ca = CertificateAuthority.create_root("interlock.local", now)
    key_id, sealed = seal_ca_key(ca, KEK)
    store.security.create_ca(
        "interlock.local", RotationState.initial(ca).to_json(), {key_id: sealed}
    )
    admin = CaAdmin(KEK, "interlock.local", now, 3600.0)
    yield TestClient(create_app(store, ca_admin=admin))


def register(client: TestClient) -> None:
    assert client.put("/v1/services/b", json={"port": 8080, "namespace": "shop"}).is_success
    body = {"address": "127.0.0.1", "port": 15006}
    assert client.put("/v1/services/b/instances/b-1", json=body).is_success


def test_a_proxy_token_is_bound_to_a_registered_instance_and_stored_hashed(
    ca_client: TestClient, store: Store
) -> None:
    register(ca_client)
    r = ca_client.post("/v1/services/b/instances/b-1/token")
    assert r.status_code == 201
    assert r.headers["Cache-Control"] == "no-store"
    issued = r.json()
    assert issued["token"].startswith("ilp_")
    assert issued["spiffe_id"] == "spiffe://interlock.local/ns/shop/sa/b"
    assert (issued["service"], issued["namespace"], issued["instance_id"]) == ("b", "shop", "b-1")
    stored = store.security.find_token(token_hash(issued["token"]))
    assert stored is not None and stored.role is TokenRole.PROXY
    listed = ca_client.get("/v1/tokens").text
    assert issued["token_id"] in listed and issued["token"] not in listed
    assert_problem(ca_client.post("/v1/services/b/instances/b-9/token"), 404, "path.instance_id")


def test_revoking_a_token_and_deleting_its_instance(ca_client: TestClient, store: Store) -> None:
    register(ca_client)
    first = ca_client.post("/v1/services/b/instances/b-1/token").json()
    second = ca_client.post("/v1/services/b/instances/b-1/token").json()
    r = ca_client.delete(f"/v1/tokens/{first['token_id']}")
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert store.security.revoked([first["token_id"], second["token_id"]]) == {first["token_id"]}
    assert ca_client.delete("/v1/services/b/instances/b-1").status_code == 200
    assert store.security.revoked([second["token_id"]]) == {second["token_id"]}
    assert_problem(ca_client.delete("/v1/tokens/nope"), 404, "path.token_id")


def test_the_ca_shows_its_state_and_never_a_key(ca_client: TestClient, store: Store) -> None:
    r = ca_client.get("/v1/ca")
    assert r.status_code == 200
    ca = r.json()
    assert (ca["trust_domain"], ca["phase"], ca["step"]) == ("interlock.local", "idle", 0)
    assert len(ca["bundle"]) == 1 and ca["incoming"] is None
    assert ca["rollout"]["complete"] is True
    assert "PRIVATE KEY" not in r.text


def test_rotation_moves_through_three_steps(ca_client: TestClient, store: Store) -> None:
    started = ca_client.post("/v1/ca/rotation", json={"action": "start"}).json()
    assert started["phase"] == "bundle-published" and len(started["bundle"]) == 2
    assert started["signing_key_id"] == started["current"]["key_id"]
    revision = started["revision"]
    assert store.get_revision(revision).changes[0].kind == "CertificateAuthority"
    assert_problem(ca_client.post("/v1/ca/rotation", json={"action": "start"}), 409)
    signing = ca_client.post("/v1/ca/rotation", json={"action": "advance"}).json()
    assert signing["phase"] == "signing-with-new"
    assert signing["signing_key_id"] == started["incoming"]["key_id"]
    assert_problem(ca_client.post("/v1/ca/rotation", json={"action": "abort"}), 409)
    done = ca_client.post("/v1/ca/rotation", json={"action": "advance"}).json()
    assert done["phase"] == "idle" and done["step"] == 3
    assert [c["sha256"] for c in done["bundle"]] == [
        r["sha256"] for r in started["incoming"]["roots"]
    ]


def test_an_operator_ca_can_be_rotated_to_and_a_rotation_aborted(ca_client: TestClient) -> None:
    operator = CertificateAuthority.create_root("interlock.local", now)
    pem = {
        "ca_cert": operator.certificate_pem().decode(),
        "ca_key": operator.private_key_pem().decode(),
    }
    r = ca_client.post("/v1/ca/rotation", json={"action": "start", **pem})
    assert r.status_code == 200
    assert r.json()["incoming"]["key_id"] == operator.key_id
    assert pem["ca_key"] not in r.text
    aborted = ca_client.post("/v1/ca/rotation", json={"action": "abort"}).json()
    assert aborted["phase"] == "idle" and aborted["incoming"] is None
    other = CertificateAuthority.create_root("other.domain", now)
    bad = {
        "action": "start",
        "ca_cert": other.certificate_pem().decode(),
        "ca_key": private_key_to_pem(other._key).decode(),
    }
    r = ca_client.post("/v1/ca/rotation", json=bad)
    assert r.status_code == 422 and bad["ca_key"] not in r.text
