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
- ``SIMPLE`` and ``MUTUAL`` are not translated yet (a warning on the rule): the default holds.

The choice is per endpoint: its metadata selects the cluster's mTLS transport socket
(:func:`interlock.xds.translate.endpoints.load_assignment`). Without a mesh identity nothing is
mTLS and the mode changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from interlock.model import Instance, MeshState, Problem, Service, Severity
from interlock.model.identity import MeshIdentity
from interlock.model.policy.destination_rule import TLSMode
from interlock.xds.translate import mtls
from interlock.xds.translate.destinations import ClusterPlan


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
    if identity is None or wanted is TLSMode.DISABLE:
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
