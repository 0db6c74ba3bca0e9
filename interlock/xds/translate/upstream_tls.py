"""What a caller sends each instance of a service's cluster: mutual TLS or plain text.

- By default (Istio's auto-mTLS): mTLS to every instance a sidecar fronts
  (``Instance.sidecar``) whose PeerAuthentication mode accepts it, plain text to the others —
  a database, a legacy app, another fleet's endpoint registered over REST.
- A DestinationRule ``tls.mode: ISTIO_MUTUAL`` (on the host, or on one subset) makes mTLS
  required: an instance that cannot take it (no sidecar, or its PeerAuthentication mode is
  DISABLE) is left out of the cluster — plain text is never sent to it — and each one is a
  problem naming it (resource ``Instance/<namespace>/<service>/<id>``).
- ``tls.mode: DISABLE``: plain text to every instance (as in Istio, a STRICT callee then
  refuses the connection).
- ``SIMPLE`` and ``MUTUAL``: the caller's sidecar originates TLS of its own to every instance
  (a service outside the mesh's mTLS, a ServiceEntry host on 443): the cluster's transport
  socket verifies the server against ``caCertificates`` (and ``subjectAltNames``, ``caCrl``),
  sends ``sni``, and with MUTUAL presents ``clientCertificate``/``privateKey`` — files on the
  caller's host, as in Istio's sidecars (:func:`originate`).

The choice is per endpoint: its metadata selects the cluster's mTLS transport socket
(:func:`interlock.xds.translate.endpoints.load_assignment`). Without a mesh identity nothing is
mTLS and the mode changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from interlock.model import Instance, MeshState, Problem, Service, Severity
from interlock.model.identity import MeshIdentity
from interlock.model.policy.destination_rule import ClientTLSSettings, TLSMode
from interlock.xds.translate import mtls
from interlock.xds.translate.common import typed
from interlock.xds.translate.destinations import ClusterPlan
from interlock.xds.translate.tls import TLS_TRANSPORT_SOCKET

_SAN = common_pb2.SubjectAltNameMatcher


@dataclass(frozen=True)
class ClusterEndpoints:
    """The instances one cluster holds, which of them are sent mTLS, and why some are not
    there."""

    instances: tuple[Instance, ...]
    mutual_tls: frozenset[str]
    problems: tuple[Problem, ...] = ()


def instance_resource(service: Service, instance_id: str) -> str:
    """How a problem names one instance: ``Instance/<namespace>/<service>/<id>``."""
    return f"{instances_resource(service)}{instance_id}"


def instances_resource(service: Service) -> str:
    """What every :func:`instance_resource` of ``service`` starts with."""
    return f"Instance/{service.namespace}/{service.name}/"


def _left_out(service: Service, instance: Instance, cluster: str) -> Problem:
    if instance.sidecar:
        field, why = "mtls", "its PeerAuthentication mode is DISABLE (plain text only)"
    else:
        field, why = "sidecar", "no sidecar fronts it (registered with sidecar: false)"
    return Problem(
        instance_resource(service, instance.instance_id),
        field,
        f"the DestinationRule for {service.fqdn} requires mutual TLS (tls.mode ISTIO_MUTUAL), "
        f"but {why}; it is left out of {cluster} rather than sent plain text",
        Severity.ERROR,
    )


def cluster_endpoints(
    state: MeshState,
    identity: MeshIdentity | None,
    plan: ClusterPlan,
    instances: Sequence[Instance],
) -> ClusterEndpoints:
    """What ``plan``'s cluster (of a mesh service) holds of ``instances`` (its service's, or
    the ones its subset selects), as the plan's ``tls`` says."""
    service = plan.service
    assert service is not None, "only a mesh service's cluster has instances"
    tls = plan.policy.tls
    wanted = tls.mode if tls is not None else None
    if identity is None or wanted is TLSMode.DISABLE or (tls is not None and tls.originates):
        return ClusterEndpoints(tuple(instances), frozenset())
    fronted = [i for i in instances if i.sidecar]
    modes = mtls.endpoint_modes(state, service.namespace, fronted, identity.root_namespace)
    able = frozenset(iid for iid, mode in modes.items() if mtls.accepts_mtls(mode))
    if wanted is not TLSMode.ISTIO_MUTUAL:
        return ClusterEndpoints(tuple(instances), able)
    kept = tuple(i for i in instances if i.instance_id in able)
    problems = tuple(
        _left_out(service, i, plan.name) for i in instances if i.instance_id not in able
    )
    return ClusterEndpoints(kept, able, problems)


def _san(value: str) -> common_pb2.SubjectAltNameMatcher:
    """A ``subjectAltNames`` entry: a URI (``spiffe://…``), an IP address, or a DNS name."""
    exact = string_pb2.StringMatcher(exact=value)
    if "://" in value:
        kind = _SAN.URI
    else:
        try:
            ipaddress.ip_address(value)
            kind = _SAN.IP_ADDRESS
        except ValueError:
            kind = _SAN.DNS
    return _SAN(san_type=kind, matcher=exact)


def originate(settings: ClientTLSSettings, alpn: tuple[str, ...] = ()) -> base_pb2.TransportSocket:
    """The transport socket of a cluster whose DestinationRule says ``SIMPLE`` or ``MUTUAL``."""
    common = tls_pb2.CommonTlsContext(alpn_protocols=list(alpn))
    if settings.mode is TLSMode.MUTUAL:
        assert settings.client_certificate and settings.private_key, "checked by the schema"
        common.tls_certificates.append(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=settings.client_certificate),
                private_key=base_pb2.DataSource(filename=settings.private_key),
            )
        )
    if not settings.insecure_skip_verify:
        assert settings.ca_certificates, "checked by the schema"
        validation = common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(filename=settings.ca_certificates),
            match_typed_subject_alt_names=[_san(v) for v in settings.subject_alt_names],
        )
        if settings.ca_crl:
            validation.crl.CopyFrom(base_pb2.DataSource(filename=settings.ca_crl))
        common.validation_context.CopyFrom(validation)
    context = tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=settings.sni or "")
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=typed(context))
