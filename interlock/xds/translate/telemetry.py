"""Telemetry a proxy emits by itself: access logs (JSON lines on Envoy's stdout, and the same
requests streamed to the control plane over the gRPC access-log service), and the headers and
virtual clusters that let the callee's sidecar count requests by calling service.

What is on, in which format and at which sampling rate is a :class:`TelemetryPlan`; the mesh's
Telemetry policies decide it (the defaults below apply while none says otherwise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import (
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
    protocol_pb2,
    substitution_format_string_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from interlock.model import MeshState, Proxy, Service
from interlock.model.policy import Policy, Telemetry, service_for_host
from interlock.model.policy.telemetry import AccessLogging, Tracing
from interlock.xds import naming
from interlock.xds.translate import route_filters
from interlock.xds.translate.common import boolean, connect_timeout, socket_address, typed

STDOUT_LOGGER = "envoy.access_loggers.stdout"
HTTP_GRPC_LOGGER = "envoy.access_loggers.http_grpc"
TCP_GRPC_LOGGER = "envoy.access_loggers.tcp_grpc"
SAMPLING_RUNTIME_KEY = "interlock.access_log.sampling"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class TracingPlan:
    """Where spans go: a Zipkin collector (HTTP JSON v2) or an OpenTelemetry collector
    (OTLP/gRPC) at ``host:port``; ``sampling`` is the percentage of requests traced."""

    provider: str  # "zipkin" or "opentelemetry"
    host: str
    port: int
    sampling: float = 100.0


@dataclass(frozen=True)
class TelemetryPlan:
    """What one proxy logs and traces. ``sampling`` is the percentage of requests logged
    (both sinks); tracing is off unless ``tracing`` is set."""

    access_log: bool = True
    log_format: str = "json"  # or "text"
    als: bool = True
    sampling: float = 100.0
    tracing: TracingPlan | None = None


DEFAULT_PLAN = TelemetryPlan()


def _scopes(state: MeshState, proxy: Proxy, policy: Policy[Telemetry]) -> bool:
    """Whether a scoped Telemetry (``service`` or ``selector``) applies to ``proxy``."""
    spec = policy.spec
    if policy.namespace != proxy.namespace:
        return False
    if spec.service is not None:
        service = service_for_host(state, spec.service, policy.namespace)
        return service is not None and service.name == proxy.service
    if spec.selector is not None:
        labels = {"app": proxy.service, **dict(getattr(proxy, "labels", {}) or {})}
        return all(labels.get(k) == v for k, v in spec.selector.match_labels.items())
    return False


def telemetry_plan_for(state: MeshState, proxy: Proxy) -> TelemetryPlan:
    """What ``proxy`` logs and traces. Without any Telemetry policy: JSON access logs on, ALS
    on, no tracing. The oldest mesh-wide Telemetry replaces those defaults section by section
    (``accessLogging``, ``tracing``); then the oldest one scoped to the proxy (its service, or
    a selector matching its labels in its namespace) overrides the mesh-wide, section by
    section."""
    policies = sorted(
        state.policies.telemetries, key=lambda p: (p.resource.created_revision, p.namespace, p.name)
    )
    access: AccessLogging | None = None
    tracing: Tracing | None = None
    mesh = [p for p in policies if p.spec.mesh_wide]
    scoped = [p for p in policies if not p.spec.mesh_wide and _scopes(state, proxy, p)]
    for layer in (mesh[:1], scoped[:1]):
        for policy in layer:
            access = policy.spec.access_logging or access
            tracing = policy.spec.tracing or tracing
    plan = DEFAULT_PLAN
    if access is not None:
        plan = TelemetryPlan(
            access_log=access.enabled,
            log_format=access.format.value,
            als=access.als,
            sampling=access.sampling_percentage,
        )
    if tracing is not None:
        host, port = tracing.host_port
        plan = dataclasses.replace(
            plan,
            tracing=TracingPlan(
                tracing.provider.value, host, port, tracing.random_sampling_percentage
            ),
        )
    return plan


def _shadow(rbac_filter: str, key: str) -> str:
    prefix = route_filters.SHADOW_STAT_PREFIX[rbac_filter]
    return f"%DYNAMIC_METADATA({route_filters.RBAC_METADATA_NAMESPACE}:{prefix}{key})%"


def _fields(proxy: Proxy, inbound: bool) -> dict[str, str]:
    """The JSON access-log line: who called whom, what, how it went, and the trace."""
    own = f"{proxy.service}.{proxy.namespace}"
    fields = {
        "start_time": "%START_TIME%",
        "direction": "inbound" if inbound else "outbound",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "authority": "%REQ(:AUTHORITY)%",
        "protocol": "%PROTOCOL%",
        "status": "%RESPONSE_CODE%",
        "response_flags": "%RESPONSE_FLAGS%",
        "duration_ms": "%DURATION%",
        "bytes_received": "%BYTES_RECEIVED%",
        "bytes_sent": "%BYTES_SENT%",
        "upstream_host": "%UPSTREAM_HOST%",
        "upstream_cluster": "%UPSTREAM_CLUSTER%",
        "trace_id": "%TRACE_ID%",
        "request_id": "%REQ(X-REQUEST-ID)%",
    }
    if inbound:
        fields |= {
            "source_service": f"%REQ({naming.SOURCE_HEADER.upper()})%",
            "source_principal": "%DOWNSTREAM_PEER_URI_SAN%",
            "destination_service": own,
            "destination_principal": "%DOWNSTREAM_LOCAL_URI_SAN%",
            # What dry-run AuthorizationPolicies would have done (null without one).
            "dry_run_deny": _shadow(route_filters.RBAC_DENY, "shadow_engine_result"),
            "dry_run_deny_policy": _shadow(route_filters.RBAC_DENY, "shadow_effective_policy_id"),
            "dry_run_allow": _shadow(route_filters.RBAC_ALLOW, "shadow_engine_result"),
        }
    else:
        fields |= {
            "source_service": own,
            "source_principal": "%UPSTREAM_LOCAL_URI_SAN%",
            "destination_service": f"%CLUSTER_METADATA({naming.METADATA_NAMESPACE}:host)%",
            "destination_principal": "%UPSTREAM_PEER_URI_SAN%",
        }
    return fields


TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %TRACE_ID%\n'
)


def _sampled(plan: TelemetryPlan) -> accesslog_pb2.AccessLogFilter | None:
    if plan.sampling >= 100:
        return None
    return accesslog_pb2.AccessLogFilter(
        runtime_filter=accesslog_pb2.RuntimeFilter(
            runtime_key=SAMPLING_RUNTIME_KEY,
            percent_sampled=percent_pb2.FractionalPercent(
                numerator=round(plan.sampling * 100),
                denominator=percent_pb2.FractionalPercent.TEN_THOUSAND,
            ),
            use_independent_randomness=True,
        )
    )


def _grpc_common(proxy: Proxy, log_name: str) -> als_pb2.CommonGrpcAccessLogConfig:
    return als_pb2.CommonGrpcAccessLogConfig(
        log_name=log_name,
        transport_api_version=config_source_pb2.ApiVersion.V3,
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                cluster_name=proxy.xds_cluster or naming.DEFAULT_XDS_CLUSTER
            )
        ),
        buffer_flush_interval=Duration(seconds=1),
    )


def http_access_logs(
    proxy: Proxy, *, inbound: bool, plan: TelemetryPlan = DEFAULT_PLAN
) -> list[accesslog_pb2.AccessLog]:
    """The access logs of an HTTP connection manager on ``inbound`` or outbound side."""
    logs = []
    sample = _sampled(plan)
    if plan.access_log:
        if plan.log_format == "json":
            struct = Struct()
            struct.update(_fields(proxy, inbound))
            fmt = substitution_format_string_pb2.SubstitutionFormatString(json_format=struct)
        else:
            fmt = substitution_format_string_pb2.SubstitutionFormatString(
                text_format_source=base_pb2.DataSource(inline_string=TEXT_FORMAT)
            )
        logs.append(
            accesslog_pb2.AccessLog(
                name=STDOUT_LOGGER,
                filter=sample,
                typed_config=typed(stream_pb2.StdoutAccessLog(log_format=fmt)),
            )
        )
    if plan.als:
        log_name = naming.ACCESS_LOG_INBOUND if inbound else naming.ACCESS_LOG_OUTBOUND
        logs.append(
            accesslog_pb2.AccessLog(
                name=HTTP_GRPC_LOGGER,
                filter=sample,
                typed_config=typed(
                    als_pb2.HttpGrpcAccessLogConfig(
                        common_config=_grpc_common(proxy, log_name),
                        additional_request_headers_to_log=[naming.SOURCE_HEADER],
                    )
                ),
            )
        )
    return logs


def source_virtual_clusters(
    services: Sequence[Service],
) -> list[route_components_pb2.VirtualCluster]:
    """One virtual cluster per service that may call this proxy (matched on the source header
    its sidecar stamps), plus ``unknown`` for requests without one. Envoy keeps request counts
    by code and a duration histogram per virtual cluster: the callee's per-source metrics."""
    clusters = [
        route_components_pb2.VirtualCluster(
            name=naming.source_virtual_cluster(service),
            headers=[
                route_components_pb2.HeaderMatcher(
                    name=naming.SOURCE_HEADER,
                    string_match=string_pb2.StringMatcher(exact=naming.service_host(service)),
                )
            ],
        )
        for service in sorted(services, key=lambda s: s.name)
    ]
    clusters.append(
        route_components_pb2.VirtualCluster(
            name=naming.UNKNOWN_SOURCE,
            headers=[
                route_components_pb2.HeaderMatcher(name=naming.SOURCE_HEADER, present_match=False)
            ],
        )
    )
    return clusters


def source_header(proxy: Proxy) -> base_pb2.HeaderValueOption:
    """The header an outbound route stamps on every request: the calling service, overwriting
    anything the app sent (so an app cannot pass for another service in the callee's stats)."""
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(
            key=naming.SOURCE_HEADER, value=f"{proxy.service}.{proxy.namespace}"
        ),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


ZIPKIN = "envoy.tracers.zipkin"
OPENTELEMETRY = "envoy.tracers.opentelemetry"


def tracing_cluster(plan: TracingPlan) -> cluster_pb2.Cluster:
    """The cluster spans are sent to (DNS-resolved, so a collector may be named by host)."""
    name = naming.tracing_cluster(plan.provider)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.DiscoveryType.STRICT_DNS,
        connect_timeout=connect_timeout(),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=socket_address(plan.host, plan.port)
                            )
                        )
                    ]
                )
            ],
        ),
    )
    if plan.provider == "opentelemetry":  # OTLP/gRPC speaks HTTP/2
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(
            typed(
                http_protocol_options_pb2.HttpProtocolOptions(
                    explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                        http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
                    )
                )
            )
        )
    return cluster


def http_tracing(proxy: Proxy, plan: TracingPlan) -> hcm_pb2.HttpConnectionManager.Tracing:
    """The tracing block of a connection manager: spans for ``plan.sampling`` % of requests,
    named after the proxy's service, sent to the plan's collector cluster."""
    service = f"{proxy.service}.{proxy.namespace}"
    cluster = naming.tracing_cluster(plan.provider)
    if plan.provider == "zipkin":
        provider = http_tracer_pb2.Tracing.Http(
            name=ZIPKIN,
            typed_config=typed(
                zipkin_pb2.ZipkinConfig(
                    collector_cluster=cluster,
                    collector_endpoint="/api/v2/spans",
                    collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
                    trace_id_128bit=True,
                    shared_span_context=boolean(False),  # client and server spans apart
                    collector_hostname=f"{plan.host}:{plan.port}",
                )
            ),
        )
    else:
        provider = http_tracer_pb2.Tracing.Http(
            name=OPENTELEMETRY,
            typed_config=typed(
                opentelemetry_pb2.OpenTelemetryConfig(
                    grpc_service=grpc_service_pb2.GrpcService(
                        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster)
                    ),
                    service_name=service,
                )
            ),
        )
    return hcm_pb2.HttpConnectionManager.Tracing(
        provider=provider,
        random_sampling=percent_pb2.Percent(value=plan.sampling),
    )
