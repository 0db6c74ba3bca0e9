"""The pure domain: stdlib only, frozen values, no I/O."""

from interlock.model.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InterlockError,
    InvalidInput,
    NotFound,
    Unavailable,
)
from interlock.model.node_metadata import ProxyKind
from interlock.model.problem import Problem, Severity
from interlock.model.proxy import Proxy
from interlock.model.resource import Resource, ResourceKey
from interlock.model.service import Instance, Service, ServiceProtocol, frozen_labels
from interlock.model.state import MeshState, StateChange

__all__ = [
    "Conflict",
    "FieldError",
    "Forbidden",
    "Instance",
    "InterlockError",
    "InvalidInput",
    "MeshState",
    "NotFound",
    "Problem",
    "Proxy",
    "ProxyKind",
    "Resource",
    "ResourceKey",
    "Service",
    "ServiceProtocol",
    "Severity",
    "StateChange",
    "Unavailable",
    "frozen_labels",
]
