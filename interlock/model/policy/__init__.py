"""Policy kinds: Istio's VirtualService, DestinationRule, Gateway, ServiceEntry,
PeerAuthentication, RequestAuthentication, AuthorizationPolicy, and Interlock's RateLimit and
Telemetry.

* :mod:`.registry` — the kinds (group, versions, names, schema); :func:`lookup_kind`.
* one module per kind — its typed frozen dataclasses and ``SPEC`` schema.
* :mod:`.documents` — user documents (YAML/JSON objects) to validated
  :class:`~interlock.model.resource.Resource` values.
* :mod:`.policies` — :class:`Policies`, the typed policies a ``MeshState`` carries.
* :mod:`.problems` — cross-resource problems (:func:`policy_problems`), including
  :mod:`.limits`: what is valid but not translated (yet).
* :mod:`.hosts`, :mod:`.lookup`, :mod:`.selectors` — which services hosts name, which
  policies apply to a host, which instances labels select.
"""

from interlock.model.policy.authorization_policy import AuthorizationPolicy
from interlock.model.policy.destination_rule import DestinationRule
from interlock.model.policy.documents import read_resource, read_resources
from interlock.model.policy.gateway import Gateway
from interlock.model.policy.lookup import (
    destination_rules_for_host,
    host_is_known,
    service_entries_for_host,
    service_for_host,
)
from interlock.model.policy.peer_authentication import PeerAuthentication
from interlock.model.policy.policies import InvalidPolicy, Policies, Policy, parse_policy
from interlock.model.policy.problems import policy_problems, problems_by_resource
from interlock.model.policy.rate_limit import RateLimit
from interlock.model.policy.registry import (
    KINDS,
    KindInfo,
    ResourceKind,
    kind_info,
    known_kinds_text,
    lookup_kind,
)
from interlock.model.policy.request_authentication import RequestAuthentication
from interlock.model.policy.service_entry import ServiceEntry
from interlock.model.policy.sidecar import Sidecar
from interlock.model.policy.telemetry import Telemetry
from interlock.model.policy.virtual_service import VirtualService

__all__ = [
    "KINDS",
    "AuthorizationPolicy",
    "DestinationRule",
    "Gateway",
    "InvalidPolicy",
    "KindInfo",
    "PeerAuthentication",
    "Policies",
    "Policy",
    "RateLimit",
    "RequestAuthentication",
    "ResourceKind",
    "ServiceEntry",
    "Sidecar",
    "Telemetry",
    "VirtualService",
    "destination_rules_for_host",
    "host_is_known",
    "kind_info",
    "known_kinds_text",
    "lookup_kind",
    "parse_policy",
    "policy_problems",
    "problems_by_resource",
    "read_resource",
    "read_resources",
    "service_entries_for_host",
    "service_for_host",
]
