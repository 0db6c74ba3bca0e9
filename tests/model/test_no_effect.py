"""Valid fields that change nothing where they are written are warnings of their resource: a
user learns that the mesh does not do what the field says, through the API's ``problems``."""

from __future__ import annotations

from interlock.model import Service, ServiceProtocol
from interlock.model.policy import policy_problems
from interlock.model.problem import Severity
from tests.model.specs import NET, SEC, doc
from tests.model.test_problems import REVIEWS, state

DB = Service("db", "default", protocol=ServiceProtocol.TCP, port=5432)


def warnings(*documents: dict[str, object]) -> dict[tuple[str, str], str]:
    found = policy_problems(state(*documents, services=[REVIEWS, DB]))
    return {(p.resource, p.field): p.message for p in found if p.severity is Severity.WARNING}


def test_service_entry_addresses_and_mesh_internal() -> None:
    entry = doc(
        NET,
        "ServiceEntry",
        "legacy",
        {
            "hosts": ["legacy.example.com"],
            "addresses": ["10.9.0.7"],
            "location": "MESH_INTERNAL",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "DNS",
        },
    )
    found = warnings(entry)
    assert "explicit proxies" in found[("ServiceEntry/default/legacy", "spec.addresses")]
    assert "MESH_EXTERNAL" in found[("ServiceEntry/default/legacy", "spec.location")]


def test_virtual_service_ip_hosts_and_rules_of_the_other_protocol() -> None:
    by_ip = doc(
        NET,
        "VirtualService",
        "by-ip",
        {"hosts": ["10.0.0.1"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
    )
    tcp_on_http = doc(
        NET,
        "VirtualService",
        "reviews",
        {
            "hosts": ["reviews"],
            "http": [{"route": [{"destination": {"host": "reviews"}}]}],
            "tcp": [{"route": [{"destination": {"host": "reviews"}}]}],
        },
    )
    http_on_tcp = doc(
        NET,
        "VirtualService",
        "db",
        {"hosts": ["db"], "http": [{"route": [{"destination": {"host": "db"}}]}]},
    )
    found = warnings(by_ip, tcp_on_http, http_on_tcp)
    assert "routes nothing" in found[("VirtualService/default/by-ip", "spec.hosts[0]")]
    assert "tcp rules do nothing" in found[("VirtualService/default/reviews", "spec.tcp")]
    assert "http rules do nothing" in found[("VirtualService/default/db", "spec.http")]
    assert ("VirtualService/default/reviews", "spec.http") not in found


def test_port_level_settings_for_ports_nothing_has() -> None:
    pa = doc(
        SEC,
        "PeerAuthentication",
        "reviews",
        {
            "selector": {"matchLabels": {"app": "reviews"}},
            "portLevelMtls": {"15006": {"mode": "DISABLE"}, "9999": {"mode": "STRICT"}},
        },
    )
    dr = doc(
        NET,
        "DestinationRule",
        "reviews",
        {
            "host": "reviews",
            "trafficPolicy": {
                "portLevelSettings": [
                    {"port": {"number": 9080}, "loadBalancer": {"simple": "RANDOM"}},
                    {"port": {"number": 7070}, "loadBalancer": {"simple": "RANDOM"}},
                ]
            },
        },
    )
    found = warnings(pa, dr)
    assert "port 9999" in found[("PeerAuthentication/default/reviews", "spec.portLevelMtls.9999")]
    assert ("PeerAuthentication/default/reviews", "spec.portLevelMtls.15006") not in found
    field = "spec.trafficPolicy.portLevelSettings[1].port.number"
    assert "not 7070" in found[("DestinationRule/default/reviews", field)]
    assert (
        "DestinationRule/default/reviews",
        "spec.trafficPolicy.portLevelSettings[0].port.number",
    ) not in found


def test_http_hash_keys_for_a_tcp_service() -> None:
    dr = doc(
        NET,
        "DestinationRule",
        "db",
        {
            "host": "db",
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
        },
    )
    by_ip = doc(
        NET,
        "DestinationRule",
        "db-ip",
        {
            "host": "db",
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"useSourceIp": True}}},
        },
    )
    found = warnings(dr, by_ip)
    field = "spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName"
    assert "useSourceIp" in found[("DestinationRule/default/db", field)]
    assert not [k for k in found if k[0] == "DestinationRule/default/db-ip" and "Hash" in k[1]]
