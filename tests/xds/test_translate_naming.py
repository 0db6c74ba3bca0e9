"""Envoy resource names: the spelling other components and users rely on."""

from __future__ import annotations

from interlock.model import Service, ServiceProtocol
from interlock.xds import naming


def test_sidecar_resource_names() -> None:
    assert naming.inbound_listener() == "inbound"
    assert naming.inbound_cluster(9000) == "inbound|9000"
    assert naming.outbound_http_listener() == "outbound|http"
    assert naming.outbound_http_route() == "outbound|http"


def test_service_resource_names() -> None:
    db = Service("db", "data", ServiceProtocol.TCP, 5432)
    assert naming.outbound_cluster(db) == "outbound|5432||db.data"
    assert naming.outbound_tcp_listener(db) == "outbound|tcp|db.data"


def test_stat_prefixes_say_what_they_count() -> None:
    assert naming.inbound_stat_prefix(15006) == "inbound_15006"
    assert naming.OUTBOUND_HTTP_STAT_PREFIX == "outbound_http"
    assert naming.outbound_tcp_stat_prefix(Service("db", "data")) == "outbound_tcp_db_data"
