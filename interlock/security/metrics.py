"""Counters of the security glue, on the control plane's metrics registry (``/metrics``).

- ``interlock_xds_streams_rejected_total{code}``: streams refused before anything was sent
  (``unauthenticated``: no or a bad token; ``permission_denied``: the node claims another
  identity than its token's); access-log (ALS) streams on the xDS port are counted too.
- ``interlock_sds_denied_total``: secret names a stream asked for and may not have.
- ``interlock_svids_issued_total{reason}``: ``new``, ``renewal`` or ``rotation``.
- ``interlock_xds_streams_revoked_total``: streams closed because their token was revoked.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class SecurityMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.rejected = Counter(
            "interlock_xds_streams_rejected",
            "xDS streams refused before anything was sent",
            ["code"],
            registry=r,
        )
        self.sds_denied = Counter(
            "interlock_sds_denied",
            "Secret names requested by a stream that may not have them",
            registry=r,
        )
        self.svids_issued = Counter(
            "interlock_svids_issued", "X.509-SVIDs issued to proxies", ["reason"], registry=r
        )
        self.revoked = Counter(
            "interlock_xds_streams_revoked",
            "xDS streams closed because their token was revoked",
            registry=r,
        )
