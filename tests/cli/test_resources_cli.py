"""`interlock apply`, `get` and `delete` of policy resources, as a user runs them against a
real `interlock server` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.model.specs import valid
from tests.support.mesh import ServerProcess

CLI = [sys.executable, "-m", "interlock.cli"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()


def run(
    server: ServerProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [*CLI, *args, "--control-plane", server.api_url],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={**os.environ, "INTERLOCK_TOKEN": server.admin_token},
    )
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    return out


def in_namespace(
    document: dict[str, Any], namespace: str, name: str | None = None
) -> dict[str, Any]:
    document["metadata"]["namespace"] = namespace
    if name:
        document["metadata"]["name"] = name
    return document


def revision(server: ServerProcess) -> int:
    with server.api() as api:
        return int(api.get("/v1/revision").json()["revision"])


def test_apply_a_directory_then_get_and_round_trip(server: ServerProcess, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        yaml.safe_dump_all(
            [
                in_namespace(valid("VirtualService"), "apply"),
                in_namespace(valid("DestinationRule"), "apply"),
            ]
        )
    )
    (tmp_path / "gateway.json").write_text(json.dumps(in_namespace(valid("Gateway"), "apply")))
    (tmp_path / "notes.txt").write_text("not a manifest")

    out = run(server, "apply", "-f", str(tmp_path))

    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "gateway.networking.istio.io/public created",
        "virtualservice.networking.istio.io/reviews created",
        "destinationrule.networking.istio.io/reviews created",
    ]
    # no service "reviews" is registered in namespace "apply": the problems are shown, not fatal
    problem = "Problem: virtualservice.networking.istio.io/reviews: spec.http[0].route[0]"
    assert problem + ".destination.host" in out.stderr

    table = run(server, "get", "VirtualServices", "-n", "apply")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "GATEWAYS", "HOSTS", "PROBLEMS"]
    assert row.split()[:4] == ["apply", "reviews", "-", "reviews"]

    listed = json.loads(run(server, "get", "dr", "-n", "apply", "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["reviews"]

    shown = run(server, "get", "gw", "public", "-n", "apply", "-o", "yaml")
    assert yaml.safe_load(shown.stdout)["spec"] == valid("Gateway")["spec"]
    before = revision(server)
    again = run(server, "apply", "-f", "-", stdin=shown.stdout)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "gateway.networking.istio.io/public unchanged"
    listing = run(server, "get", "virtualservice", "-n", "apply", "-o", "yaml").stdout
    assert run(server, "apply", "-f", "-", stdin=listing).stdout.strip() == (
        "virtualservice.networking.istio.io/reviews unchanged"
    )
    assert revision(server) == before


def test_dry_run_shows_the_change_and_writes_nothing(server: ServerProcess, tmp_path: Path) -> None:
    manifest = tmp_path / "limit.yaml"
    manifest.write_text(yaml.safe_dump(in_namespace(valid("RateLimit"), "dry")))
    before = revision(server)

    out = run(server, "apply", "--dry-run", "-f", str(manifest))

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ratelimit.interlock.io/reviews created (dry run)"
    assert revision(server) == before
    assert run(server, "get", "ratelimits", "-n", "dry").stdout.strip() == "No resources found."


def test_an_invalid_document_applies_nothing_and_names_its_file(
    server: ServerProcess, tmp_path: Path
) -> None:
    bad = in_namespace(valid("VirtualService"), "broken")
    bad["spec"]["http"][0]["route"][0]["weight"] = 60
    manifest = tmp_path / "mixed.yaml"
    manifest.write_text(yaml.safe_dump_all([in_namespace(valid("Gateway"), "broken"), bad]))
    before = revision(server)

    out = run(server, "apply", "-f", str(manifest))

    assert out.returncode == 1
    assert f"{manifest} (document 2): spec.http[0].route: the weights sum to 85" in out.stderr
    assert "none of the 2 documents was applied" in out.stderr
    assert revision(server) == before
    assert run(server, "get", "gateways", "-n", "broken").stdout.strip() == "No resources found."


def test_namespace_flag_stdin_and_delete(server: ServerProcess, tmp_path: Path) -> None:
    document = valid("AuthorizationPolicy")
    del document["metadata"]["namespace"]
    applied = run(server, "apply", "-n", "team", "-f", "-", stdin=yaml.safe_dump(document))
    assert applied.stdout.strip() == "authorizationpolicy.security.istio.io/reviews-readers created"

    got = json.loads(run(server, "get", "ap", "reviews-readers", "-n", "team", "-o", "json").stdout)
    assert got["metadata"]["namespace"] == "team" and got["metadata"]["generation"] == 1

    manifest = tmp_path / "ap.yaml"
    manifest.write_text(yaml.safe_dump(document))
    deleted = run(server, "delete", "-n", "team", "-f", str(manifest))
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "authorizationpolicy.security.istio.io/reviews-readers deleted"

    missing = run(server, "delete", "-n", "team", "-f", str(manifest))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert (
        run(server, "delete", "-n", "team", "--ignore-not-found", "-f", str(manifest)).returncode
        == 0
    )

    run(
        server, "apply", "-f", "-", stdin=yaml.safe_dump(in_namespace(valid("Telemetry"), "team"))
    ).check_returncode()
    by_name = run(server, "delete", "telemetry", "reviews", "-n", "team")
    assert by_name.stdout.strip() == "telemetry.interlock.io/reviews deleted"


def test_usage_and_input_errors_are_clear(server: ServerProcess, tmp_path: Path) -> None:
    unknown = run(server, "get", "meshconfigs")
    assert unknown.returncode == 2 and "unknown resource type 'meshconfigs'" in unknown.stderr

    assert run(server, "delete").returncode == 2
    assert run(server, "delete", "vs", "a", "-f", "x.yaml").returncode == 2
    assert run(server, "apply").returncode == 2

    missing = run(server, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "no such file" in missing.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    out = run(server, "apply", "-f", str(broken))
    assert out.returncode == 1 and f"{broken}: not valid YAML" in out.stderr

    not_found = run(server, "get", "dr", "nope")
    assert not_found.returncode == 1 and "404" in not_found.stderr


def test_services_and_instances_still_work(server: ServerProcess) -> None:
    with server.api() as api:
        api.put(
            "/v1/services/catalog", json={"namespace": "store", "port": 9090}
        ).raise_for_status()
        api.put(
            "/v1/services/catalog/instances/c-1", json={"address": "10.1.0.1", "port": 15006}
        ).raise_for_status()

    services = run(server, "get", "svc", "-n", "store")
    assert [line.split()[0] for line in services.stdout.splitlines()[1:]] == ["catalog"]
    assert "10.1.0.1" in run(server, "get", "instances", "catalog").stdout
    assert run(server, "delete", "instance", "catalog", "c-1").stdout.startswith(
        "instance/catalog/c-1 deleted"
    )
    assert run(server, "delete", "service", "catalog").stdout.startswith("service/catalog deleted")


def test_health_options_of_put_and_what_get_instances_shows(server: ServerProcess) -> None:
    put = run(
        server,
        *("put", "service", "legacy", "--port", "8080"),
        *("--health-check-path", "/healthz", "--health-check-interval", "2s"),
    )
    assert put.returncode == 0, put.stderr
    shown = json.loads(run(server, "get", "services", "legacy", "-o", "json").stdout)
    assert shown["health_check"]["path"] == "/healthz"
    assert shown["health_check"]["interval"] == "2s"
    instance = ("put", "instance", "legacy", "l-1", "--address", "10.2.0.1", "--port", "8080")
    assert run(server, *instance, "--ttl", "30s").returncode == 0
    table = run(server, "get", "instances", "legacy").stdout
    assert table.splitlines()[0].split()[-3:] == ["TTL", "HEALTHY", "REASON"]
    assert table.splitlines()[1].split()[-3:] == ["30s", "yes", "registered"]
    bad = run(server, *instance, "--ttl", "5 minutes")
    assert bad.returncode == 1 and "ttl" in bad.stderr
    assert run(server, "delete", "service", "legacy", "--cascade").returncode == 0


def test_put_service_export_to_and_a_bad_one(server: ServerProcess) -> None:
    put = run(server, *("put", "service", "private", "--port", "8080", "--export-to", ".,team"))
    assert put.returncode == 0, put.stderr
    shown = json.loads(run(server, "get", "services", "private", "-o", "json").stdout)
    assert shown["export_to"] == [".", "team"]
    bad = run(server, *("put", "service", "private", "--port", "8080", "--export-to", "*,team"))
    assert bad.returncode == 1 and "export_to" in bad.stderr
    assert run(server, "delete", "service", "private").returncode == 0


def test_apply_and_get_a_sidecar(server: ServerProcess) -> None:
    applied = run(server, "apply", "-f", "-", stdin=yaml.safe_dump(valid("Sidecar")))
    assert applied.stdout.strip() == "sidecar.networking.istio.io/productpage created"
    header, row = run(server, "get", "sidecars").stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "SELECTOR", "EGRESS", "PROBLEMS"]
    assert row.split()[:4] == [
        "default",
        "productpage",
        "app=productpage",
        "./reviews,istio-system/*,*/api.example.com",
    ]
    allow_any = {**valid("Sidecar"), "spec": {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}}
    refused = run(server, "apply", "-f", "-", stdin=yaml.safe_dump(allow_any))
    assert refused.returncode == 1 and "spec.outboundTrafficPolicy.mode" in refused.stderr
