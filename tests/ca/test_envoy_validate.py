"""Real Envoy accepts what the CA issues: an SVID and its bundle as a listener's static secrets.

``envoy --mode validate`` loads a static secret's certificate chain, private key and trusted
CA, so it checks that they parse and that the key matches the leaf (the mismatch test below
shows it does). The certificates are issued on the real clock so Envoy sees them as current.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from interlock.ca import CertificateAuthority, Svid, generate_private_key, private_key_to_pem
from tests.ca.conftest import TRUST_DOMAIN, WEB, operator_cert

VALIDATE_TIMEOUT_SECONDS = 120  # a safety net against a hung process, not a measurement


def real_clock() -> datetime:
    return datetime.now(UTC)


def envoy() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).with_name("envoy"))
    if not Path(found).exists():
        pytest.skip("no envoy binary on PATH or beside the Python interpreter")
    return found


def tls_bootstrap(chain_pem: bytes, key_pem: bytes, bundle_pem: bytes) -> dict[str, Any]:
    """A sidecar-like inbound listener: mTLS with SDS names served from static secrets."""
    return {
        "node": {"id": "ca-validate", "cluster": "web"},
        "static_resources": {
            "secrets": [
                {
                    "name": "default",
                    "tls_certificate": {
                        "certificate_chain": {"inline_string": chain_pem.decode()},
                        "private_key": {"inline_string": key_pem.decode()},
                    },
                },
                {
                    "name": "ROOTCA",
                    "validation_context": {"trusted_ca": {"inline_string": bundle_pem.decode()}},
                },
            ],
            "listeners": [
                {
                    "name": "inbound",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.tcp_proxy",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions."
                                        "filters.network.tcp_proxy.v3.TcpProxy",
                                        "stat_prefix": "inbound",
                                        "cluster": "app",
                                    },
                                }
                            ],
                            "transport_socket": {
                                "name": "envoy.transport_sockets.tls",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions."
                                    "transport_sockets.tls.v3.DownstreamTlsContext",
                                    "require_client_certificate": True,
                                    "common_tls_context": {
                                        "tls_certificate_sds_secret_configs": [{"name": "default"}],
                                        "combined_validation_context": {
                                            "default_validation_context": {
                                                "match_typed_subject_alt_names": [
                                                    {
                                                        "san_type": "URI",
                                                        "matcher": {
                                                            "prefix": f"spiffe://{TRUST_DOMAIN}/"
                                                        },
                                                    }
                                                ]
                                            },
                                            "validation_context_sds_secret_config": {
                                                "name": "ROOTCA"
                                            },
                                        },
                                    },
                                },
                            },
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "app",
                    "type": "STATIC",
                    "load_assignment": {
                        "cluster_name": "app",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": 9,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def validate(bootstrap: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    return subprocess.run(
        [
            envoy(),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
            "--log-level",
            "warning",
        ],
        capture_output=True,
        text=True,
        timeout=VALIDATE_TIMEOUT_SECONDS,
        check=False,
    )


def assert_accepted(svid: Svid, ca: CertificateAuthority, tmp_path: Path) -> None:
    assert svid.key_pem is not None
    bootstrap = tls_bootstrap(svid.certificate_chain_pem(), svid.key_pem, ca.bundle_pem())
    result = validate(bootstrap, tmp_path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_envoy_accepts_an_svid_of_a_created_root(tmp_path: Path) -> None:
    ca = CertificateAuthority.create_root(TRUST_DOMAIN, real_clock)
    assert_accepted(ca.issue_svid(WEB), ca, tmp_path)


def test_envoy_accepts_an_svid_of_an_operator_intermediate(tmp_path: Path) -> None:
    year_ago = real_clock() - timedelta(days=365)
    root = operator_cert("Example Root", not_before=year_ago)
    issuing = operator_cert("Example Mesh CA", issuer=root, path_length=0, not_before=year_ago)
    ca = CertificateAuthority.from_pem(
        issuing.cert_pem, issuing.key_pem, root.cert_pem, clock=real_clock
    )
    assert_accepted(ca.issue_svid(WEB), ca, tmp_path)


def test_envoy_rejects_an_svid_with_another_key(tmp_path: Path) -> None:
    ca = CertificateAuthority.create_root(TRUST_DOMAIN, real_clock)
    svid = ca.issue_svid(WEB)
    wrong_key = private_key_to_pem(generate_private_key())
    result = validate(
        tls_bootstrap(svid.certificate_chain_pem(), wrong_key, ca.bundle_pem()), tmp_path
    )
    assert result.returncode != 0
    assert "KEY_VALUES_MISMATCH" in result.stdout + result.stderr
