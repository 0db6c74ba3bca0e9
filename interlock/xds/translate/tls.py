"""Mutual TLS between sidecars: transport sockets, the inbound listener's TLS filter chain, and
the secrets (SDS) they name.

Every TLS context names two secrets, fetched over the proxy's own xDS stream (ADS, or the
per-type SDS service of a per-type fleet): ``default`` (the proxy's X.509-SVID and key) and
``ROOTCA`` (the trust bundle). Those secrets are per proxy and are not made here from the mesh
state: the glue issues them and serves them beside the view's resources (see
:func:`identity_secrets`, which only wraps PEM bytes it is given).

- Client side (ISTIO_MUTUAL-like): the caller presents its SVID and accepts only a server whose
  URI SAN is exactly the destination service's SPIFFE ID, chaining to the bundle.
- Server side: the client must present an SVID of the mesh's trust domain (URI SAN prefix
  ``spiffe://<trust-domain>/``) chaining to the bundle; who may call is for authorization.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from interlock.model.identity import MeshIdentity
from interlock.model.policy.peer_authentication import MTLSMode
from interlock.xds import naming
from interlock.xds.translate.common import boolean, typed

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
#: ALPN offered on HTTP connections between sidecars (Envoy picks the codec by it).
HTTP_ALPN = ("h2", "http/1.1")

_SAN = common_pb2.SubjectAltNameMatcher


def _sds(name: str, source: config_source_pb2.ConfigSource) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def _common(
    source: config_source_pb2.ConfigSource,
    san: string_pb2.StringMatcher,
    alpn: tuple[str, ...],
) -> tls_pb2.CommonTlsContext:
    return tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[_sds(naming.svid_secret(), source)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(
                match_typed_subject_alt_names=[_SAN(san_type=_SAN.URI, matcher=san)]
            ),
            validation_context_sds_secret_config=_sds(naming.trust_bundle_secret(), source),
        ),
        alpn_protocols=list(alpn),
    )


def upstream_mtls(
    identity: MeshIdentity,
    namespace: str,
    service: str,
    source: config_source_pb2.ConfigSource,
    alpn: tuple[str, ...] = (),
) -> base_pb2.TransportSocket:
    """The client side of mTLS to ``service``: present our SVID, accept only its SPIFFE ID."""
    exact = string_pb2.StringMatcher(exact=identity.spiffe_id(namespace, service))
    context = tls_pb2.UpstreamTlsContext(common_tls_context=_common(source, exact, alpn))
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=typed(context))


def downstream_mtls(
    identity: MeshIdentity,
    source: config_source_pb2.ConfigSource,
    alpn: tuple[str, ...] = (),
) -> base_pb2.TransportSocket:
    """The server side of mTLS: require a client SVID of this trust domain."""
    prefix = string_pb2.StringMatcher(prefix=identity.prefix)
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=_common(source, prefix, alpn),
        require_client_certificate=boolean(True),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=typed(context))


def identity_secrets(
    certificate_chain_pem: bytes, private_key_pem: bytes, bundle_pem: bytes
) -> tuple[secret_pb2.Secret, secret_pb2.Secret]:
    """The two secrets of one proxy: ``default`` (its SVID chain and key) and ``ROOTCA`` (the
    trust bundle). The bytes are the caller's; nothing here reads or keeps them."""
    svid = secret_pb2.Secret(
        name=naming.svid_secret(),
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=certificate_chain_pem),
            private_key=base_pb2.DataSource(inline_bytes=private_key_pem),
        ),
    )
    bundle = secret_pb2.Secret(
        name=naming.trust_bundle_secret(),
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=bundle_pem)
        ),
    )
    return svid, bundle


@dataclass(frozen=True)
class InboundSecurity:
    """How the inbound listener of one sidecar takes connections: ``mode`` (from
    PeerAuthentication), the mesh's identity, and where its secrets come from."""

    identity: MeshIdentity
    mode: MTLSMode
    source: config_source_pb2.ConfigSource


def tls_inspector() -> listener_components_pb2.ListenerFilter:
    """The listener filter that tells TLS from plain text (for filter chain matching)."""
    return listener_components_pb2.ListenerFilter(
        name=TLS_INSPECTOR, typed_config=typed(tls_inspector_pb2.TlsInspector())
    )


def forward_client_identity(manager: hcm_pb2.HttpConnectionManager) -> None:
    """Tell the app who called: ``x-forwarded-client-cert`` with the caller's URI SAN (its
    SPIFFE ID) on mTLS connections; whatever a client sent in that header is dropped first."""
    manager.forward_client_cert_details = hcm_pb2.HttpConnectionManager.SANITIZE_SET
    manager.set_current_client_cert_details.CopyFrom(
        hcm_pb2.HttpConnectionManager.SetCurrentClientCertDetails(uri=True)
    )


def inbound_chains(
    security: InboundSecurity,
    network_filter: listener_components_pb2.Filter,
    alpn: tuple[str, ...],
) -> tuple[list[listener_components_pb2.FilterChain], bool]:
    """The inbound filter chains for ``security.mode``, and whether the listener needs the
    TLS inspector: STRICT one ``mtls`` chain (plain text matches no chain and is closed),
    PERMISSIVE ``mtls`` and ``plaintext`` chains told apart by the transport, DISABLE one
    ``plaintext`` chain."""
    match = listener_components_pb2.FilterChainMatch
    chains: list[listener_components_pb2.FilterChain] = []
    if security.mode in (MTLSMode.STRICT, MTLSMode.PERMISSIVE):
        chains.append(
            listener_components_pb2.FilterChain(
                name=naming.MTLS_CHAIN,
                filter_chain_match=match(transport_protocol="tls"),
                filters=[network_filter],
                transport_socket=downstream_mtls(security.identity, security.source, alpn),
            )
        )
    if security.mode is MTLSMode.PERMISSIVE:
        chains.append(
            listener_components_pb2.FilterChain(
                name=naming.PLAINTEXT_CHAIN,
                filter_chain_match=match(transport_protocol="raw_buffer"),
                filters=[network_filter],
            )
        )
    if security.mode is MTLSMode.DISABLE:
        chains.append(
            listener_components_pb2.FilterChain(
                name=naming.PLAINTEXT_CHAIN, filters=[network_filter]
            )
        )
    return chains, security.mode is not MTLSMode.DISABLE
