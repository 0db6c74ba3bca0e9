"""Which instances a policy's labels select (subsets, ``selector.matchLabels``).

Every instance carries the implicit label ``app: <its service's name>`` unless it sets ``app``
itself, so selectors written for Kubernetes (``matchLabels: {app: reviews}``) work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from interlock.model.service import Instance

if TYPE_CHECKING:
    from interlock.model.state import MeshState

APP_LABEL = "app"


def workload_labels(instance: Instance) -> Mapping[str, str]:
    """The labels selectors see on ``instance``: its own plus the implicit ``app``."""
    if APP_LABEL in instance.labels:
        return instance.labels
    return {**instance.labels, APP_LABEL: instance.service}


def selects(match_labels: Mapping[str, str], instance: Instance) -> bool:
    """True when every label in ``match_labels`` is on ``instance`` with the same value."""
    labels = workload_labels(instance)
    return all(labels.get(k) == v for k, v in match_labels.items())


def instances_in_namespace(state: MeshState, namespace: str) -> list[Instance]:
    """Every instance of every service of ``namespace``."""
    return [
        instance
        for service in state.services.values()
        if service.namespace == namespace
        for instance in state.instances_of(service.name)
    ]


def selected_instances(
    state: MeshState, namespace: str, match_labels: Mapping[str, str]
) -> list[Instance]:
    """The instances of ``namespace`` that ``match_labels`` selects."""
    return [i for i in instances_in_namespace(state, namespace) if selects(match_labels, i)]
