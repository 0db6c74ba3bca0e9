"""What the API accepts, Envoy accepts — generatively (Hypothesis).

Strategies write VirtualServices, DestinationRules and AuthorizationPolicies the way users do,
mostly valid and sometimes not: regexes (RE2 and not), durations, percentages, header and
query matches, weights, subsets, ports, retries, faults, load balancers, outlier detection.
Each document goes through the REST API one at a time. Every answer is either a success or
a problem+json whose errors name a field of the document — never a 500. Everything accepted is
then translated for a sidecar and a gateway and must pass ``envoy --mode validate``.

``make test`` runs 25 examples; ``make fuzz`` (``INTERLOCK_FUZZ_EXAMPLES``) runs
more. What the generator found is recorded in docs/policies.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlock.api import create_app
from interlock.model import Proxy, ProxyKind
from interlock.store import Store
from interlock.xds.translate import translate
from tests.store.databases import sqlite_url
from tests.support.envoy_validate import validate

EXAMPLES = int(os.environ.get("INTERLOCK_FUZZ_EXAMPLES", "25"))
SERVICES = ("reviews", "ratings", "db")
SIDECAR = Proxy("web-1", "web", inbound_port=15006, app_port=8080, outbound_port=15001)
GATEWAY = Proxy("edge-1", "edge", kind=ProxyKind.GATEWAY, gateway_ports=((80, 18080),)).with_labels(
    {"gateway": "edge"}
)

# --- values: mostly what users write, sometimes what they mistype ---------------------------


def mostly(
    valid: st.SearchStrategy[Any], mistyped: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """``valid`` three times in four, ``mistyped`` otherwise."""
    return st.one_of(valid, valid, valid, mistyped)


names = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
durations = mostly(
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 120), st.sampled_from(["ms", "s", "m"])),
    st.sampled_from(["1.5s", "-1s", "10", "1h30m", "", "0s"]),
)
percents = mostly(st.floats(0, 100, allow_nan=False), st.sampled_from([-1, 100.5, 150]))
regexes = mostly(
    st.sampled_from(
        [
            "/api/.*",
            "^/v[0-9]+/users$",
            "(?i)chrome",
            "[a-z]{2,5}",
            r"\d+",
            "(a|b)*c",
            "a{1000}{1000}",  # past RE2's program size: refused by the API, not NACKed
            "(?=lookahead)",  # not RE2
            "[z-a]",
            "(unclosed",
            "x" * 3000,
        ]
    ),
    st.text(alphabet="ab.*+?()[]{}|^$\\-0123456789", max_size=12),
)
string_matches = st.one_of(
    st.builds(lambda v: {"exact": v}, st.text(min_size=0, max_size=8)),
    st.builds(lambda v: {"prefix": v}, st.sampled_from(["/", "/api", "", "/a b"])),
    st.builds(lambda v: {"regex": v}, regexes),
)
header_names = mostly(
    st.sampled_from(["x-user", "user-agent", ":authority", "x-version", "cookie"]),
    st.sampled_from(["Bad Header", "", "x_underscore"]),
)
ports = mostly(st.sampled_from([9080, 8080, 5432]), st.integers(0, 70000))
hosts = st.one_of(st.sampled_from(SERVICES), st.sampled_from(["unknown", "*.example.com"]))


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


destinations = st.builds(
    lambda host, subset, port: _drop_none(
        host=host, subset=subset, port={"number": port} if port else None
    ),
    hosts,
    st.one_of(st.none(), st.sampled_from(["v1", "v2", "missing"])),
    st.one_of(st.none(), ports),
)


def _split(dests: list[dict[str, Any]], cut: int) -> list[dict[str, Any]]:
    """One destination takes everything; two share 100 at ``cut``."""
    if len(dests) == 1:
        return [{"destination": dests[0]}]
    return [
        {"destination": dests[0], "weight": cut},
        {"destination": dests[1], "weight": 100 - cut},
    ]


weighted = mostly(
    st.builds(_split, st.lists(destinations, min_size=1, max_size=2), st.integers(0, 100)),
    st.lists(
        st.builds(
            lambda d, w: _drop_none(destination=d, weight=w),
            destinations,
            st.one_of(st.none(), st.integers(-5, 105)),
        ),
        min_size=1,
        max_size=3,
    ),
)
matches = st.lists(
    st.builds(
        lambda uri, headers, query, port: _drop_none(
            uri=uri, headers=headers, queryParams=query, port=port
        ),
        st.one_of(st.none(), string_matches),
        st.one_of(st.none(), st.dictionaries(header_names, string_matches, max_size=2)),
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["debug", "v"]),
                st.one_of(
                    st.builds(lambda v: {"exact": v}, st.text(max_size=4)),
                    st.builds(lambda v: {"regex": v}, regexes),
                ),
                max_size=1,
            ),
        ),
        st.one_of(st.none(), ports),
    ),
    max_size=2,
)
retries = st.builds(
    lambda attempts, per_try, on: _drop_none(attempts=attempts, perTryTimeout=per_try, retryOn=on),
    st.integers(-1, 5),
    st.one_of(st.none(), durations),
    st.one_of(
        st.none(), st.sampled_from(["5xx", "gateway-error,reset", "bogus", "connect-failure"])
    ),
)
faults = st.builds(
    lambda delay, abort: _drop_none(delay=delay, abort=abort),
    st.one_of(
        st.none(),
        st.builds(lambda d, p: {"fixedDelay": d, "percentage": {"value": p}}, durations, percents),
    ),
    st.one_of(
        st.none(),
        st.builds(
            lambda s, p: {"httpStatus": s, "percentage": {"value": p}},
            st.integers(100, 600),
            percents,
        ),
    ),
)
http_rules = st.builds(
    lambda match, route, timeout, retry, fault, mirror: _drop_none(
        match=match or None,
        route=route,
        timeout=timeout,
        retries=retry,
        fault=fault or None,
        mirror=mirror,
    ),
    matches,
    weighted,
    st.one_of(st.none(), durations),
    st.one_of(st.none(), retries),
    st.one_of(st.none(), faults),
    st.one_of(st.none(), destinations),
)


def _document(kind: str, name: str, spec: dict[str, Any], group: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


virtual_services = st.builds(
    lambda name, host, http, gateway: _document(
        "VirtualService",
        name,
        _drop_none(hosts=[host], http=http, gateways=["edge-gw", "mesh"] if gateway else None),
        "networking.istio.io",
    ),
    names,
    hosts,
    st.lists(http_rules, min_size=1, max_size=3),
    st.booleans(),
)
load_balancers = st.one_of(
    st.builds(lambda s: {"simple": s}, st.sampled_from(["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"])),
    st.builds(
        lambda h, size: {"consistentHash": _drop_none(httpHeaderName=h, minimumRingSize=size)},
        header_names,
        st.one_of(st.none(), st.integers(0, 10**7)),
    ),
    st.builds(
        lambda size: {"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": size}}},
        st.sampled_from([65537, 5000011, 65536, 7]),
    ),
)
outliers = st.builds(
    lambda errors, interval, ejection, percent: _drop_none(
        consecutive5xxErrors=errors,
        interval=interval,
        baseEjectionTime=ejection,
        maxEjectionPercent=percent,
    ),
    st.one_of(st.none(), st.integers(-1, 100)),
    st.one_of(st.none(), durations),
    st.one_of(st.none(), durations),
    st.one_of(st.none(), st.integers(-10, 120)),
)
traffic_policies = st.builds(
    lambda lb, outlier, pool: _drop_none(
        loadBalancer=lb, outlierDetection=outlier or None, connectionPool=pool
    ),
    st.one_of(st.none(), load_balancers),
    st.one_of(st.none(), outliers),
    st.one_of(
        st.none(),
        st.builds(
            lambda n, t: {"tcp": _drop_none(maxConnections=n, connectTimeout=t)},
            st.integers(-1, 10**6),
            st.one_of(st.none(), durations),
        ),
    ),
)
destination_rules = st.builds(
    lambda name, host, policy, subsets: _document(
        "DestinationRule",
        name,
        _drop_none(host=host, trafficPolicy=policy or None, subsets=subsets or None),
        "networking.istio.io",
    ),
    names,
    hosts,
    st.one_of(st.none(), traffic_policies),
    st.lists(
        st.builds(
            lambda n, v, p: _drop_none(name=n, labels={"version": v}, trafficPolicy=p or None),
            st.sampled_from(["v1", "v2", "V3", "v1"]),
            st.sampled_from(["v1", "v2"]),
            st.one_of(st.none(), traffic_policies),
        ),
        max_size=2,
    ),
)
authorization_policies = st.builds(
    lambda name, action, paths, methods, header, dry: {
        **_document(
            "AuthorizationPolicy",
            name,
            {
                "action": action,
                "rules": [
                    _drop_none(
                        to=[{"operation": _drop_none(paths=paths or None, methods=methods or None)}]
                        if paths or methods
                        else None,
                        when=[{"key": f"request.headers[{header}]", "values": ["a*"]}]
                        if header
                        else None,
                    )
                ],
            },
            "security.istio.io",
        ),
        **({"metadata": {"name": name, "annotations": {"istio.io/dry-run": dry}}} if dry else {}),
    },
    names,
    st.sampled_from(["ALLOW", "DENY", "AUDIT"]),
    st.lists(st.sampled_from(["/api/*", "*/admin", "/x/{*}", "", "/a*b"]), max_size=2),
    st.lists(st.sampled_from(["GET", "POST", "get"]), max_size=2),
    st.one_of(st.none(), header_names),
    st.sampled_from([None, "true", "false", "yes"]),
)
documents = st.lists(
    st.one_of(virtual_services, destination_rules, authorization_policies), min_size=1, max_size=4
)

GATEWAY_DOC = _document(
    "Gateway",
    "edge-gw",
    {
        "selector": {"gateway": "edge"},
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
    },
    "networking.istio.io",
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Store]]:
    store = Store.open(sqlite_url(str(tmp_path_factory.mktemp("fuzz"))))
    try:
        client = TestClient(create_app(store))
        for name, port, protocol in (
            ("reviews", 9080, "http"),
            ("ratings", 9080, "grpc"),
            ("db", 5432, "tcp"),
            ("web", 8080, "http"),
        ):
            body = {"port": port, "protocol": protocol}
            client.put(f"/v1/services/{name}", json=body).raise_for_status()
        for service, version in (("reviews", "v1"), ("reviews", "v2"), ("ratings", "v1")):
            body = {"address": "10.0.0.1", "port": 15006, "labels": {"version": version}}
            client.put(f"/v1/services/{service}/instances/{service}-{version}", json=body)
        client.post("/v1/resources", json=[GATEWAY_DOC]).raise_for_status()
        yield client, store
    finally:
        store.close()


def _apply_one(client: TestClient, document: dict[str, Any]) -> bool:
    """Apply ``document``; True when accepted. A refusal must be a problem naming a field."""
    response = client.post("/v1/resources", json=[document])
    assert response.status_code != 500 and "Traceback" not in response.text, response.text
    if response.is_success:
        return True
    assert response.status_code in (400, 409, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json().get("errors") or []
    assert errors, response.text
    for error in errors:
        assert error["field"].startswith(("[0].spec", "[0].metadata")), error
    return False


def _delete_all(client: TestClient) -> None:
    for item in client.get("/v1/resources").json()["items"]:
        if item["kind"] == "Gateway":
            continue
        meta = item["metadata"]
        path = f"/v1/resources/{item['kind']}/{meta['namespace']}/{meta['name']}"
        assert client.delete(path).status_code in (200, 204), path


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("INTERLOCK_FUZZ_RANDOM") is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=documents)
def test_what_the_api_accepts_envoy_accepts(
    api: tuple[TestClient, Store], batch: list[dict[str, Any]], tmp_path: Path
) -> None:
    client, store = api
    try:
        accepted = [_apply_one(client, document) for document in batch]
        if not any(accepted):
            return
        state = store.load_state()
        for proxy in (SIDECAR, GATEWAY):
            validate(translate(state, proxy))
    finally:
        _delete_all(client)
