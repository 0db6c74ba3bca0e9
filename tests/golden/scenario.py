"""Golden scenarios: reading ``input.yaml`` into the model, and writing resources as YAML.

``input.yaml`` holds ``revision``, ``services``, ``instances`` and ``proxy`` with the model's
field names (enums by value: ``protocol: grpc``, ``kind: gateway``; ``gateway_ports`` as
``[[port, listen_port], ...]``; a service's ``export_to`` as a list, its ``health_check``
and an instance's ``health: {failing: {proxy|app|ttl: reason}}`` as mappings), and
``resources``: policy documents as users write them (each created at its position in the
list, so the first is the oldest). ``fetched_keys`` (optional) maps a ``jwksUri`` to what the
control plane holds of it (``{keys: <JWKS JSON>, error: <why the last fetch failed>}``, both
optional).
``expected.<kind>.yaml`` holds the translator's output of one kind (listeners, routes,
clusters, endpoints, secrets, problems) as a list of ``MessageToDict`` dicts (proto field names),
dumped with sorted keys so equal output is equal text; a kind with nothing has no file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from interlock.model import Instance, MeshState, Proxy, ProxyKind, Service, ServiceProtocol
from interlock.model.health import Check, Health
from interlock.model.policy import read_resources
from interlock.model.policy.request_authentication import FetchedKeys
from interlock.model.service import HealthCheck
from interlock.xds.translate import Resources

GOLDEN_DIR = Path(__file__).parent
CERTIFICATE_PLACEHOLDER = "<certificate material>"
"""What every inline secret byte string becomes in the golden files (stable across runs)."""


def scenario_names() -> list[str]:
    """Every directory beside this file that holds an ``input.yaml``, sorted."""
    return sorted(p.parent.name for p in GOLDEN_DIR.glob("*/input.yaml"))


def load_scenario(directory: Path) -> tuple[MeshState, Proxy]:
    """The mesh state and proxy described by ``directory/input.yaml``."""
    data = yaml.safe_load((directory / "input.yaml").read_text())
    services = [
        Service(
            **{
                **s,
                "protocol": ServiceProtocol(s.get("protocol", "http")),
                "health_check": HealthCheck(**s["health_check"]) if "health_check" in s else None,
                "export_to": tuple(s.get("export_to", ())),
            }
        )
        for s in data.get("services", [])
    ]
    instances = [
        Instance(**{**i, "health": _health(i["health"])} if "health" in i else i)
        for i in data.get("instances", [])
    ]
    proxy_data = data["proxy"]
    proxy = Proxy(
        **{
            **proxy_data,
            "kind": ProxyKind(proxy_data.get("kind", "sidecar")),
            "gateway_ports": tuple(tuple(p) for p in proxy_data.get("gateway_ports", [])),
        }
    )
    resources = [
        dataclasses.replace(r, generation=1, created_revision=index + 1, revision=index + 1)
        for index, r in enumerate(read_resources(data.get("resources", []), batch=True))
    ]
    state = MeshState.build(int(data.get("revision", 1)), services, instances, resources)
    fetched = {uri: FetchedKeys(**held) for uri, held in data.get("fetched_keys", {}).items()}
    return dataclasses.replace(state, fetched_keys=fetched), proxy


def _health(data: dict[str, Any]) -> Health:
    """``health: {failing: {proxy|app|ttl: reason}}`` of an instance."""
    return Health({Check(k): str(v) for k, v in data.get("failing", {}).items()})


def _plain(messages: Iterable[Any]) -> list[Any]:
    # json round trip: MessageToDict nests OrderedDicts for Any fields, which YAML cannot dump.
    return [
        json.loads(json.dumps(json_format.MessageToDict(m, preserving_proto_field_name=True)))
        for m in messages
    ]


def _scrub_secrets(value: Any) -> Any:
    """Inline certificate and key bytes replaced by :data:`CERTIFICATE_PLACEHOLDER`."""
    if isinstance(value, dict):
        return {
            k: CERTIFICATE_PLACEHOLDER
            if k in ("inline_bytes", "inline_string")
            else _scrub_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub_secrets(v) for v in value]
    return value


#: The golden files of a scenario, one per kind of output, in the order a review reads them.
KINDS = ("listeners", "routes", "clusters", "endpoints", "secrets", "problems")


def golden_path(directory: Path, kind: str) -> Path:
    """Where ``kind``'s expected output lives: ``expected.<kind>.yaml``."""
    return directory / f"expected.{kind}.yaml"


def render(resources: Resources) -> dict[str, str]:
    """``resources`` as the sorted YAML text of each ``expected.<kind>.yaml`` (a kind with
    nothing has no file), so a diff says which kind of resource changed."""
    document = {
        "listeners": _plain(resources.listeners),
        "clusters": _plain(resources.clusters),
        "routes": _plain(resources.routes),
        "endpoints": _plain(resources.endpoints),
        "secrets": _scrub_secrets(_plain(resources.secrets)),
        "problems": [
            {
                "resource": p.resource,
                "field": p.field,
                "message": p.message,
                "severity": str(p.severity),
            }
            for p in resources.problems
        ],
    }
    return {
        kind: yaml.safe_dump(document[kind], sort_keys=True, default_flow_style=False, width=100)
        for kind in KINDS
        if document[kind]
    }
