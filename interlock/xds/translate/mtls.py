"""Which mutual-TLS mode a workload's inbound traffic requires, from PeerAuthentication.

Istio's semantics, with Interlock's names:

- scopes, most specific first: a policy in the workload's namespace whose ``selector`` matches
  the instance's labels (every instance also carries ``app: <service>``); a policy without a
  selector in the workload's namespace; a policy without a selector in the *root namespace*
  (``interlock-system`` by default, :attr:`MeshIdentity.root_namespace`): the whole mesh;
- when several policies share a scope, the oldest (first created) wins;
- ``UNSET`` inherits from the next scope; ``portLevelMtls`` (selector policies only) overrides
  the mode for one port, and its ``UNSET`` inherits the policy's own mode;
- with no policy at all the mode is ``PERMISSIVE``: plain text and mTLS are both accepted.

Only an instance a sidecar fronts (``Instance.sidecar``) has an inbound listener that could
take mTLS; any other instance takes whatever its app speaks, and callers send it plain text.

A workload's port is the port its instance is registered at, which is where mesh traffic
arrives (the sidecar's ``--inbound-port``); callers know it from the registry, so both sides of
a connection agree on the mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from interlock.model import Instance, MeshState, Proxy
from interlock.model.identity import MeshIdentity
from interlock.model.policy.peer_authentication import MTLSMode, PeerAuthentication
from interlock.model.policy.policies import Policy
from interlock.model.policy.selectors import selects

DEFAULT_MODE = MTLSMode.PERMISSIVE
"""The mode of a workload no PeerAuthentication speaks for."""


def _oldest(policies: Iterable[Policy[PeerAuthentication]]) -> Policy[PeerAuthentication] | None:
    ordered = sorted(
        policies,
        key=lambda p: (p.resource.created_revision or 2**62, p.namespace, p.name),
    )
    return ordered[0] if ordered else None


def _set(mode: MTLSMode | None) -> MTLSMode | None:
    return None if mode in (None, MTLSMode.UNSET) else mode


def _policy_mode(policy: Policy[PeerAuthentication] | None) -> MTLSMode | None:
    if policy is None or policy.spec.mtls is None:
        return None
    return _set(policy.spec.mtls.mode)


def workload_mode(
    state: MeshState,
    *,
    namespace: str,
    instance: Instance,
    root_namespace: str,
) -> MTLSMode:
    """The effective mode (STRICT, PERMISSIVE or DISABLE) of ``instance``'s inbound traffic on
    its registered port, in ``namespace`` (its service's)."""
    policies = state.policies.peer_authentications
    selected = _oldest(
        p
        for p in policies
        if p.namespace == namespace
        and p.spec.selector is not None
        and selects(p.spec.selector.match_labels, instance)
    )
    if selected is not None:
        port_setting = selected.spec.port_level_mtls.get(instance.port)
        mode = _set(port_setting.mode if port_setting is not None else None)
        mode = mode or _policy_mode(selected)
        if mode is not None:
            return mode
    for scope in (namespace, root_namespace):
        scoped = _oldest(p for p in policies if p.namespace == scope and p.spec.selector is None)
        mode = _policy_mode(scoped)
        if mode is not None:
            return mode
    return DEFAULT_MODE


def proxy_mode(state: MeshState, proxy: Proxy, root_namespace: str) -> MTLSMode:
    """The mode of ``proxy``'s inbound listener (its labels are its instance's, as registered;
    its port is its ``inbound_port``)."""
    instance = Instance(
        service=proxy.service,
        instance_id=proxy.node_id or "-",
        address=proxy.inbound_address,
        port=proxy.inbound_port or 0,
        labels=dict(proxy.labels),
    )
    return workload_mode(
        state, namespace=proxy.namespace, instance=instance, root_namespace=root_namespace
    )


def endpoint_modes(
    state: MeshState, namespace: str, instances: Iterable[Instance], root_namespace: str
) -> Mapping[str, MTLSMode]:
    """instance id → mode, for the instances of one service of ``namespace``."""
    return {
        i.instance_id: workload_mode(
            state, namespace=namespace, instance=i, root_namespace=root_namespace
        )
        for i in instances
    }


def mutual_tls_instances(state: MeshState, service: str, identity: MeshIdentity | None) -> set[str]:
    """The ids of ``service``'s instances that accept mTLS: a sidecar fronts them and their
    mode accepts it (none without an identity)."""
    if identity is None:
        return set()
    namespace = state.services[service].namespace
    fronted = [i for i in state.instances_of(service) if i.sidecar]
    modes = endpoint_modes(state, namespace, fronted, identity.root_namespace)
    return {instance_id for instance_id, mode in modes.items() if accepts_mtls(mode)}


def accepts_mtls(mode: MTLSMode) -> bool:
    """True when a workload in ``mode`` accepts mutual TLS (callers then use it)."""
    return mode in (MTLSMode.STRICT, MTLSMode.PERMISSIVE)


def accepts_plaintext(mode: MTLSMode) -> bool:
    return mode in (MTLSMode.PERMISSIVE, MTLSMode.DISABLE)
