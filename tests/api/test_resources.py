"""/v1/resources: Istio objects as JSON or YAML, applied all or nothing, read back as stored
with the problems other resources cause them (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi.testclient import TestClient

from tests.api.problems import assert_problem
from tests.model.specs import VALID, valid

YAML = {"content-type": "application/yaml"}
REVISION = "Interlock-Revision"

BOOKINFO = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""


def names(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(i["kind"], i["metadata"]["namespace"], i["metadata"]["name"]) for i in items]


def test_a_multi_document_yaml_is_applied_in_one_revision(client: TestClient) -> None:
    client.put("/v1/services/reviews", json={"port": 9080}).raise_for_status()

    response = client.post("/v1/resources", content=BOOKINFO, headers=YAML)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["revision"] == 2 and response.headers[REVISION] == "2" and body["dryRun"] is False
    assert [(i["kind"], i["result"], i["problems"]) for i in body["items"]] == [
        ("VirtualService", "created", []),
        ("DestinationRule", "created", []),
    ]
    assert body["items"][0]["apiVersion"] == "networking.istio.io/v1beta1"
    assert body["items"][0]["metadata"] == {
        "name": "reviews",
        "namespace": "default",
        "generation": 1,
    }
    assert body["items"][1]["spec"] == list(yaml.safe_load_all(BOOKINFO))[1]["spec"]
    changes = client.get("/v1/revisions/2").json()["changes"]
    assert changes == [
        {"kind": "VirtualService", "name": "default/reviews", "op": "upsert"},
        {"kind": "DestinationRule", "name": "default/reviews", "op": "upsert"},
    ]


def test_the_same_apply_again_creates_no_revision(client: TestClient) -> None:
    first = client.post("/v1/resources", content=BOOKINFO, headers=YAML).json()
    again = client.post("/v1/resources", content=BOOKINFO, headers=YAML)

    assert again.json()["revision"] == first["revision"] == 1
    assert [i["result"] for i in again.json()["items"]] == ["unchanged", "unchanged"]
    assert client.get("/v1/revision").json()["revision"] == 1


def test_json_objects_and_lists_are_accepted(client: TestClient) -> None:
    one = client.post("/v1/resources", json=valid("Gateway"))
    many = client.post("/v1/resources", json=[valid("Gateway"), valid("RateLimit")])

    assert [i["result"] for i in one.json()["items"]] == ["created"]
    assert [i["result"] for i in many.json()["items"]] == ["unchanged", "created"]
    assert many.json()["revision"] == 2


def test_every_yaml_media_type_is_accepted(client: TestClient) -> None:
    for index, media in enumerate(
        ["application/yaml", "application/x-yaml", "text/yaml; charset=utf-8"]
    ):
        document = valid("Telemetry")
        document["metadata"]["name"] = f"t{index}"
        response = client.post(
            "/v1/resources", content=yaml.safe_dump(document), headers={"content-type": media}
        )
        assert response.status_code == 200, response.text


def test_dry_run_says_what_would_change_and_writes_nothing(client: TestClient) -> None:
    client.post("/v1/resources", json=valid("VirtualService")).raise_for_status()
    changed = valid("VirtualService")
    changed["spec"]["http"] = changed["spec"]["http"][:1]

    response = client.post(
        "/v1/resources",
        params={"dryRun": "true"},
        json=[changed, valid("DestinationRule"), valid("Gateway")],
    )

    body = response.json()
    assert body["dryRun"] is True and body["revision"] == 1
    assert [(i["kind"], i["result"], i["metadata"]["generation"]) for i in body["items"]] == [
        ("VirtualService", "configured", 2),
        ("DestinationRule", "created", 1),
        ("Gateway", "created", 1),
    ]
    assert client.get("/v1/revision").json()["revision"] == 1
    assert names(client.get("/v1/resources").json()["items"]) == [
        ("VirtualService", "default", "reviews")
    ]
    stored = client.get("/v1/resources/vs/default/reviews").json()
    assert len(stored["spec"]["http"]) == 3


def test_dry_run_problems_see_the_would_be_mesh(client: TestClient) -> None:
    client.put("/v1/services/reviews", json={"port": 9080}).raise_for_status()
    alone = client.post(
        "/v1/resources", params={"dryRun": "true"}, content=BOOKINFO.split("---")[0], headers=YAML
    )
    together = client.post(
        "/v1/resources", params={"dryRun": "true"}, content=BOOKINFO, headers=YAML
    )

    assert [p["field"] for p in alone.json()["items"][0]["problems"]] == [
        "spec.http[0].route[0].destination.subset",
        "spec.http[1].route[0].destination.subset",
    ]
    assert together.json()["items"][0]["problems"] == []


def test_put_creates_then_replaces(client: TestClient) -> None:
    created = client.put(
        "/v1/resources/DestinationRule/default/reviews", json=valid("DestinationRule")
    )
    assert created.status_code == 201, created.text
    assert created.json()["result"] == "created" and created.json()["revision"] == 1

    same = client.put(
        "/v1/resources/destinationrules/default/reviews", json=valid("DestinationRule")
    )
    assert (
        same.status_code == 200
        and same.json()["result"] == "unchanged"
        and same.json()["revision"] == 1
    )

    changed = valid("DestinationRule")
    changed["spec"]["subsets"] = changed["spec"]["subsets"][:1]
    replaced = client.put(
        "/v1/resources/dr/default/reviews", content=yaml.safe_dump(changed), headers=YAML
    )
    assert replaced.status_code == 200
    assert (
        replaced.json()["result"] == "configured" and replaced.json()["metadata"]["generation"] == 2
    )


def test_put_takes_names_from_the_path(client: TestClient) -> None:
    response = client.put(
        "/v1/resources/vs/shop/front",
        json={
            "spec": {"hosts": ["front"], "http": [{"route": [{"destination": {"host": "front"}}]}]}
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert (
        body["apiVersion"],
        body["kind"],
        body["metadata"]["namespace"],
        body["metadata"]["name"],
    ) == (
        "networking.istio.io/v1",
        "VirtualService",
        "shop",
        "front",
    )


def test_put_refuses_a_body_that_contradicts_the_path(client: TestClient) -> None:
    for path, field in [
        ("/v1/resources/vs/default/other", "metadata.name"),
        ("/v1/resources/vs/shop/reviews", "metadata.namespace"),
        ("/v1/resources/dr/default/reviews", "kind"),
        ("/v1/resources/vs/Bad_Namespace/reviews", "path.namespace"),
        ("/v1/resources/vs/default/Bad_Name", "path.name"),
    ]:
        assert_problem(client.put(path, json=valid("VirtualService")), 422, field)
    assert_problem(
        client.put("/v1/resources/envoyfilters/default/reviews", json=valid("VirtualService")),
        404,
        "path.kind",
    )
    assert_problem(
        client.put("/v1/resources/vs/default/reviews", json=[valid("VirtualService")]), 422, "body"
    )
    assert client.get("/v1/revision").json()["revision"] == 0


def test_get_one_and_lists_with_filters(client: TestClient) -> None:
    shop = valid("VirtualService")
    shop["metadata"]["namespace"] = "shop"
    client.post("/v1/resources", json=[valid(k) for k in VALID] + [shop]).raise_for_status()

    everything = client.get("/v1/resources")
    assert everything.headers[REVISION] == "1"
    assert len(everything.json()["items"]) == len(VALID) + 1

    for kind in (
        "VirtualService",
        "virtualservice",
        "virtualservices",
        "VS",
        "virtualservice.networking.istio.io",
    ):
        listed = client.get("/v1/resources", params={"kind": kind}).json()["items"]
        assert names(listed) == [
            ("VirtualService", "default", "reviews"),
            ("VirtualService", "shop", "reviews"),
        ]
    in_shop = client.get("/v1/resources", params={"namespace": "shop"}).json()["items"]
    assert names(in_shop) == [("VirtualService", "shop", "reviews")]
    both = client.get("/v1/resources", params={"kind": "ap", "namespace": "default"}).json()[
        "items"
    ]
    assert names(both) == [("AuthorizationPolicy", "default", "reviews-readers")]

    one = client.get("/v1/resources/gw/default/public")
    assert one.status_code == 200 and one.json()["revision"] == 1
    assert one.json()["spec"] == VALID["Gateway"]["spec"]

    assert_problem(client.get("/v1/resources", params={"kind": "envoyfilter"}), 422, "query.kind")
    assert_problem(client.get("/v1/resources", params={"namespace": "Bad"}), 422, "query.namespace")
    assert_problem(client.get("/v1/resources/gw/default/nope"), 404, "path.name")
    assert_problem(client.get("/v1/resources/virtualservic/default/reviews"), 404, "path.kind")


def test_delete(client: TestClient) -> None:
    client.post("/v1/resources", content=BOOKINFO, headers=YAML).raise_for_status()
    client.put("/v1/services/reviews", json={"port": 9080}).raise_for_status()

    response = client.delete("/v1/resources/dr/default/reviews")

    assert response.status_code == 200 and response.json() == {"revision": 3}
    assert response.headers[REVISION] == "3"
    assert_problem(client.get("/v1/resources/dr/default/reviews"), 404, "path.name")
    assert_problem(client.delete("/v1/resources/dr/default/reviews"), 404, "path.name")
    problems = client.get("/v1/resources/vs/default/reviews").json()["problems"]
    assert [p["field"] for p in problems] == [
        "spec.http[0].route[0].destination.subset",
        "spec.http[1].route[0].destination.subset",
    ]
    assert client.get("/v1/revisions/3").json()["changes"] == [
        {"kind": "DestinationRule", "name": "default/reviews", "op": "delete"}
    ]


def test_problems_follow_the_registry(client: TestClient) -> None:
    client.post("/v1/resources", content=BOOKINFO, headers=YAML).raise_for_status()
    before = client.get("/v1/resources/vs/default/reviews").json()["problems"]
    assert [(p["field"], p["severity"]) for p in before] == [
        ("spec.hosts[0]", "warning"),
        ("spec.http[0].route[0].destination.host", "error"),
        ("spec.http[1].route[0].destination.host", "error"),
    ]

    client.put("/v1/services/reviews", json={"port": 9080}).raise_for_status()

    assert client.get("/v1/resources/vs/default/reviews").json()["problems"] == []


def test_what_get_returns_applies_again_unchanged(client: TestClient) -> None:
    client.post("/v1/resources", json=[valid(k) for k in VALID]).raise_for_status()
    for kind in VALID:
        document = valid(kind)
        shown = client.get(f"/v1/resources/{kind}/default/{document['metadata']['name']}").json()
        again = client.post("/v1/resources", content=yaml.safe_dump(shown), headers=YAML)
        assert again.json()["items"][0]["result"] == "unchanged", kind
    assert client.get("/v1/revision").json()["revision"] == 1


def test_the_body_limit_applies(store: Any) -> None:
    from interlock.api import create_app

    small = TestClient(create_app(store, max_body_bytes=1024))
    document = valid("VirtualService")
    document["metadata"]["annotations"] = {"padding": "x" * 2048}

    assert_problem(small.post("/v1/resources", json=document), 413, "body")
    assert small.get("/v1/revision").json()["revision"] == 0


def test_openapi_documents_the_resource_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/resources"]) == {"get", "post"}
    assert set(paths["/v1/resources/{kind}/{namespace}/{name}"]) == {"get", "put", "delete"}
    assert "application/yaml" in paths["/v1/resources"]["post"]["requestBody"]["content"]
