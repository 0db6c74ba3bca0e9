"""DestinationRule (networking.istio.io): what happens to traffic for a host after routing —
its subsets (instances selected by labels), load balancing, connection pool, outlier detection
and TLS mode."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock.model.errors import FieldError
from interlock.model.policy.common import (
    PORT_SELECTOR,
    PortSelector,
    label_map,
    no_map,
    subset_name_error,
)
from interlock.model.policy.hosts import wildcard_host_error
from interlock.model.schema import (
    Bool,
    Duration,
    Enum,
    Errors,
    Field,
    Int,
    ListOf,
    MapOf,
    Obj,
    OneOf,
    Str,
    child,
    item,
)
from interlock.model.schema.values import is_prime

MAGLEV_MAX_TABLE_SIZE = 5_000_011  # Envoy's bound (exclusive)


class SimpleLB(enum.StrEnum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"
    RANDOM = "RANDOM"
    PASSTHROUGH = "PASSTHROUGH"


class TLSMode(enum.StrEnum):
    DISABLE = "DISABLE"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"


@dataclass(frozen=True)
class HTTPCookie:
    name: str
    path: str | None = None
    ttl: dt.timedelta | None = None


@dataclass(frozen=True)
class RingHash:
    minimum_ring_size: int | None = None


@dataclass(frozen=True)
class Maglev:
    table_size: int


@dataclass(frozen=True)
class ConsistentHashLB:
    """Exactly one hash key (header, cookie, source IP or query parameter) and at most one
    algorithm (``ring_hash`` or ``maglev``; Envoy's ring hash when neither)."""

    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: Maglev | None = None


@dataclass(frozen=True)
class LocalityFailover:
    from_: str
    to: str


@dataclass(frozen=True)
class LocalityDistribute:
    from_: str
    to: Mapping[str, int] = field(default_factory=no_map)


@dataclass(frozen=True)
class LocalityLbSetting:
    distribute: tuple[LocalityDistribute, ...] = ()
    failover: tuple[LocalityFailover, ...] = ()


@dataclass(frozen=True)
class LoadBalancerSettings:
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLbSetting | None = None


@dataclass(frozen=True)
class TCPSettings:
    max_connections: int | None = None
    connect_timeout: dt.timedelta | None = None


@dataclass(frozen=True)
class HTTPSettings:
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None


@dataclass(frozen=True)
class ConnectionPoolSettings:
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = None
    interval: dt.timedelta | None = None
    base_ejection_time: dt.timedelta | None = None
    max_ejection_percent: int | None = None


@dataclass(frozen=True)
class ClientTLSSettings:
    """How a caller's sidecar speaks TLS to the destination. For ``SIMPLE`` and ``MUTUAL`` the
    files are paths on the caller's host, read by its Envoy (as in Istio's sidecars)."""

    mode: TLSMode = TLSMode.DISABLE
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    sni: str | None = None
    insecure_skip_verify: bool = False

    @property
    def originates(self) -> bool:
        """Whether the sidecar originates TLS of its own (``SIMPLE``, ``MUTUAL``), rather than
        the mesh's mTLS or plain text."""
        return self.mode in (TLSMode.SIMPLE, TLSMode.MUTUAL)


@dataclass(frozen=True)
class PortTrafficPolicy:
    port: PortSelector
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None


@dataclass(frozen=True)
class TrafficPolicy:
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True)
class Subset:
    name: str
    labels: Mapping[str, str] = field(default_factory=no_map)
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True)
class DestinationRule:
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


# --- rules that span fields ---------------------------------------------------------------


def _check_maglev(maglev: Maglev, path: str, errors: Errors) -> None:
    at = child(path, "tableSize")
    if maglev.table_size >= MAGLEV_MAX_TABLE_SIZE:
        errors.append(FieldError(at, f"must be less than {MAGLEV_MAX_TABLE_SIZE}"))
    elif not is_prime(maglev.table_size):
        errors.append(FieldError(at, f"must be a prime number (got {maglev.table_size})"))


def _check_hash(lb: ConsistentHashLB, path: str, errors: Errors) -> None:
    if lb.use_source_ip is False:
        errors.append(
            FieldError(child(path, "useSourceIp"), "must be true (or choose another hash key)")
        )


def _locality_error(value: str) -> str | None:
    parts = value.split("/")
    if len(parts) > 3 or any(not p for p in parts):
        return f"locality {value!r} must be region, region/zone or region/zone/subzone"
    stars = value.count("*")
    if (
        stars > 1
        or (stars == 1 and not value.endswith("*"))
        or any("*" in p and p != "*" for p in parts)
    ):
        return f"locality {value!r}: '*' may only be the last part"
    return None


def _region_error(value: str) -> str | None:
    if "/" in value:
        return f"{value!r}: failover names regions only (no '/')"
    if "*" in value:
        return f"{value!r}: failover regions cannot use '*'"
    return _locality_error(value)


def _check_distribute(distribute: LocalityDistribute, path: str, errors: Errors) -> None:
    total = sum(distribute.to.values())
    if total != 100:
        errors.append(
            FieldError(child(path, "to"), f"the weights sum to {total}; they must sum to 100")
        )


def _check_failover(failover: LocalityFailover, path: str, errors: Errors) -> None:
    if failover.from_ == failover.to:
        errors.append(FieldError(child(path, "to"), "must name a region other than from"))


def _check_locality(setting: LocalityLbSetting, path: str, errors: Errors) -> None:
    if setting.distribute and setting.failover:
        errors.append(FieldError(path, "set distribute or failover, not both"))


def _check_port_policies(policy: TrafficPolicy, path: str, errors: Errors) -> None:
    seen: dict[int, int] = {}
    for index, port_policy in enumerate(policy.port_level_settings):
        number = port_policy.port.number
        if number in seen:
            errors.append(
                FieldError(
                    child(item(child(path, "portLevelSettings"), index), "port"),
                    f"port {number} already has settings at portLevelSettings[{seen[number]}]",
                )
            )
        seen.setdefault(number, index)


def _check_port_policy(policy: PortTrafficPolicy, path: str, errors: Errors) -> None:
    if not (policy.load_balancer or policy.connection_pool or policy.outlier_detection):
        errors.append(FieldError(path, "must set loadBalancer, connectionPool or outlierDetection"))


# --- the schema ---------------------------------------------------------------------------

_COUNT = Int(minimum=0, maximum=2**31 - 1)

CONSISTENT_HASH: Obj[ConsistentHashLB] = Obj(
    ConsistentHashLB,
    {
        "httpHeaderName": Str(non_empty=True),
        "httpCookie": Obj(
            HTTPCookie,
            {
                "name": Field(Str(non_empty=True), required=True),
                "path": Str(),
                "ttl": Duration(minimum_ms=0),
            },
            unsupported=["attributes"],
        ),
        "useSourceIp": Bool(),
        "httpQueryParameterName": Str(non_empty=True),
        "ringHash": Obj(RingHash, {"minimumRingSize": Int(minimum=1)}),
        "maglev": Obj(
            Maglev,
            {"tableSize": Field(Int(minimum=1), required=True)},
            checks=[_check_maglev],
        ),
    },
    one_of=[
        OneOf(("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")),
        OneOf(("ringHash", "maglev"), required=False),
    ],
    unsupported={"minimumRingSize": "use ringHash.minimumRingSize"},
    checks=[_check_hash],
)

LOCALITY_LB: Obj[LocalityLbSetting] = Obj(
    LocalityLbSetting,
    {
        "distribute": ListOf(
            Obj(
                LocalityDistribute,
                {
                    "from": Field(Str(check=_locality_error), required=True, attr="from_"),
                    "to": Field(
                        MapOf(Str(check=_locality_error), Int(minimum=1, maximum=100), min_items=1),
                        required=True,
                    ),
                },
                checks=[_check_distribute],
            )
        ),
        "failover": ListOf(
            Obj(
                LocalityFailover,
                {
                    "from": Field(Str(check=_region_error), required=True, attr="from_"),
                    "to": Field(Str(check=_region_error), required=True),
                },
                checks=[_check_failover],
            )
        ),
    },
    unsupported=["failoverPriority", "enabled"],
    checks=[_check_locality],
)

LOAD_BALANCER: Obj[LoadBalancerSettings] = Obj(
    LoadBalancerSettings,
    {
        "simple": Enum(SimpleLB, unsupported=["LEAST_CONN", "UNSPECIFIED"]),
        "consistentHash": CONSISTENT_HASH,
        "localityLbSetting": LOCALITY_LB,
    },
    one_of=[OneOf(("simple", "consistentHash"), required=False)],
    unsupported=["warmupDurationSecs", "warmup"],
    non_empty=True,
)

CONNECTION_POOL: Obj[ConnectionPoolSettings] = Obj(
    ConnectionPoolSettings,
    {
        "tcp": Obj(
            TCPSettings,
            {"maxConnections": _COUNT, "connectTimeout": Duration()},
            unsupported=["tcpKeepalive", "maxConnectionDuration", "idleTimeout"],
        ),
        "http": Obj(
            HTTPSettings,
            {
                "http1MaxPendingRequests": _COUNT,
                "http2MaxRequests": _COUNT,
                "maxRequestsPerConnection": _COUNT,
                "maxRetries": _COUNT,
            },
            unsupported=[
                "idleTimeout",
                "h2UpgradePolicy",
                "useClientProtocol",
                "maxConcurrentStreams",
            ],
        ),
    },
    non_empty=True,
)

OUTLIER_DETECTION: Obj[OutlierDetection] = Obj(
    OutlierDetection,
    {
        "consecutive5xxErrors": Field(_COUNT, attr="consecutive_5xx_errors"),
        "interval": Duration(),
        "baseEjectionTime": Duration(),
        "maxEjectionPercent": Int(minimum=0, maximum=100),
    },
    unsupported={
        "consecutiveErrors": "use consecutive5xxErrors",
        "consecutiveGatewayErrors": "",
        "consecutiveLocalOriginFailures": "",
        "splitExternalLocalOriginErrors": "",
        "minHealthPercent": "",
    },
)


def _absolute_path(value: str) -> str | None:
    if not value.startswith("/"):
        return f"{value!r}: write the absolute path of a PEM file on the caller's host"
    return None


_CERTIFICATE_FIELDS = ("clientCertificate", "privateKey", "caCertificates", "caCrl")
_ORIGINATION_FIELDS = (*_CERTIFICATE_FIELDS, "subjectAltNames", "sni", "insecureSkipVerify")


def _check_client_tls(tls: ClientTLSSettings, path: str, errors: Errors) -> None:
    """Istio's rules, made explicit: certificate fields only where the sidecar originates TLS;
    MUTUAL presents a certificate and its key; the server is verified against
    ``caCertificates`` unless ``insecureSkipVerify`` says not to (no silent default)."""
    given = {
        "clientCertificate": tls.client_certificate,
        "privateKey": tls.private_key,
        "caCertificates": tls.ca_certificates,
        "caCrl": tls.ca_crl,
        "subjectAltNames": tls.subject_alt_names,
        "sni": tls.sni,
        "insecureSkipVerify": tls.insecure_skip_verify,
    }
    if not tls.originates:
        for name in _ORIGINATION_FIELDS:
            if given[name]:
                errors.append(
                    FieldError(
                        child(path, name),
                        f"applies to mode SIMPLE or MUTUAL, not {tls.mode}",
                    )
                )
        return
    if tls.mode is TLSMode.MUTUAL:
        for name in ("clientCertificate", "privateKey"):
            if not given[name]:
                errors.append(FieldError(child(path, name), "is required with mode MUTUAL"))
    elif tls.client_certificate or tls.private_key:
        name = "clientCertificate" if tls.client_certificate else "privateKey"
        errors.append(FieldError(child(path, name), "is for mode MUTUAL; SIMPLE sends none"))
    if tls.insecure_skip_verify:
        for name in ("caCertificates", "caCrl", "subjectAltNames"):
            if given[name]:
                errors.append(
                    FieldError(child(path, name), "has no effect with insecureSkipVerify: true")
                )
    elif not tls.ca_certificates:
        errors.append(
            FieldError(
                child(path, "caCertificates"),
                "is required to verify the server (or set insecureSkipVerify: true)",
            )
        )


_PEM_FILE = Str(non_empty=True, check=_absolute_path)

CLIENT_TLS: Obj[ClientTLSSettings] = Obj(
    ClientTLSSettings,
    {
        "mode": Enum(TLSMode),
        "clientCertificate": _PEM_FILE,
        "privateKey": _PEM_FILE,
        "caCertificates": _PEM_FILE,
        "caCrl": _PEM_FILE,
        "subjectAltNames": ListOf(Str(non_empty=True)),
        "sni": Str(non_empty=True),
        "insecureSkipVerify": Bool(),
    },
    unsupported={
        "credentialName": "Kubernetes secrets are not available; give the files' paths "
        "(clientCertificate, privateKey, caCertificates)"
    },
    checks=[_check_client_tls],
)

PORT_TRAFFIC_POLICY: Obj[PortTrafficPolicy] = Obj(
    PortTrafficPolicy,
    {
        "port": Field(PORT_SELECTOR, required=True),
        "loadBalancer": LOAD_BALANCER,
        "connectionPool": CONNECTION_POOL,
        "outlierDetection": OUTLIER_DETECTION,
    },
    unsupported={"tls": "set tls on the traffic policy instead"},
    checks=[_check_port_policy],
)

TRAFFIC_POLICY: Obj[TrafficPolicy] = Obj(
    TrafficPolicy,
    {
        "loadBalancer": LOAD_BALANCER,
        "connectionPool": CONNECTION_POOL,
        "outlierDetection": OUTLIER_DETECTION,
        "portLevelSettings": ListOf(PORT_TRAFFIC_POLICY),
        "tls": CLIENT_TLS,
    },
    unsupported=["tunnel", "proxyProtocol"],
    non_empty=True,
    checks=[_check_port_policies],
)

SUBSET: Obj[Subset] = Obj(
    Subset,
    {
        "name": Field(Str(check=subset_name_error), required=True),
        "labels": label_map(),
        "trafficPolicy": TRAFFIC_POLICY,
    },
)

SPEC: Obj[DestinationRule] = Obj(
    DestinationRule,
    {
        "host": Field(Str(check=wildcard_host_error), required=True),
        "trafficPolicy": TRAFFIC_POLICY,
        "subsets": ListOf(SUBSET, unique=lambda s: s.name, what="subset name"),
    },
    unsupported=["exportTo", "workloadSelector"],
)
