"""Locality-aware load balancing: endpoint priorities (failover) and locality weights
(distribute), from the proxy's own locality and a DestinationRule's ``localityLbSetting``.

Failover (Istio's order): endpoints in the proxy's region, zone and subzone are priority 0,
then the same zone, then the same region, then the ``failover.to`` region of the proxy's
region, then everything else. Envoy sends traffic to the next priority only as the healthier
ones run out (deregistered or ejected), so traffic stays local while it can.

Distribute: the first rule whose ``from`` matches the proxy's locality gives each endpoint
locality the weight of the ``to`` entry it matches, shared equally among the localities that
match one entry; localities that match none get no traffic.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.endpoint.v3 import endpoint_pb2

from interlock.model.policy.destination_rule import (
    LocalityDistribute,
    LocalityFailover,
    LocalityLbSetting,
)
from interlock.xds.translate.common import uint32

_Locality = tuple[str, str, str]
WEIGHT_SCALE = 1000
"""Distribute weights are percentages; each is scaled so sharing it keeps integer weights."""


def split(locality: str) -> _Locality:
    """``region/zone/subzone`` as three parts (missing parts empty)."""
    parts = locality.split("/", 2) if locality else []
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def matches(pattern: str, locality: _Locality) -> bool:
    """True when ``pattern`` (``region``, ``region/zone``, ``region/zone/subzone``, any part
    may be a final ``*``) covers ``locality``."""
    for index, part in enumerate(pattern.split("/")):
        if part == "*":
            return True
        if index > 2 or locality[index] != part:
            return False
    return True


def _priority(proxy: _Locality, endpoint: _Locality, failover: Sequence[LocalityFailover]) -> int:
    if endpoint == proxy:
        return 0
    if endpoint[:2] == proxy[:2]:
        return 1
    if endpoint[0] == proxy[0]:
        return 2
    if any(f.from_ == proxy[0] and f.to == endpoint[0] for f in failover):
        return 3
    return 4


def prioritize(
    assignment: endpoint_pb2.ClusterLoadAssignment,
    proxy_locality: str,
    failover: Sequence[LocalityFailover] = (),
) -> None:
    """Set each locality's priority by its distance from ``proxy_locality`` (in place).
    Priorities are contiguous from 0, as Envoy expects. A proxy without a locality changes
    nothing."""
    proxy = split(proxy_locality)
    if not proxy[0]:
        return
    raw = [
        _priority(proxy, (g.locality.region, g.locality.zone, g.locality.sub_zone), failover)
        for g in assignment.endpoints
    ]
    rank = {p: i for i, p in enumerate(sorted(set(raw)))}
    for group, priority in zip(assignment.endpoints, raw, strict=True):
        group.priority = rank[priority]


def distribute(
    assignment: endpoint_pb2.ClusterLoadAssignment,
    proxy_locality: str,
    rules: Sequence[LocalityDistribute],
) -> None:
    """Weigh each locality of ``assignment`` by the first rule matching ``proxy_locality``
    (in place). Without a matching rule every locality weighs the same."""
    proxy = split(proxy_locality)
    rule = next((r for r in rules if proxy[0] and matches(r.from_, proxy)), None)
    groups = list(assignment.endpoints)
    if rule is None:
        for group in groups:
            group.load_balancing_weight.CopyFrom(uint32(1))
        return
    targets: list[str | None] = []
    for group in groups:
        where = (group.locality.region, group.locality.zone, group.locality.sub_zone)
        targets.append(next((t for t in rule.to if matches(t, where)), None))
    for group, target in zip(groups, targets, strict=True):
        if target is None:
            continue
        share = targets.count(target)
        weight = max(1, rule.to[target] * WEIGHT_SCALE // share)
        group.load_balancing_weight.CopyFrom(uint32(weight))


def apply_locality(
    assignment: endpoint_pb2.ClusterLoadAssignment,
    proxy_locality: str,
    setting: LocalityLbSetting | None,
    prioritized: bool,
) -> None:
    """``distribute`` weights when ``setting`` has them, else failover priorities when
    ``prioritized`` (see :attr:`EffectivePolicy.locality_aware`)."""
    if setting is not None and setting.distribute:
        distribute(assignment, proxy_locality, setting.distribute)
    elif prioritized:
        prioritize(assignment, proxy_locality, setting.failover if setting else ())
