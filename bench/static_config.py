"""B11's static-identical pair: a running sidecar Envoy's configuration, delivered statically.

Given a sidecar Envoy's ``/config_dump?include_eds`` and its bootstrap, :func:`static_identical`
builds a static bootstrap with the same listeners (RDS inlined), clusters (EDS as STATIC with
the dumped assignments) and secrets (SDS as static secrets; config_dump redacts keys, so the
certificate and key are a fresh SVID with the same SPIFFE ID and key type, see
:class:`Credentials`). :func:`same_request_path` checks the result against the sidecar's dump
and :func:`xds_versions` reads what the sidecar holds (see bench/dataplane.py for how B11 uses
them).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def admin_address(port: int) -> dict[str, Any]:
    """An Envoy ``admin`` block on 127.0.0.1:``port``."""
    return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def cp_clock() -> datetime:
    return datetime.now(UTC)


def envoy_command(parent_pid: int) -> tuple[int, list[str]]:
    """(pid, command line) of the Envoy that ``parent_pid`` (an `interlock sidecar`) started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            if ppid == parent_pid and argv and Path(argv[0].decode()).name == "envoy":
                return int(entry.name), [a.decode() for a in argv]
    raise RuntimeError(f"no Envoy child of process {parent_pid}")


def split_config_flag(argv: list[str]) -> tuple[Path, list[str]]:
    """(the bootstrap file, every other flag) of an Envoy command line."""
    flags = argv[1:]
    for i, flag in enumerate(flags):
        if flag in ("-c", "--config-path"):
            return Path(flags[i + 1]), flags[:i] + flags[i + 2 :]
    raise RuntimeError(f"no -c in the Envoy command line {argv}")


def _dump_sections(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["@type"].rsplit(".", 1)[-1]: c for c in dump.get("configs", [])}


def _message(value: dict[str, Any]) -> dict[str, Any]:
    """A dumped resource as it goes into a bootstrap: a copy without its Any ``@type``."""
    out = copy.deepcopy(value)
    out.pop("@type", None)
    return out


def _inline_routes(value: Any, routes: dict[str, dict[str, Any]]) -> None:
    """Replace every connection manager's ``rds`` with the ``route_config`` it names."""
    if isinstance(value, dict):
        if "rds" in value and str(value.get("@type", "")).endswith(".HttpConnectionManager"):
            name = value.pop("rds")["route_config_name"]
            if name not in routes:
                raise RuntimeError(f"route configuration {name!r} is not in the config dump")
            value["route_config"] = copy.deepcopy(routes[name])
        for item in value.values():
            _inline_routes(item, routes)
    elif isinstance(value, list):
        for item in value:
            _inline_routes(item, routes)


def _static_secret_refs(value: Any) -> None:
    """Make every SDS secret reference name a static secret: drop its ``sds_config``."""
    if isinstance(value, dict):
        if "name" in value and "sds_config" in value:
            del value["sds_config"]
        for item in value.values():
            _static_secret_refs(item)
    elif isinstance(value, list):
        for item in value:
            _static_secret_refs(item)


def _remap_ports(value: Any, ports: dict[int, int]) -> None:
    """Move every socket address on a port of ``ports`` to the port it maps to."""
    if isinstance(value, dict):
        socket = value.get("socket_address")
        if isinstance(socket, dict) and socket.get("port_value") in ports:
            socket["port_value"] = ports[socket["port_value"]]
        for item in value.values():
            _remap_ports(item, ports)
    elif isinstance(value, list):
        for item in value:
            _remap_ports(item, ports)


def _load_assignment(dumped: dict[str, Any], cluster: str) -> dict[str, Any]:
    """A dumped ClusterLoadAssignment as a cluster's inline ``load_assignment``. (The dump
    spells an unset locality weight as 0, which a config may not; it is left unset.)"""
    out = _message(dumped)
    out["cluster_name"] = cluster
    for locality in out.get("endpoints", []):
        if not locality.get("load_balancing_weight"):
            locality.pop("load_balancing_weight", None)
    return out


def _pem(data_source: dict[str, Any]) -> bytes:
    if "inline_bytes" in data_source:
        return base64.b64decode(data_source["inline_bytes"])
    if "inline_string" in data_source:
        return str(data_source["inline_string"]).encode()
    raise RuntimeError(f"cannot read a certificate from {sorted(data_source)}")


@dataclass
class Credentials:
    """Files of SVIDs for static Envoys, from one fresh CA of the trust domain seen."""

    directory: Path
    ca: Any = None
    files: dict[str, tuple[str, str]] = field(default_factory=dict)

    def _authority(self, trust_domain: str, algorithm: Any) -> Any:
        from interlock.ca import CertificateAuthority

        if self.ca is None:
            self.ca = CertificateAuthority.create_root(
                trust_domain, cp_clock, key_algorithm=algorithm
            )
            (self.directory / "bundle.pem").write_bytes(self.ca.bundle_pem())
        return self.ca

    def svid_files(self, certificate_pem: bytes) -> tuple[str, str]:
        """(chain file, key file) of an SVID with the SPIFFE ID and key type of
        ``certificate_pem`` (the first certificate of a dumped chain)."""
        from cryptography import x509

        from interlock.ca import SpiffeId

        cert = x509.load_pem_x509_certificates(certificate_pem)[0]
        uris = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier)
        spiffe_id = SpiffeId.parse(uris[0])
        if str(spiffe_id) not in self.files:
            algorithm = _key_algorithm(cert.public_key())
            ca = self._authority(spiffe_id.trust_domain, algorithm)
            svid = ca.issue_svid(spiffe_id, lifetime=timedelta(hours=2), key_algorithm=algorithm)
            stem = self.directory / f"svid-{len(self.files)}"
            chain, key = stem.with_suffix(".crt"), stem.with_suffix(".key")
            chain.write_bytes(svid.certificate_chain_pem())
            key.write_bytes(svid.key_pem)
            key.chmod(0o600)
            self.files[str(spiffe_id)] = (str(chain), str(key))
        return self.files[str(spiffe_id)]

    def bundle_file(self, roots_pem: bytes) -> str:
        from cryptography import x509

        root = x509.load_pem_x509_certificates(roots_pem)[0]
        uris = root.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier)
        trust_domain = uris[0].removeprefix("spiffe://").split("/", 1)[0]
        self._authority(trust_domain, _key_algorithm(root.public_key()))
        return str(self.directory / "bundle.pem")


def _key_algorithm(public_key: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from interlock.ca import KeyAlgorithm

    if isinstance(public_key, ec.EllipticCurvePublicKey):
        big = public_key.curve.key_size == 384
        return KeyAlgorithm.ECDSA_P384 if big else KeyAlgorithm.ECDSA_P256
    if isinstance(public_key, rsa.RSAPublicKey):
        return KeyAlgorithm.RSA_3072 if public_key.key_size >= 3072 else KeyAlgorithm.RSA_2048
    raise RuntimeError(f"unexpected key type {type(public_key).__name__}")


def _static_secret(dumped: dict[str, Any], credentials: Credentials) -> dict[str, Any]:
    """A dumped SDS secret as a static one of the same name, its material in files."""
    secret = _message(dumped)
    if "tls_certificate" in secret:
        chain, key = credentials.svid_files(_pem(secret["tls_certificate"]["certificate_chain"]))
        secret["tls_certificate"] = {
            "certificate_chain": {"filename": chain},
            "private_key": {"filename": key},
        }
    elif "validation_context" in secret:
        context = secret["validation_context"]
        context["trusted_ca"] = {"filename": credentials.bundle_file(_pem(context["trusted_ca"]))}
    else:
        raise RuntimeError(f"secret {secret.get('name')!r}: neither certificate nor trust bundle")
    return secret


def static_identical(
    dump: dict[str, Any],
    bootstrap: dict[str, Any],
    *,
    admin_port: int,
    ports: dict[int, int],
    credentials: Credentials,
) -> dict[str, Any]:
    """The static bootstrap of the Envoy that ``dump`` (``/config_dump?include_eds``) and
    ``bootstrap`` (its bootstrap file) describe: every active listener, cluster, route
    configuration, load assignment and secret inline; sockets on a port of ``ports`` moved;
    the admin API on ``admin_port``."""
    sections = _dump_sections(dump)
    routes = {
        r["route_config"]["name"]: _message(r["route_config"])
        for r in sections["RoutesConfigDump"].get("dynamic_route_configs", [])
    }
    endpoints = {
        e["endpoint_config"]["cluster_name"]: e["endpoint_config"]
        for e in sections["EndpointsConfigDump"].get("dynamic_endpoint_configs", [])
    }
    listeners = []
    for item in sections["ListenersConfigDump"].get("dynamic_listeners", []):
        if "active_state" not in item:
            continue
        listener = _message(item["active_state"]["listener"])
        _inline_routes(listener, routes)
        listeners.append(listener)
    clusters = []
    for item in sections["ClustersConfigDump"].get("dynamic_active_clusters", []):
        cluster = _message(item["cluster"])
        if cluster.get("type") == "EDS":
            eds = cluster.pop("eds_cluster_config", {})
            service = eds.get("service_name") or cluster["name"]
            if service not in endpoints:
                raise RuntimeError(f"load assignment {service!r} is not in the config dump")
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = _load_assignment(endpoints[service], cluster["name"])
        clusters.append(cluster)
    secrets = [
        _static_secret(item["secret"], credentials)
        for item in sections["SecretsConfigDump"].get("dynamic_active_secrets", [])
    ]
    _remap_ports(listeners, ports)
    _remap_ports(clusters, ports)
    _static_secret_refs(listeners)
    _static_secret_refs(clusters)

    config = copy.deepcopy(bootstrap)
    config.pop("dynamic_resources", None)
    config["admin"] = admin_address(admin_port)
    static = config.setdefault("static_resources", {})
    static["listeners"] = (static.get("listeners") or []) + listeners
    static["clusters"] = (static.get("clusters") or []) + clusters
    static["secrets"] = (static.get("secrets") or []) + secrets
    if '"ads"' in json.dumps(config):
        raise RuntimeError("the static bootstrap still names an xDS (ADS) source")
    return config


def same_request_path(dynamic: dict[str, Any], static: dict[str, Any]) -> bool:
    """Whether a static Envoy's config dump holds the same listeners (with their routes
    inline), cluster names and secret names as a sidecar's dump, apart from how they were
    delivered (RDS, EDS, SDS sources) and the listeners' ports."""

    def listeners(dump: dict[str, Any], key: str) -> dict[str, Any]:
        sections = _dump_sections(dump)
        routes = {
            r["route_config"]["name"]: _message(r["route_config"])
            for r in sections.get("RoutesConfigDump", {}).get("dynamic_route_configs", [])
        }
        out = {}
        for item in sections.get("ListenersConfigDump", {}).get(key, []):
            listener = _message((item.get("active_state") or item)["listener"])
            listener["address"]["socket_address"]["port_value"] = 0
            _inline_routes(listener, routes)
            _static_secret_refs(listener)
            out[listener["name"]] = listener
        return out

    def names(dump: dict[str, Any], section: str, key: str, inner: str) -> set[str]:
        items = _dump_sections(dump).get(section, {}).get(key, [])
        return {(item.get(inner) or item)["name"] for item in items}

    clusters = ("ClustersConfigDump", "dynamic_active_clusters", "cluster")
    secrets = ("SecretsConfigDump", "dynamic_active_secrets", "secret")
    return (
        listeners(dynamic, "dynamic_listeners") == listeners(static, "static_listeners")
        and names(dynamic, *clusters)
        <= names(static, "ClustersConfigDump", "static_clusters", "cluster")
        and names(dynamic, *secrets)
        <= names(static, "SecretsConfigDump", "static_secrets", "secret")
    )


def xds_versions(dump: dict[str, Any]) -> dict[str, str]:
    """The version of every dynamic resource in a config dump (resource kind/name: version)."""
    out: dict[str, str] = {}
    sections = _dump_sections(dump)
    for section, key in (
        ("ListenersConfigDump", "dynamic_listeners"),
        ("ClustersConfigDump", "dynamic_active_clusters"),
        ("RoutesConfigDump", "dynamic_route_configs"),
        ("SecretsConfigDump", "dynamic_active_secrets"),
    ):
        for item in sections.get(section, {}).get(key, []):
            state = item.get("active_state", item)
            inner = state.get("listener") or state.get("cluster") or state.get("route_config")
            name = item.get("name") or (inner or {}).get("name", "?")
            out[f"{key}/{name}"] = str(state.get("version_info", ""))
    return out
