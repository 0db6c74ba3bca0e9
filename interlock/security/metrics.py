"""Counters of the security glue, on the control plane's metrics registry (``/metrics``).

- ``interlock_xds_streams_rejected_total{code}``: streams refused before anything was sent
  (``unauthenticated``: no or a bad token; ``permission_denied``: the node claims another
  identity than its token's); access-log (ALS) streams on the xDS port are counted too.
- ``interlock_sds_denied_total``: secret names a stream asked for and may not have.
- ``interlock_svids_issued_total{reason}``: ``new``, ``renewal`` or ``rotation``.
- ``interlock_xds_streams_revoked_total``: streams closed because their token was revoked.
- ``interlock_proxy_certificate_expiry_seconds{namespace, service, proxy}``: seconds until the
  certificate served to each connected proxy (by node id) expires — the margin left if
  renewals stopped (they are due at half the lifetime; a store outage delays them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

Margins = Callable[[], Iterable[tuple[tuple[str, str, str], float]]]
"""→ ((namespace, service, proxy node id), seconds until its certificate expires) each."""


class _CertificateExpiry(Collector):
    def __init__(self) -> None:
        self.sources: list[Margins] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "interlock_proxy_certificate_expiry_seconds",
            "Seconds until the certificate served to a connected proxy expires",
            labels=["namespace", "service", "proxy"],
        )
        for source in self.sources:
            for labels, seconds in source():
                gauge.add_metric(list(labels), seconds)
        yield gauge


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
        self._expiry = _CertificateExpiry()
        r.register(self._expiry)

    def watch_expiry(self, margins: Margins) -> None:
        """Report ``margins`` as ``interlock_proxy_certificate_expiry_seconds``."""
        self._expiry.sources.append(margins)
