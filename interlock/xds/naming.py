"""The names of Envoy resources: the only place they are built.

Every listener, cluster, route configuration and load assignment Interlock sends is named here,
so the translator, the consistency check, the CLI (``proxy-config``) and the tests agree on one
spelling. Names are stable for a given input: they never carry a revision, a clock or a node id.

The scheme follows Istio's, so people who read Istio config dumps feel at home:

- ``inbound``: the listener where mesh traffic enters a sidecar.
- ``inbound|<app_port>``: the static cluster (and the RDS route configuration) that forwards
  inbound traffic to the app on ``127.0.0.1:<app_port>``. Its one virtual host is named after
  the proxy's service and has one virtual cluster per service that may call it (stats by source).
- ``outbound|http``: the listener the app sends HTTP through, and its RDS route configuration.
- ``outbound|<port>||<name>.<namespace>``: one EDS cluster per service, and its
  ClusterLoadAssignment (the EDS service name is the cluster name).
- ``outbound|tcp|<name>.<namespace>``: the listener of one tcp service.
- ``outbound|<port>|<subset>|<name>.<namespace>``: the EDS cluster (and load assignment) of one
  DestinationRule subset; ``outbound|<port>|<subset>|<host>`` for ServiceEntry hosts (empty
  subset: the whole host), whose HTTP ports are virtual hosts ``<host>:<port>`` and other ports
  listeners ``outbound|tcp|<host>:<port>``.
- ``gateway|<port>``: a gateway's listener and route configuration for its Gateway servers on
  ``port``; a bound VirtualService is the virtual host ``<namespace>/<name>``.
- ``<host>`` (``b``, ``b:8080``, ``b.ns``, ... ``b.ns.svc.cluster.local:8080``): the API
  listener of a proxyless gRPC client for ``xds:///<host>``; its routes are ``outbound|http``.
- ``default`` and ``ROOTCA``: the secrets (SDS) of a proxy's own X.509-SVID and of the trust
  bundle, as Istio names them; inbound filter chains are named ``mtls`` and ``plaintext``.
"""

from __future__ import annotations

from interlock.model import Service
from interlock.model.identity import SVID_SECRET, TRUST_BUNDLE_SECRET

INBOUND_LISTENER = "inbound"
OUTBOUND_HTTP_LISTENER = "outbound|http"
OUTBOUND_HTTP_ROUTE = "outbound|http"

# Stat prefixes name the counters users read in Envoy's /stats.
OUTBOUND_HTTP_STAT_PREFIX = "outbound_http"

#: The header an outbound route stamps with the calling service (``name.namespace``); the
#: callee's sidecar counts and logs requests by it. Apps never need to set it.
SOURCE_HEADER = "x-interlock-source"
#: The virtual cluster of inbound requests that carry no source header (from outside the mesh).
UNKNOWN_SOURCE = "unknown"
#: ``log_name`` of the access logs sent to the control plane, per side of the proxy.
ACCESS_LOG_INBOUND = "inbound"
ACCESS_LOG_OUTBOUND = "outbound"
#: The bootstrap cluster that reaches the control plane (xDS and access logs), unless the node
#: names another (``xds_cluster``).
DEFAULT_XDS_CLUSTER = "interlock_xds"
#: ``filter_metadata`` namespace on clusters: which service a cluster leads to.
METADATA_NAMESPACE = "interlock"


def service_host(service: Service) -> str:
    """``name.namespace``: how a service is named inside Envoy resource names."""
    return f"{service.name}.{service.namespace}"


def inbound_listener() -> str:
    """The sidecar's inbound listener."""
    return INBOUND_LISTENER


def inbound_cluster(app_port: int) -> str:
    """The static cluster that forwards inbound traffic to ``127.0.0.1:<app_port>``."""
    return f"inbound|{app_port}"


def inbound_route(app_port: int) -> str:
    """The RDS route configuration of an HTTP inbound listener."""
    return f"inbound|{app_port}"


def inbound_virtual_host(service_name: str) -> str:
    """The single virtual host of the inbound route configuration: the proxy's own service
    (a DNS label, so Envoy's stats tags can extract it as ``destination_service``)."""
    return service_name


def source_virtual_cluster(service: Service) -> str:
    """The inbound virtual cluster counting requests from ``service`` (service names are
    unique, and DNS labels keep the stat name taggable as ``source_service``)."""
    return service.name


def inbound_stat_prefix(inbound_port: int) -> str:
    """The stat prefix of the inbound listener's filter (``inbound_15006``)."""
    return f"inbound_{inbound_port}"


def outbound_http_listener() -> str:
    """The listener the app sends HTTP requests through."""
    return OUTBOUND_HTTP_LISTENER


def outbound_http_route() -> str:
    """The RDS route configuration of the outbound HTTP listener."""
    return OUTBOUND_HTTP_ROUTE


def outbound_cluster(service: Service) -> str:
    """The EDS cluster of ``service``; also its EDS service name and its load assignment's."""
    return f"outbound|{service.port}||{service_host(service)}"


def tracing_cluster(provider: str) -> str:
    """The cluster a tracing provider's collector is reached through."""
    return f"tracing|{provider}"


def parse_outbound_cluster(name: str) -> tuple[str, str] | None:
    """``(service, namespace)`` of an outbound cluster name, or None for any other name."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or "." not in parts[3]:
        return None
    service, _, namespace = parts[3].partition(".")
    return service, namespace


def grpc_listener(host: str) -> str:
    """The API listener a proxyless gRPC client resolves ``xds:///<host>`` to: the host
    itself (``b``, ``b.ns.svc.cluster.local:8080``, ...), as gRPC names it in its LDS request."""
    return host


def outbound_virtual_host(service: Service) -> str:
    """The virtual host of ``service`` in the outbound route configuration."""
    return f"{service_host(service)}:{service.port}"


def outbound_tcp_listener(service: Service) -> str:
    """The outbound listener of a tcp ``service``."""
    return f"outbound|tcp|{service_host(service)}"


def outbound_tcp_stat_prefix(service: Service) -> str:
    """The stat prefix of a tcp service's tcp_proxy (``outbound_tcp_db_default``)."""
    return f"outbound_tcp_{service.name}_{service.namespace}"


def svid_secret() -> str:
    """The SDS secret holding a proxy's own certificate chain and private key."""
    return SVID_SECRET


def trust_bundle_secret() -> str:
    """The SDS secret holding the trust bundle (the roots peers are verified against)."""
    return TRUST_BUNDLE_SECRET


#: The inbound listener's filter chains, by the transport they accept.
MTLS_CHAIN = "mtls"
PLAINTEXT_CHAIN = "plaintext"
#: ``transport_socket_matches`` entry of an outbound cluster, and the endpoint metadata key
#: (under ``envoy.transport_socket_match``) that selects it: endpoints that accept mTLS.
TLS_MODE_KEY = "tlsMode"
TLS_MODE_MUTUAL = "interlock-mutual"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"


# --- traffic management (VirtualService, DestinationRule, ServiceEntry, Gateway) -----------


def outbound_subset_cluster(service: Service, subset: str) -> str:
    """The EDS cluster of one DestinationRule subset of ``service`` (Istio's
    ``outbound|<port>|<subset>|<host>``); also its load assignment's name."""
    return f"outbound|{service.port}|{subset}|{service_host(service)}"


def external_cluster(host: str, port: int, subset: str = "") -> str:
    """The cluster of a ServiceEntry ``host`` on ``port`` (or of one of its subsets)."""
    return f"outbound|{port}|{subset}|{host}"


def external_virtual_host(host: str, port: int) -> str:
    """The outbound virtual host of a ServiceEntry host's HTTP port."""
    return f"{host}:{port}"


def external_tcp_listener(host: str, port: int) -> str:
    """The outbound listener of a ServiceEntry's non-HTTP port (named after its first host)."""
    return f"outbound|tcp|{host}:{port}"


def external_tcp_stat_prefix(host: str, port: int) -> str:
    """The stat prefix of a ServiceEntry port's tcp_proxy (``outbound_tcp_db.example.com_5432``)."""
    return f"outbound_tcp_{host}_{port}"


def http_route(namespace: str, name: str, index: int, route_name: str | None) -> str:
    """The Envoy route made from ``http[index]`` of VirtualService ``namespace/name``."""
    return f"{namespace}/{name}/{route_name or index}"


def gateway_listener(port: int) -> str:
    """The listener of a gateway's Gateway servers on (Gateway) ``port``."""
    return f"gateway|{port}"


def gateway_route(port: int) -> str:
    """The RDS route configuration of a gateway's HTTP or HTTPS servers on ``port``."""
    return f"gateway|{port}"


def gateway_stat_prefix(port: int) -> str:
    """The stat prefix of a gateway listener's filter (``gateway_8080``)."""
    return f"gateway_{port}"


def gateway_virtual_host(namespace: str, name: str, redirect: bool = False) -> str:
    """The virtual host a VirtualService bound to a gateway becomes on one of its ports (and
    the one of its hosts whose servers redirect to https)."""
    return f"{namespace}/{name}" + ("|https-redirect" if redirect else "")


def gateway_chain(namespace: str, name: str, port_name: str) -> str:
    """The filter chain of one TLS server of Gateway ``namespace/name``."""
    return f"{namespace}/{name}/{port_name}"


def rate_limit_stat_prefix(namespace: str, name: str) -> str:
    """The stat prefix of RateLimit ``namespace/name`` (``rate_limit_default_reviews``)."""
    return f"rate_limit_{namespace}_{name}"


def rate_limit_route(namespace: str, name: str, index: int) -> str:
    """The inbound route of ``target.routes[index]`` of RateLimit ``namespace/name``."""
    return f"ratelimit/{namespace}/{name}/{index}"
