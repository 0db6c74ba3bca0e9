"""Valid policies the translator cannot (yet) turn into Envoy configuration are problems on
the resource that asks for them — never silently ignored."""

from __future__ import annotations

from interlock.model import Service, ServiceProtocol
from interlock.model.problem import Severity
from tests.model.specs import NET, OWN, doc
from tests.model.test_problems import problems, state


def test_what_the_translator_cannot_do_is_a_problem_of_the_resource() -> None:
    entry = doc(
        NET,
        "ServiceEntry",
        "google",
        {
            "hosts": ["*.googleapis.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "NONE",
        },
    )
    rule = doc(
        NET,
        "DestinationRule",
        "reviews",
        {
            "host": "reviews",
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "caCertificates": "/etc/ca.pem"}},
        },
    )
    external_tls = doc(
        NET,
        "DestinationRule",
        "apis",
        {"host": "*.googleapis.com", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
    )
    translated = doc(
        NET,
        "DestinationRule",
        "db",
        {"host": "db", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
    )
    gateway = doc(
        NET,
        "Gateway",
        "edge",
        {
            "servers": [
                {
                    "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                    "hosts": ["db.example.com"],
                    "tls": {"mode": "PASSTHROUGH"},
                }
            ]
        },
    )
    limit = doc(
        OWN,
        "RateLimit",
        "db",
        {"target": {"service": "db"}, "tokenBucket": {"maxTokens": 1, "fillInterval": "1s"}},
    )
    services = [
        Service("reviews", port=9080),
        Service("db", protocol=ServiceProtocol.TCP, port=5432),
    ]
    found = problems(
        state(entry, rule, external_tls, translated, gateway, limit, services=services)
    )
    assert found == [
        # ISTIO_MUTUAL and DISABLE are translated for services (DestinationRule/default/db),
        # SIMPLE and MUTUAL everywhere (DestinationRule/default/reviews).
        ("DestinationRule/default/apis", "spec.trafficPolicy.tls.mode", Severity.WARNING),
        ("Gateway/default/edge", "spec.servers[0].tls.mode", Severity.ERROR),
        ("RateLimit/default/db", "spec.target.service", Severity.ERROR),
        ("ServiceEntry/default/google", "spec.resolution", Severity.ERROR),
    ]
