"""The policy passes, in the one order every target runs them (:data:`PASSES`).

Each pass keeps the contract of :mod:`.draft`. The order matters and is fixed:

1. DestinationRules give every service cluster its traffic policy and make subset clusters;
2. ServiceEntries add clusters for external hosts, and virtual hosts and listeners for them;
3. mesh VirtualServices replace default routes and retarget tcp listeners (of services and of
   the ServiceEntry ports step 2 made);
4. a gateway proxy gets the listeners and routes of the Gateways that select it;
5. RateLimits turn on buckets in a sidecar's inbound routes;
6. AuthorizationPolicies turn on the RBAC filters there (or are reported where they cannot);
7. every route (and tcp proxy) to a consistent-hash cluster gets its hash policy — last, so
   that it sees every route the passes before made.
"""

from __future__ import annotations

from interlock.model import Problem
from interlock.xds.translate.authz_pass import Authorization
from interlock.xds.translate.destination_rule import DestinationRules, HashPolicies
from interlock.xds.translate.draft import Draft, Pass, PassContext
from interlock.xds.translate.gateway import Gateways
from interlock.xds.translate.rate_limit import RateLimits
from interlock.xds.translate.service_entry import ServiceEntries
from interlock.xds.translate.virtual_service import VirtualServices

PASSES: tuple[Pass, ...] = (
    DestinationRules(),
    ServiceEntries(),
    VirtualServices(),
    Gateways(),
    RateLimits(),
    Authorization(),
    HashPolicies(),
)


def apply_passes(
    ctx: PassContext, draft: Draft, passes: tuple[Pass, ...] = PASSES
) -> list[Problem]:
    """Run ``passes`` over ``draft`` in order (in place); every problem they met."""
    problems: list[Problem] = []
    for policy_pass in passes:
        problems += policy_pass.apply(ctx, draft)
    return problems
