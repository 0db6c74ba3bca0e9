"""Which workload-scoped security policies (AuthorizationPolicy, RequestAuthentication) apply to
one proxy, with Istio's scoping rules:

- a policy in the *root namespace* (``interlock-system`` by default) applies to every workload
  of the mesh — all of them without a ``selector``, the ones it selects with one;
- a policy in the workload's own namespace applies to all its workloads without a
  ``selector``, to the ones it selects with one;
- a selector matches the labels the proxy's instance was registered with, plus the implicit
  ``app: <service>``.

Unlike PeerAuthentication (one mode wins), every applicable policy counts: their rules add up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from interlock.model import Instance, Proxy
from interlock.model.policy.common import WorkloadSelector
from interlock.model.policy.policies import Policy
from interlock.model.policy.selectors import selects


class _Scoped(Protocol):
    @property
    def selector(self) -> WorkloadSelector | None: ...


S = TypeVar("S", bound=_Scoped)


def proxy_instance(proxy: Proxy) -> Instance:
    """The instance ``proxy`` serves, as selectors see it (its registered labels)."""
    return Instance(
        service=proxy.service,
        instance_id=proxy.node_id or "-",
        address=proxy.inbound_address,
        port=proxy.inbound_port or 0,
        labels=dict(proxy.labels),
    )


def _age(policy: Policy[Any]) -> tuple[int, str, str]:
    resource = policy.resource
    return resource.created_revision or 2**62, resource.namespace, resource.name


def applicable(policies: Iterable[Policy[S]], proxy: Proxy, root_namespace: str) -> list[Policy[S]]:
    """The ``policies`` that apply to ``proxy``'s workload, oldest first."""
    instance = proxy_instance(proxy)
    found = [
        p
        for p in policies
        if p.namespace in (proxy.namespace, root_namespace)
        and (p.spec.selector is None or selects(p.spec.selector.match_labels, instance))
    ]
    return sorted(found, key=_age)
