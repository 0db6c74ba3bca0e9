"""B11's static-identical pair: a sidecar's config dump becomes a static bootstrap with the same
listeners, clusters, routes, endpoints and secrets, and nothing left to fetch over xDS."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from bench.static_config import Credentials, split_config_flag, static_identical, xds_versions
from interlock.ca import CertificateAuthority, SpiffeId

ADS = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."


def _now() -> datetime:
    return datetime.now(UTC)


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _sds(name: str) -> dict[str, Any]:
    return {"name": name, "sds_config": ADS}


def _dump() -> dict[str, Any]:
    """A config dump shaped like an `interlock sidecar`'s (caller side, trimmed)."""
    ca = CertificateAuthority.create_root("interlock.local", _now)
    svid = ca.issue_svid(SpiffeId.for_service("interlock.local", "default", "client"))
    b64 = base64.b64encode
    listener = {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "outbound|http",
        "address": _address(40001),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM,
                            "stat_prefix": "outbound_http",
                            "rds": {"config_source": ADS, "route_config_name": "outbound|http"},
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters."
                                        "http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }
    route = {
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": "outbound|http",
        "virtual_hosts": [
            {
                "name": "server",
                "domains": ["server"],
                "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": "outbound|8080||server"}}
                ],
            }
        ],
    }
    cluster = {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": "outbound|8080||server",
        "type": "EDS",
        "eds_cluster_config": {"eds_config": ADS, "service_name": "outbound|8080||server"},
        "connect_timeout": "5s",
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": TLS + "UpstreamTlsContext",
                "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [_sds("default")],
                    "combined_validation_context": {
                        "default_validation_context": {
                            "match_typed_subject_alt_names": [
                                {
                                    "san_type": "URI",
                                    "matcher": {
                                        "exact": "spiffe://interlock.local/ns/default/sa/s"
                                    },
                                }
                            ]
                        },
                        "validation_context_sds_secret_config": _sds("ROOTCA"),
                    },
                },
            },
        },
    }
    endpoints = {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": "outbound|8080||server",
        "endpoints": [
            {
                "locality": {},
                "lb_endpoints": [
                    {"endpoint": {"address": _address(40002)}, "health_status": "HEALTHY"}
                ],
                "load_balancing_weight": 0,
            }
        ],
        "policy": {"overprovisioning_factor": 140},
    }
    secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    redacted = {"inline_bytes": b64(b"[redacted]").decode()}
    certificate = {"inline_bytes": b64(svid.certificate_chain_pem()).decode()}
    bundle = {"inline_bytes": b64(ca.bundle_pem()).decode()}
    admin = "type.googleapis.com/envoy.admin.v3."
    return {
        "configs": [
            {"@type": admin + "BootstrapConfigDump", "bootstrap": {}},
            {
                "@type": admin + "ClustersConfigDump",
                "dynamic_active_clusters": [{"version_info": "c1", "cluster": cluster}],
            },
            {
                "@type": admin + "EndpointsConfigDump",
                "dynamic_endpoint_configs": [{"endpoint_config": endpoints}],
            },
            {
                "@type": admin + "ListenersConfigDump",
                "dynamic_listeners": [
                    {
                        "name": "outbound|http",
                        "active_state": {"version_info": "l1", "listener": listener},
                    }
                ],
            },
            {
                "@type": admin + "RoutesConfigDump",
                "dynamic_route_configs": [{"version_info": "r1", "route_config": route}],
            },
            {
                "@type": admin + "SecretsConfigDump",
                "dynamic_active_secrets": [
                    {
                        "name": "default",
                        "version_info": "s1",
                        "secret": {
                            "@type": secret,
                            "name": "default",
                            "tls_certificate": {
                                "certificate_chain": certificate,
                                "private_key": redacted,
                            },
                        },
                    },
                    {
                        "name": "ROOTCA",
                        "version_info": "s2",
                        "secret": {
                            "@type": secret,
                            "name": "ROOTCA",
                            "validation_context": {"trusted_ca": bundle},
                        },
                    },
                ],
            },
        ]
    }


def _bootstrap() -> dict[str, Any]:
    return {
        "node": {"id": "client-0", "cluster": "client"},
        "admin": {"address": _address(40009)},
        "dynamic_resources": {"ads_config": {"api_type": "DELTA_GRPC"}, "lds_config": ADS},
        "static_resources": {"listeners": [], "clusters": []},
    }


def test_a_config_dump_becomes_a_self_contained_static_bootstrap(tmp_path: Path) -> None:
    config = static_identical(
        _dump(),
        _bootstrap(),
        admin_port=41009,
        ports={40001: 41001, 40002: 41002},
        credentials=Credentials(tmp_path),
    )
    text = json.dumps(config)
    assert '"ads"' not in text and "sds_config" not in text
    assert "dynamic_resources" not in config
    assert config["admin"]["address"]["socket_address"]["port_value"] == 41009
    static = config["static_resources"]
    (listener,) = static["listeners"]
    assert "@type" not in listener  # a resource, no longer an Any
    assert listener["address"]["socket_address"]["port_value"] == 41001
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert "rds" not in manager and manager["route_config"]["name"] == "outbound|http"
    (cluster,) = static["clusters"]
    assert cluster["type"] == "STATIC" and "eds_cluster_config" not in cluster
    (locality,) = cluster["load_assignment"]["endpoints"]
    assert "load_balancing_weight" not in locality  # the dump's 0 means unset
    socket = locality["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert socket["port_value"] == 41002
    common = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    assert common["tls_certificate_sds_secret_configs"] == [{"name": "default"}]
    secrets = {s["name"]: s for s in static["secrets"]}
    chain = Path(secrets["default"]["tls_certificate"]["certificate_chain"]["filename"])
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["spiffe://interlock.local/ns/default/sa/client"]
    assert Path(secrets["default"]["tls_certificate"]["private_key"]["filename"]).exists()
    bundle = Path(secrets["ROOTCA"]["validation_context"]["trusted_ca"]["filename"])
    assert bundle.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_envoy_accepts_the_static_bootstrap(tmp_path: Path) -> None:
    from tests.support.envoy_validate import envoy_binary

    try:
        envoy = envoy_binary()
    except FileNotFoundError:
        pytest.skip("no envoy binary")
    config = static_identical(
        _dump(), _bootstrap(), admin_port=41009, ports={}, credentials=Credentials(tmp_path)
    )
    path = tmp_path / "static.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_versions_and_command_line_helpers() -> None:
    versions = xds_versions(_dump())
    assert versions == {
        "dynamic_listeners/outbound|http": "l1",
        "dynamic_active_clusters/outbound|8080||server": "c1",
        "dynamic_route_configs/outbound|http": "r1",
        "dynamic_active_secrets/default": "s1",
        "dynamic_active_secrets/ROOTCA": "s2",
    }
    path, flags = split_config_flag(["envoy", "-c", "/x/b.yaml", "--log-level", "warning"])
    assert path == Path("/x/b.yaml") and flags == ["--log-level", "warning"]
