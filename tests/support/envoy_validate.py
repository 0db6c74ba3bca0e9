"""Real-Envoy validation of translated resources.

``envoy --mode validate`` checks a bootstrap, but not resources it would fetch over xDS. So the
resources are inlined into one static bootstrap first: each RDS reference becomes the
connection manager's ``route_config``, each EDS cluster becomes a STATIC cluster whose
``load_assignment`` is its ClusterLoadAssignment, and secrets go to ``static_resources.secrets``
(each TLS context's SDS reference then names the static secret: its ``sds_config`` is cleared).
The same bootstrap, with an admin port, also runs a real Envoy in routing tests.
"""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import json_format

from interlock.xds.translate import Resources

VALIDATE_TIMEOUT_SECONDS = 120  # a safety net against a hung process, not a measurement


class NotInlinable(AssertionError):
    """The resources refer to a route configuration or load assignment they do not contain."""


class EnvoyRejected(AssertionError):
    """``envoy --mode validate`` refused the bootstrap; the message carries Envoy's output."""


def envoy_binary() -> str:
    """The ``envoy`` on PATH, else the one installed beside this Python (the venv's)."""
    found = shutil.which("envoy")
    if found:
        return found
    beside = Path(sys.executable).with_name("envoy")
    if beside.exists():
        return str(beside)
    raise FileNotFoundError("no envoy binary on PATH or beside the Python interpreter")


def _chains(listener: listener_pb2.Listener) -> Iterator[listener_pb2.FilterChain]:
    yield from listener.filter_chains
    if listener.HasField("default_filter_chain"):
        yield listener.default_filter_chain


def _inline_routes(listener: listener_pb2.Listener, resources: Resources) -> None:
    routes = {r.name: r for r in resources.routes}
    for chain in _chains(listener):
        for network_filter in chain.filters:
            if not network_filter.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                continue
            manager = hcm_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            if not manager.HasField("rds"):
                continue
            name = manager.rds.route_config_name
            if name not in routes:
                raise NotInlinable(f"listener {listener.name!r} uses missing route config {name!r}")
            manager.route_config.CopyFrom(routes[name])  # replaces `rds` (one of)
            network_filter.typed_config.Pack(manager, deterministic=True)


def _inline_endpoints(cluster: cluster_pb2.Cluster, resources: Resources) -> None:
    if cluster.type != cluster_pb2.Cluster.DiscoveryType.EDS:
        return
    assignments = {e.cluster_name: e for e in resources.endpoints}
    name = cluster.eds_cluster_config.service_name or cluster.name
    if name not in assignments:
        raise NotInlinable(f"cluster {cluster.name!r} uses missing load assignment {name!r}")
    cluster.type = cluster_pb2.Cluster.DiscoveryType.STATIC
    cluster.ClearField("eds_cluster_config")
    cluster.load_assignment.CopyFrom(assignments[name])
    cluster.load_assignment.cluster_name = cluster.name


def _static_secret_refs(socket: base_pb2.TransportSocket) -> None:
    """Make a TLS transport socket name static secrets instead of SDS ones."""
    for kind in (tls_pb2.DownstreamTlsContext, tls_pb2.UpstreamTlsContext):
        if not socket.typed_config.Is(kind.DESCRIPTOR):
            continue
        context = kind()
        socket.typed_config.Unpack(context)
        common = context.common_tls_context
        for ref in common.tls_certificate_sds_secret_configs:
            ref.ClearField("sds_config")
        if common.HasField("combined_validation_context"):
            combined = common.combined_validation_context
            combined.validation_context_sds_secret_config.ClearField("sds_config")
        if common.HasField("validation_context_sds_secret_config"):
            common.validation_context_sds_secret_config.ClearField("sds_config")
        socket.typed_config.Pack(context, deterministic=True)


def _sockets(
    bootstrap: bootstrap_pb2.Bootstrap,
) -> Iterator[base_pb2.TransportSocket]:
    for listener in bootstrap.static_resources.listeners:
        for chain in _chains(listener):
            if chain.HasField("transport_socket"):
                yield chain.transport_socket
    for cluster in bootstrap.static_resources.clusters:
        if cluster.HasField("transport_socket"):
            yield cluster.transport_socket
        for match in cluster.transport_socket_matches:
            yield match.transport_socket


@functools.cache
def _stand_in_material() -> dict[str, bytes]:
    """A CA, its CRL, and a leaf certificate and key: what files a policy names on a proxy's
    host (DestinationRule tls) stand for when the resources are validated here."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in")]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "trusted_ca": ca.public_bytes(pem),
        "crl": crl.public_bytes(pem),
        "certificate_chain": leaf.public_bytes(pem),
        "private_key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }


def _stand_in_files(bootstrap: bootstrap_pb2.Bootstrap, directory: Path) -> None:
    """Point every file a TLS context names that does not exist here at a stand-in of the same
    kind in ``directory`` (Envoy reads them when it validates)."""
    material = _stand_in_material()
    for socket in _sockets(bootstrap):
        for kind in (tls_pb2.DownstreamTlsContext, tls_pb2.UpstreamTlsContext):
            if not socket.typed_config.Is(kind.DESCRIPTOR):
                continue
            context = kind()
            socket.typed_config.Unpack(context)
            common = context.common_tls_context
            sources = [
                ("trusted_ca", common.validation_context.trusted_ca),
                ("crl", common.validation_context.crl),
            ]
            for certificate in common.tls_certificates:
                sources += [
                    ("certificate_chain", certificate.certificate_chain),
                    ("private_key", certificate.private_key),
                ]
            for what, source in sources:
                if source.filename and not Path(source.filename).exists():
                    stand_in = directory / f"stand-in-{what}.pem"
                    stand_in.write_bytes(material[what])
                    source.filename = str(stand_in)
            socket.typed_config.Pack(context, deterministic=True)


def static_bootstrap(
    resources: Resources,
    *,
    node_id: str = "interlock-validate",
    node_cluster: str = "interlock-validate",
    admin_port: int | None = None,
    secrets: Iterable[secret_pb2.Secret] = (),
) -> bootstrap_pb2.Bootstrap:
    """One bootstrap holding every resource of ``resources`` (and ``secrets``, served beside
    them per proxy), with nothing left to fetch.

    The input is not modified. ``admin_port`` adds an admin listener on 127.0.0.1.
    """
    bootstrap = bootstrap_pb2.Bootstrap(node=base_pb2.Node(id=node_id, cluster=node_cluster))
    for source in resources.listeners:
        listener = bootstrap.static_resources.listeners.add()
        listener.CopyFrom(source)
        _inline_routes(listener, resources)
    for source in resources.clusters:
        cluster = bootstrap.static_resources.clusters.add()
        cluster.CopyFrom(source)
        _inline_endpoints(cluster, resources)
    bootstrap.static_resources.secrets.extend(resources.secrets)
    bootstrap.static_resources.secrets.extend(secrets)
    for socket in _sockets(bootstrap):
        _static_secret_refs(socket)
    if admin_port is not None:
        bootstrap.admin.address.CopyFrom(
            address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=admin_port)
            )
        )
    return bootstrap


def bootstrap_json(bootstrap: bootstrap_pb2.Bootstrap) -> str:
    """``bootstrap`` as the JSON text Envoy reads with ``-c FILE.json``."""
    return str(json_format.MessageToJson(bootstrap, preserving_proto_field_name=True, indent=1))


def validate(
    resources: Resources, secrets: Iterable[secret_pb2.Secret] = (), *, binary: str | None = None
) -> None:
    """Run ``envoy --mode validate`` (``binary``, else :func:`envoy_binary`) on ``resources``
    inlined into a static bootstrap.

    Raises :class:`EnvoyRejected` with Envoy's output when Envoy refuses the configuration, and
    :class:`NotInlinable` when the resources are not self-contained. The temporary file is
    removed whatever happens; the process never outlives the call.
    """
    bootstrap = static_bootstrap(resources, secrets=secrets)
    with tempfile.TemporaryDirectory(prefix="interlock-validate-") as tmp:
        _stand_in_files(bootstrap, Path(tmp))
        text = bootstrap_json(bootstrap)
        path = Path(tmp) / "bootstrap.json"
        path.write_text(text)
        result = subprocess.run(
            [
                binary or envoy_binary(),
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
    if result.returncode != 0:
        raise EnvoyRejected(
            f"envoy --mode validate exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n--- bootstrap\n{text}"
        )
