"""Policy documents for the tests: one valid document per kind, and the table of invalid specs
(each with the field path its error must name). The model, API and CLI tests share them."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

NET = "networking.istio.io/v1"
SEC = "security.istio.io/v1"
OWN = "interlock.io/v1"


def doc(
    api_version: str, kind: str, name: str, spec: Any, namespace: str = "default"
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


#: Real public keys (their private keys were thrown away): Envoy refuses keys that are not.
RSA_N = (
    "r7J6FocG1zJctOVQfeAcRGQw0Nin6jD49xjFCSYGJEiwhmOG1Pwr_OZOG0BZD3ViWg2HSmZ7Q7jfmEdf"
    "RtNKrGvNCmxMeXPoK6vtEChqgKyY7k8_cX5Ten_yC0mE_pEp0y5GtirNES-H1lMze2mokNq7dqCmRFith7O609mMSsc"
)
RSA_JWKS = json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "n": RSA_N, "e": "AQAB"}]})
EC_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "x": "T8jAp4ZqWtTlOuCvMkITvTN9dGQKJurA4PZ0cpuZvfs",
                "y": "mO_Rx5UIpc-foQawkA1isYSlt8H6Kv41B4_bNq9ZF1Q",
            }
        ]
    }
)

VALID: dict[str, dict[str, Any]] = {
    "VirtualService": doc(
        NET,
        "VirtualService",
        "reviews",
        {
            "hosts": ["reviews"],
            "http": [
                {
                    "name": "canary",
                    "match": [
                        {
                            "headers": {"end-user": {"exact": "jason"}, "x-debug": {}},
                            "uri": {"prefix": "/api/"},
                            "ignoreUriCase": True,
                            "queryParams": {"tier": {"regex": "^(gold|silver)$"}},
                            "method": {"exact": "GET"},
                            "authority": {"prefix": "reviews"},
                            "port": 8080,
                            "sourceLabels": {"version": "v1"},
                        }
                    ],
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 75},
                        {
                            "destination": {
                                "host": "reviews",
                                "subset": "v1",
                                "port": {"number": 8080},
                            },
                            "weight": 25,
                            "headers": {"response": {"add": {"x-canary": "no"}}},
                        },
                    ],
                    "timeout": "1.5s",
                    "retries": {
                        "attempts": 3,
                        "perTryTimeout": "500ms",
                        "retryOn": "5xx,reset,503",
                    },
                    "fault": {
                        "delay": {"fixedDelay": "100ms", "percentage": {"value": 10}},
                        "abort": {"httpStatus": 503, "percentage": {"value": 0.5}},
                    },
                    "mirror": {"host": "reviews", "subset": "v3"},
                    "mirrorPercentage": {"value": 5},
                    "headers": {
                        "request": {"set": {"x-route": "canary"}, "remove": ["x-internal"]},
                        "response": {"set": {"cache-control": "no-store"}},
                    },
                    "corsPolicy": {
                        "allowOrigins": [
                            {"exact": "https://example.com"},
                            {"regex": ".*\\.example\\.org"},
                        ],
                        "allowMethods": ["GET", "POST"],
                        "allowHeaders": ["authorization"],
                        "exposeHeaders": ["x-trace"],
                        "maxAge": "24h",
                        "allowCredentials": True,
                    },
                },
                {
                    "name": "old-path",
                    "match": [{"uri": {"exact": "/old"}}],
                    "redirect": {"uri": "/new", "redirectCode": 308},
                },
                {
                    "name": "default",
                    "rewrite": {"uri": "/", "authority": "reviews.internal"},
                    "route": [{"destination": {"host": "reviews", "subset": "v1"}}],
                },
            ],
        },
    ),
    "DestinationRule": doc(
        NET,
        "DestinationRule",
        "reviews",
        {
            "host": "reviews.default.svc.cluster.local",
            "trafficPolicy": {
                "loadBalancer": {
                    "consistentHash": {
                        "httpCookie": {"name": "session", "ttl": "0s"},
                        "maglev": {"tableSize": 65537},
                    },
                    "localityLbSetting": {"failover": [{"from": "eu-west", "to": "eu-central"}]},
                },
                "connectionPool": {
                    "tcp": {"maxConnections": 100, "connectTimeout": "250ms"},
                    "http": {
                        "http1MaxPendingRequests": 10,
                        "http2MaxRequests": 1000,
                        "maxRequestsPerConnection": 5,
                        "maxRetries": 2,
                    },
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 5,
                    "interval": "10s",
                    "baseEjectionTime": "30s",
                    "maxEjectionPercent": 50,
                },
                "portLevelSettings": [
                    {"port": {"number": 9080}, "loadBalancer": {"simple": "LEAST_REQUEST"}}
                ],
                "tls": {"mode": "ISTIO_MUTUAL"},
            },
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {
                    "name": "v2",
                    "labels": {"version": "v2"},
                    "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
                },
                {"name": "v3", "labels": {"version": "v3"}},
            ],
        },
    ),
    "Gateway": doc(
        NET,
        "Gateway",
        "public",
        {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["shop.example.com"],
                    "tls": {"httpsRedirect": True},
                },
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["./shop.example.com", "*/*.example.org"],
                    "tls": {
                        "mode": "SIMPLE",
                        "serverCertificate": "/etc/certs/shop.pem",
                        "privateKey": "/etc/certs/shop.key",
                    },
                },
                {
                    "port": {"number": 8443, "name": "passthrough", "protocol": "TLS"},
                    "hosts": ["db.example.com"],
                    "tls": {"mode": "PASSTHROUGH"},
                },
                {"port": {"number": 5432, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]},
            ],
        },
    ),
    "ServiceEntry": doc(
        NET,
        "ServiceEntry",
        "payments-api",
        {
            "hosts": ["api.payments.example.com"],
            "addresses": ["192.0.2.10/32"],
            "ports": [
                {"number": 443, "name": "https", "protocol": "TLS"},
                {"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8080},
            ],
            "location": "MESH_EXTERNAL",
            "resolution": "STATIC",
            "endpoints": [
                {
                    "address": "192.0.2.10",
                    "ports": {"https": 8443},
                    "labels": {"zone": "a"},
                    "locality": "eu/west",
                    "weight": 3,
                },
                {"address": "192.0.2.11"},
            ],
        },
    ),
    "PeerAuthentication": doc(
        SEC,
        "PeerAuthentication",
        "reviews-strict",
        {
            "selector": {"matchLabels": {"app": "reviews"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}},
        },
    ),
    "RequestAuthentication": doc(
        SEC,
        "RequestAuthentication",
        "reviews-jwt",
        {
            "selector": {"matchLabels": {"app": "reviews"}},
            "jwtRules": [
                {
                    "issuer": "https://issuer.example.com",
                    "audiences": ["reviews"],
                    "jwks": RSA_JWKS,
                    "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}],
                    "fromParams": ["token"],
                    "forwardOriginalToken": True,
                    "outputPayloadToHeader": "x-jwt-payload",
                },
                {"issuer": "local", "jwks": EC_JWKS},
                {
                    "issuer": "https://login.example.com",
                    "jwksUri": "https://login.example.com/.well-known/jwks.json",
                    "fromCookies": ["session"],
                    "outputClaimToHeaders": [{"header": "x-user", "claim": "sub"}],
                },
            ],
        },
    ),
    "AuthorizationPolicy": doc(
        SEC,
        "AuthorizationPolicy",
        "reviews-readers",
        {
            "selector": {"matchLabels": {"app": "reviews"}},
            "action": "ALLOW",
            "rules": [
                {
                    "from": [
                        {
                            "source": {
                                "principals": ["spiffe://cluster.local/ns/default/sa/productpage"],
                                "notNamespaces": ["test"],
                            }
                        }
                    ],
                    "to": [
                        {
                            "operation": {
                                "methods": ["GET"],
                                "paths": ["/reviews/*"],
                                "ports": ["9080"],
                                "notHosts": ["*.internal"],
                            }
                        }
                    ],
                    "when": [
                        {"key": "request.headers[x-tenant]", "values": ["acme"]},
                        {"key": "source.ip", "notValues": ["10.0.0.0/8"]},
                        {"key": "request.auth.claims[groups][admin]", "values": ["true"]},
                    ],
                },
                {},
            ],
        },
    ),
    "RateLimit": doc(
        OWN,
        "RateLimit",
        "reviews",
        {
            "target": {
                "service": "reviews",
                "routes": [{"name": "canary"}, {"pathPrefix": "/api/"}],
            },
            "tokenBucket": {"maxTokens": 100, "tokensPerFill": 10, "fillInterval": "1s"},
            "responseStatus": 429,
            "responseHeaders": {"x-rate-limited": "true"},
            "enabled": True,
            "percentage": 50,
        },
    ),
    "Sidecar": doc(
        NET,
        "Sidecar",
        "productpage",
        {
            "workloadSelector": {"labels": {"app": "productpage"}},
            "egress": [{"hosts": ["./reviews", "istio-system/*", "*/api.example.com"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    ),
    "Telemetry": doc(
        OWN,
        "Telemetry",
        "reviews",
        {
            "service": "reviews",
            "accessLogging": {
                "enabled": True,
                "format": "json",
                "samplingPercentage": 10,
                "als": True,
            },
            "tracing": {
                "provider": "opentelemetry",
                "address": "otel-collector.observability:4317",
                "randomSamplingPercentage": 2.5,
            },
        },
    ),
}


def valid(kind: str) -> dict[str, Any]:
    return copy.deepcopy(VALID[kind])


def with_spec(kind: str, spec: Any) -> dict[str, Any]:
    document = valid(kind)
    document["spec"] = spec
    return document


def patched(kind: str, path: str, value: Any) -> dict[str, Any]:
    """The valid document of ``kind`` with the value at ``path`` (``spec.http.0.timeout``)
    replaced (or deleted, when ``value`` is :data:`DELETE`)."""
    document = valid(kind)
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return document


DELETE = object()


@dataclasses.dataclass(frozen=True)
class Invalid:
    """A document the API must reject, the field its error names, and words of the message."""

    document: dict[str, Any]
    field: str
    says: str = ""


VS_ROUTE = [{"destination": {"host": "reviews"}}]


def vs(http: list[Any] | None = None, **spec: Any) -> dict[str, Any]:
    return with_spec(
        "VirtualService", {"hosts": ["reviews"], "http": http or [{"route": VS_ROUTE}], **spec}
    )


def vs_route(**route: Any) -> dict[str, Any]:
    return vs([{"route": VS_ROUTE, **route}])


def dr(**spec: Any) -> dict[str, Any]:
    return with_spec("DestinationRule", {"host": "reviews", **spec})


def se(**spec: Any) -> dict[str, Any]:
    base = {
        "hosts": ["api.example.com"],
        "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
        "resolution": "DNS",
    }
    return with_spec("ServiceEntry", {**base, **spec})


def sc(**spec: Any) -> dict[str, Any]:
    return with_spec("Sidecar", {"egress": [{"hosts": ["./*"]}], **spec})


def gw(*servers: Any, **spec: Any) -> dict[str, Any]:
    return with_spec("Gateway", {"servers": list(servers), **spec})


def http_server(**extra: Any) -> dict[str, Any]:
    return {
        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
        "hosts": ["a.example.com"],
        **extra,
    }


def ap(**spec: Any) -> dict[str, Any]:
    return with_spec("AuthorizationPolicy", spec)


def rl(**spec: Any) -> dict[str, Any]:
    base = {
        "target": {"service": "reviews"},
        "tokenBucket": {"maxTokens": 10, "fillInterval": "1s"},
    }
    return with_spec("RateLimit", {**base, **spec})


def tm(**spec: Any) -> dict[str, Any]:
    return with_spec("Telemetry", spec)


INVALID: dict[str, Invalid] = {
    # --- the envelope -------------------------------------------------------------------
    "unknown kind": Invalid(
        {**valid("VirtualService"), "kind": "EnvoyFilter"}, "kind", "not a kind"
    ),
    "kind in the wrong case": Invalid(
        {**valid("VirtualService"), "kind": "virtualservice"}, "kind", "did you mean"
    ),
    "apiVersion of another group": Invalid(
        {**valid("VirtualService"), "apiVersion": "security.istio.io/v1"},
        "apiVersion",
        "networking.istio.io/v1",
    ),
    "security kind at v1alpha3": Invalid(
        {**valid("AuthorizationPolicy"), "apiVersion": "security.istio.io/v1alpha3"}, "apiVersion"
    ),
    "missing metadata.name": Invalid(
        patched("VirtualService", "metadata.name", DELETE), "metadata.name", "required"
    ),
    "name with capitals": Invalid(
        patched("VirtualService", "metadata.name", "Reviews"), "metadata.name"
    ),
    "namespace not a DNS label": Invalid(
        patched("VirtualService", "metadata.namespace", "my.ns"), "metadata.namespace"
    ),
    "gateway name with a dot": Invalid(
        patched("Gateway", "metadata.name", "public.gw"), "metadata.name", "DNS label"
    ),
    "unknown metadata field": Invalid(
        patched("VirtualService", "metadata.owner", "me"), "metadata.owner", "unknown field"
    ),
    "label value with spaces": Invalid(
        patched("VirtualService", "metadata.labels", {"team": "a b"}), "metadata.labels.team"
    ),
    "missing spec": Invalid(patched("VirtualService", "spec", DELETE), "spec", "required"),
    "spec not an object": Invalid(
        patched("VirtualService", "spec", ["hosts"]), "spec", "must be an object"
    ),
    "unknown top-level field": Invalid(
        {**valid("VirtualService"), "specs": {}}, "specs", "unknown field"
    ),
    # --- VirtualService -----------------------------------------------------------------
    "vs without hosts": Invalid(
        with_spec("VirtualService", {"http": [{"route": VS_ROUTE}]}), "spec.hosts", "required"
    ),
    "vs with an empty hosts list": Invalid(vs(hosts=[]), "spec.hosts", "at least 1"),
    "vs host '*' for the mesh": Invalid(vs(hosts=["*"]), "spec.hosts[0]", "gateways"),
    "vs host with a partial wildcard": Invalid(vs(hosts=["re*views"]), "spec.hosts[0]", "wildcard"),
    "vs duplicate hosts": Invalid(
        vs(hosts=["*.example.com", "a.example.com"]), "spec.hosts[1]", "duplicates"
    ),
    "vs without routes": Invalid(
        with_spec("VirtualService", {"hosts": ["reviews"]}), "spec", "http or tcp"
    ),
    "vs tls routes": Invalid(
        vs(tls=[{"route": VS_ROUTE}]), "spec.tls", "not supported by Interlock yet"
    ),
    "vs exportTo with * and more": Invalid(
        vs(exportTo=["*", "team"]), "spec.exportTo", "cannot be combined"
    ),
    "vs exportTo twice": Invalid(vs(exportTo=[".", "."]), "spec.exportTo[1]", "listed twice"),
    "dr exportTo not a namespace": Invalid(
        dr(exportTo=["Team_A"]), "spec.exportTo[0]", "DNS label"
    ),
    "vs bad gateway reference": Invalid(
        vs(gateways=["Bad_Gateway"]), "spec.gateways[0]", "gateway name"
    ),
    "unknown field in a route": Invalid(
        vs([{"route": VS_ROUTE, "rout": []}]), "spec.http[0].rout", "did you mean 'route'"
    ),
    "route weights below 100": Invalid(
        vs(
            [
                {
                    "route": [
                        {"destination": {"host": "a"}, "weight": 60},
                        {"destination": {"host": "b"}, "weight": 30},
                    ]
                }
            ]
        ),
        "spec.http[0].route",
        "sum to 90",
    ),
    "route weight above 100": Invalid(
        vs(
            [
                {
                    "route": [
                        {"destination": {"host": "a"}, "weight": 150},
                        {"destination": {"host": "b"}, "weight": -50},
                    ]
                }
            ]
        ),
        "spec.http[0].route[0].weight",
    ),
    "negative route weight": Invalid(
        vs(
            [
                {
                    "route": [
                        {"destination": {"host": "a"}, "weight": 100},
                        {"destination": {"host": "b"}, "weight": -1},
                    ]
                }
            ]
        ),
        "spec.http[0].route[1].weight",
    ),
    "weight as a string": Invalid(
        vs([{"route": [{"destination": {"host": "a"}, "weight": "100"}]}]),
        "spec.http[0].route[0].weight",
        "integer",
    ),
    "two destinations without weights": Invalid(
        vs([{"route": [{"destination": {"host": "a"}}, {"destination": {"host": "b"}}]}]),
        "spec.http[0].route",
        "weight",
    ),
    "tcp weights not 100": Invalid(
        with_spec(
            "VirtualService",
            {"hosts": ["db"], "tcp": [{"route": [{"destination": {"host": "db"}, "weight": 99}]}]},
        ),
        "spec.tcp[0].route",
        "sum to 99",
    ),
    "destination without host": Invalid(
        vs([{"route": [{"destination": {"subset": "v1"}}]}]),
        "spec.http[0].route[0].destination.host",
        "required",
    ),
    "destination host '*'": Invalid(
        vs([{"route": [{"destination": {"host": "*"}}]}]), "spec.http[0].route[0].destination.host"
    ),
    "subset name with capitals": Invalid(
        vs([{"route": [{"destination": {"host": "a", "subset": "V1"}}]}]),
        "spec.http[0].route[0].destination.subset",
    ),
    "destination port out of range": Invalid(
        vs([{"route": [{"destination": {"host": "a", "port": {"number": 70000}}}]}]),
        "spec.http[0].route[0].destination.port.number",
        "65535",
    ),
    "port by name": Invalid(
        vs([{"route": [{"destination": {"host": "a", "port": {"name": "http"}}}]}]),
        "spec.http[0].route[0].destination.port.name",
    ),
    "timeout without a unit": Invalid(vs_route(timeout="10"), "spec.http[0].timeout", "duration"),
    "timeout under a millisecond": Invalid(
        vs_route(timeout="500us"), "spec.http[0].timeout", "1ms"
    ),
    "timeout of zero": Invalid(vs_route(timeout="0s"), "spec.http[0].timeout", "1ms"),
    "timeout finer than a millisecond": Invalid(
        vs_route(timeout="1.0005s"), "spec.http[0].timeout", "millisecond"
    ),
    "perTryTimeout too short": Invalid(
        vs_route(retries={"attempts": 2, "perTryTimeout": "0.1ms"}),
        "spec.http[0].retries.perTryTimeout",
    ),
    "unknown retryOn policy": Invalid(
        vs_route(retries={"attempts": 2, "retryOn": "5xx,sometimes"}),
        "spec.http[0].retries.retryOn",
        "sometimes",
    ),
    "retries without attempts": Invalid(
        vs_route(retries={"perTryTimeout": "1s"}), "spec.http[0].retries.attempts"
    ),
    "retry backoff": Invalid(
        vs_route(retries={"attempts": 2, "backoff": "1s"}),
        "spec.http[0].retries.backoff",
        "not supported",
    ),
    "uri regex with lookahead": Invalid(
        vs([{"match": [{"uri": {"regex": "/(?=api)"}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].uri.regex",
        "lookahead",
    ),
    "header regex with a backreference": Invalid(
        vs([{"match": [{"headers": {"x-a": {"regex": "(a)\\1"}}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].headers.x-a.regex",
        "backreference",
    ),
    "regex that does not compile": Invalid(
        vs([{"match": [{"uri": {"regex": "(unclosed"}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].uri.regex",
    ),
    # Envoy 1.40 refuses it at its default re2.max_program_size.error_level (100): a NACK on
    # every proxy, unless the API refuses it first.
    "regex over Envoy's RE2 program size": Invalid(
        vs([{"match": [{"uri": {"regex": "/v[0-9]{97}"}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].uri.regex",
        "program size",
    ),
    "header regex over Envoy's RE2 program size": Invalid(
        vs([{"match": [{"headers": {"x-a": {"regex": "(a|b|c|d){40}"}}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].headers.x-a.regex",
        "program size",
    ),
    "two match types": Invalid(
        vs([{"match": [{"uri": {"exact": "/a", "prefix": "/b"}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].uri",
        "only one",
    ),
    "empty uri match": Invalid(
        vs([{"match": [{"uri": {}}], "route": VS_ROUTE}]), "spec.http[0].match[0].uri", "one of"
    ),
    "empty prefix": Invalid(
        vs([{"match": [{"uri": {"prefix": ""}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].uri.prefix",
        "empty",
    ),
    "query param prefix": Invalid(
        vs([{"match": [{"queryParams": {"a": {"prefix": "x"}}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].queryParams.a.prefix",
    ),
    "invalid header name in match": Invalid(
        vs([{"match": [{"headers": {"x y": {"exact": "1"}}}], "route": VS_ROUTE}]),
        'spec.http[0].match[0].headers["x y"]',
    ),
    "match withoutHeaders": Invalid(
        vs([{"match": [{"withoutHeaders": {"a": {}}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].withoutHeaders",
        "not supported",
    ),
    "match port 0": Invalid(
        vs([{"match": [{"port": 0}], "route": VS_ROUTE}]), "spec.http[0].match[0].port"
    ),
    "bad source label": Invalid(
        vs([{"match": [{"sourceLabels": {"version": "v 1"}}], "route": VS_ROUTE}]),
        "spec.http[0].match[0].sourceLabels.version",
    ),
    "route and redirect": Invalid(
        vs_route(redirect={"uri": "/x"}), "spec.http[0]", "route or redirect"
    ),
    "neither route nor redirect": Invalid(
        vs([{"timeout": "1s"}]), "spec.http[0].route", "required"
    ),
    "redirect with a timeout": Invalid(
        vs([{"redirect": {"uri": "/x"}, "timeout": "1s"}]), "spec.http[0].timeout", "no effect"
    ),
    "redirect with retries": Invalid(
        vs([{"redirect": {"uri": "/x"}, "retries": {"attempts": 2}}]),
        "spec.http[0].retries",
        "no effect",
    ),
    "redirect with a mirror": Invalid(
        vs([{"redirect": {"uri": "/x"}, "mirror": {"host": "reviews"}}]),
        "spec.http[0].mirror",
        "no effect",
    ),
    "redirect code 200": Invalid(
        vs([{"redirect": {"uri": "/x", "redirectCode": 200}}]), "spec.http[0].redirect.redirectCode"
    ),
    "redirect without target": Invalid(
        vs([{"redirect": {"redirectCode": 301}}]), "spec.http[0].redirect", "uri or authority"
    ),
    "redirect scheme": Invalid(
        vs([{"redirect": {"uri": "/x", "scheme": "https"}}]),
        "spec.http[0].redirect.scheme",
        "not supported",
    ),
    "rewrite and redirect": Invalid(
        vs([{"redirect": {"uri": "/x"}, "rewrite": {"uri": "/y"}}]), "spec.http[0].rewrite"
    ),
    "empty rewrite": Invalid(vs_route(rewrite={}), "spec.http[0].rewrite", "uri or authority"),
    "uriRegexRewrite": Invalid(
        vs_route(rewrite={"uriRegexRewrite": {"match": "a", "rewrite": "b"}}),
        "spec.http[0].rewrite.uriRegexRewrite",
        "not supported",
    ),
    "fault without delay or abort": Invalid(
        vs_route(fault={}), "spec.http[0].fault", "delay, abort"
    ),
    "abort status 700": Invalid(
        vs_route(fault={"abort": {"httpStatus": 700}}), "spec.http[0].fault.abort.httpStatus"
    ),
    "abort grpcStatus": Invalid(
        vs_route(fault={"abort": {"grpcStatus": "UNAVAILABLE"}}),
        "spec.http[0].fault.abort.grpcStatus",
        "not supported",
    ),
    "delay percentage 150": Invalid(
        vs_route(fault={"delay": {"fixedDelay": "1s", "percentage": {"value": 150}}}),
        "spec.http[0].fault.delay.percentage.value",
        "100",
    ),
    "delay without fixedDelay": Invalid(
        vs_route(fault={"delay": {"percentage": {"value": 1}}}),
        "spec.http[0].fault.delay.fixedDelay",
        "required",
    ),
    "exponentialDelay": Invalid(
        vs_route(fault={"delay": {"exponentialDelay": "1s", "fixedDelay": "1s"}}),
        "spec.http[0].fault.delay.exponentialDelay",
        "not supported",
    ),
    "deprecated percent": Invalid(
        vs_route(fault={"delay": {"fixedDelay": "1s", "percent": 5}}),
        "spec.http[0].fault.delay.percent",
        "percentage",
    ),
    "mirror percentage below 0": Invalid(
        vs_route(mirror={"host": "a"}, mirrorPercentage={"value": -1}),
        "spec.http[0].mirrorPercentage.value",
    ),
    "mirrors list": Invalid(
        vs_route(mirrors=[{"destination": {"host": "a"}}]), "spec.http[0].mirrors", "not supported"
    ),
    "directResponse": Invalid(
        vs([{"directResponse": {"status": 200}}]), "spec.http[0].directResponse", "not supported"
    ),
    "set a pseudo-header": Invalid(
        vs_route(headers={"response": {"set": {":status": "200"}}}),
        'spec.http[0].headers.response.set[":status"]',
    ),
    "header value with a lone percent": Invalid(
        vs_route(headers={"request": {"set": {"x-a": "100%"}}}),
        "spec.http[0].headers.request.set.x-a",
        "%%",
    ),
    "cors method that is not one": Invalid(
        vs_route(corsPolicy={"allowMethods": ["FETCH"]}), "spec.http[0].corsPolicy.allowMethods[0]"
    ),
    "cors maxAge in milliseconds": Invalid(
        vs_route(corsPolicy={"maxAge": "1500ms"}), "spec.http[0].corsPolicy.maxAge", "seconds"
    ),
    "cors allowOrigin": Invalid(
        vs_route(corsPolicy={"allowOrigin": ["*"]}),
        "spec.http[0].corsPolicy.allowOrigin",
        "allowOrigins",
    ),
    "duplicate route names": Invalid(
        vs([{"name": "a", "route": VS_ROUTE}, {"name": "a", "route": VS_ROUTE}]),
        "spec.http[1].name",
        "already used",
    ),
    "tcp route without destinations": Invalid(
        with_spec("VirtualService", {"hosts": ["db"], "tcp": [{"route": []}]}), "spec.tcp[0].route"
    ),
    "tcp match on subnets": Invalid(
        with_spec(
            "VirtualService",
            {
                "hosts": ["db"],
                "tcp": [{"match": [{"destinationSubnets": ["10.0.0.0/8"]}], "route": VS_ROUTE}],
            },
        ),
        "spec.tcp[0].match[0].destinationSubnets",
        "not supported",
    ),
    # --- DestinationRule ----------------------------------------------------------------
    "dr without host": Invalid(
        with_spec("DestinationRule", {"subsets": []}), "spec.host", "required"
    ),
    "dr duplicate subset names": Invalid(
        dr(
            subsets=[
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v1", "labels": {"version": "v2"}},
            ]
        ),
        "spec.subsets[1]",
        "duplicate subset name",
    ),
    "dr subset without name": Invalid(
        dr(subsets=[{"labels": {"version": "v1"}}]), "spec.subsets[0].name", "required"
    ),
    "dr unknown load balancer": Invalid(
        dr(trafficPolicy={"loadBalancer": {"simple": "FASTEST"}}),
        "spec.trafficPolicy.loadBalancer.simple",
        "ROUND_ROBIN",
    ),
    "dr LEAST_CONN": Invalid(
        dr(trafficPolicy={"loadBalancer": {"simple": "LEAST_CONN"}}),
        "spec.trafficPolicy.loadBalancer.simple",
        "not supported",
    ),
    "dr simple and consistentHash": Invalid(
        dr(
            trafficPolicy={
                "loadBalancer": {"simple": "RANDOM", "consistentHash": {"useSourceIp": True}}
            }
        ),
        "spec.trafficPolicy.loadBalancer",
        "only one",
    ),
    "dr two hash keys": Invalid(
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "consistentHash": {"useSourceIp": True, "httpHeaderName": "x-user"}
                }
            }
        ),
        "spec.trafficPolicy.loadBalancer.consistentHash",
        "only one",
    ),
    "dr maglev table size not prime": Invalid(
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 1000}}
                }
            }
        ),
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
        "prime",
    ),
    "dr cookie without name": Invalid(
        dr(trafficPolicy={"loadBalancer": {"consistentHash": {"httpCookie": {"ttl": "1s"}}}}),
        "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
    ),
    "dr distribute not summing to 100": Invalid(
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "localityLbSetting": {
                        "distribute": [{"from": "eu/*", "to": {"eu/a/*": 70, "eu/b/*": 20}}]
                    }
                }
            }
        ),
        "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
        "sum to 90",
    ),
    "dr failover and distribute": Invalid(
        dr(
            trafficPolicy={
                "loadBalancer": {
                    "localityLbSetting": {
                        "distribute": [{"from": "eu/*", "to": {"eu/*": 100}}],
                        "failover": [{"from": "eu", "to": "us"}],
                    }
                }
            }
        ),
        "spec.trafficPolicy.loadBalancer.localityLbSetting",
        "not both",
    ),
    "dr failover to the same region": Invalid(
        dr(
            trafficPolicy={
                "loadBalancer": {"localityLbSetting": {"failover": [{"from": "eu", "to": "eu"}]}}
            }
        ),
        "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to",
    ),
    "dr negative maxConnections": Invalid(
        dr(trafficPolicy={"connectionPool": {"tcp": {"maxConnections": -1}}}),
        "spec.trafficPolicy.connectionPool.tcp.maxConnections",
    ),
    "dr connectTimeout of zero": Invalid(
        dr(trafficPolicy={"connectionPool": {"tcp": {"connectTimeout": "0ms"}}}),
        "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
    ),
    "dr empty connection pool": Invalid(
        dr(trafficPolicy={"connectionPool": {}}),
        "spec.trafficPolicy.connectionPool",
        "at least one",
    ),
    "dr http idleTimeout": Invalid(
        dr(trafficPolicy={"connectionPool": {"http": {"idleTimeout": "1s"}}}),
        "spec.trafficPolicy.connectionPool.http.idleTimeout",
        "not supported",
    ),
    "dr maxEjectionPercent 101": Invalid(
        dr(trafficPolicy={"outlierDetection": {"maxEjectionPercent": 101}}),
        "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
    ),
    "dr outlier interval without unit": Invalid(
        dr(trafficPolicy={"outlierDetection": {"interval": "5"}}),
        "spec.trafficPolicy.outlierDetection.interval",
        "duration",
    ),
    "dr consecutiveErrors": Invalid(
        dr(trafficPolicy={"outlierDetection": {"consecutiveErrors": 5}}),
        "spec.trafficPolicy.outlierDetection.consecutiveErrors",
        "consecutive5xxErrors",
    ),
    "dr unknown tls mode": Invalid(
        dr(trafficPolicy={"tls": {"mode": "STRICT"}}), "spec.trafficPolicy.tls.mode", "ISTIO_MUTUAL"
    ),
    "dr tls credentialName": Invalid(
        dr(trafficPolicy={"tls": {"mode": "SIMPLE", "credentialName": "x"}}),
        "spec.trafficPolicy.tls.credentialName",
        "not supported",
    ),
    "dr tls SIMPLE without caCertificates": Invalid(
        dr(trafficPolicy={"tls": {"mode": "SIMPLE"}}),
        "spec.trafficPolicy.tls.caCertificates",
        "insecureSkipVerify",
    ),
    "dr tls MUTUAL without a key": Invalid(
        dr(
            trafficPolicy={
                "tls": {
                    "mode": "MUTUAL",
                    "caCertificates": "/ca.pem",
                    "clientCertificate": "/c.pem",
                }
            }
        ),
        "spec.trafficPolicy.tls.privateKey",
        "required with mode MUTUAL",
    ),
    "dr tls certificate for ISTIO_MUTUAL": Invalid(
        dr(trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL", "caCertificates": "/ca.pem"}}),
        "spec.trafficPolicy.tls.caCertificates",
        "SIMPLE or MUTUAL",
    ),
    "dr tls relative path": Invalid(
        dr(trafficPolicy={"tls": {"mode": "SIMPLE", "caCertificates": "ca.pem"}}),
        "spec.trafficPolicy.tls.caCertificates",
        "absolute path",
    ),
    "dr duplicate port settings": Invalid(
        dr(
            trafficPolicy={
                "portLevelSettings": [
                    {"port": {"number": 80}, "loadBalancer": {"simple": "RANDOM"}},
                    {"port": {"number": 80}, "loadBalancer": {"simple": "ROUND_ROBIN"}},
                ]
            }
        ),
        "spec.trafficPolicy.portLevelSettings[1].port",
        "already",
    ),
    "dr port settings without port": Invalid(
        dr(trafficPolicy={"portLevelSettings": [{"loadBalancer": {"simple": "RANDOM"}}]}),
        "spec.trafficPolicy.portLevelSettings[0].port",
        "required",
    ),
    "dr empty traffic policy": Invalid(dr(trafficPolicy={}), "spec.trafficPolicy", "at least one"),
    "dr workloadSelector": Invalid(
        dr(workloadSelector={"matchLabels": {"app": "a"}}), "spec.workloadSelector", "not supported"
    ),
    # --- ServiceEntry -------------------------------------------------------------------
    "se without hosts": Invalid(with_spec("ServiceEntry", {"ports": []}), "spec.hosts", "required"),
    "se host '*'": Invalid(se(hosts=["*"]), "spec.hosts[0]"),
    "se bad address": Invalid(se(addresses=["10.0.0.300"]), "spec.addresses[0]"),
    "se port without name": Invalid(
        se(ports=[{"number": 443, "protocol": "TLS"}]), "spec.ports[0].name", "required"
    ),
    "se duplicate port numbers": Invalid(
        se(
            ports=[
                {"number": 443, "name": "a", "protocol": "TLS"},
                {"number": 443, "name": "b", "protocol": "TLS"},
            ]
        ),
        "spec.ports[1]",
        "duplicate",
    ),
    "se duplicate port names": Invalid(
        se(
            ports=[
                {"number": 443, "name": "a", "protocol": "TLS"},
                {"number": 8443, "name": "a", "protocol": "TLS"},
            ]
        ),
        "spec.ports[1].name",
    ),
    "se protocol MONGO": Invalid(
        se(ports=[{"number": 27017, "name": "mongo", "protocol": "MONGO"}]),
        "spec.ports[0].protocol",
        "not supported",
    ),
    "se unknown location": Invalid(se(location="OUTSIDE"), "spec.location", "MESH_EXTERNAL"),
    "se DNS_ROUND_ROBIN": Invalid(
        se(resolution="DNS_ROUND_ROBIN"), "spec.resolution", "not supported"
    ),
    "se STATIC without endpoints": Invalid(se(resolution="STATIC"), "spec.endpoints", "endpoint"),
    "se STATIC with a host name endpoint": Invalid(
        se(resolution="STATIC", endpoints=[{"address": "db.example.com"}]),
        "spec.endpoints[0].address",
        "IP",
    ),
    "se NONE with endpoints": Invalid(
        se(resolution="NONE", endpoints=[{"address": "192.0.2.1"}]), "spec.endpoints"
    ),
    "se DNS with a wildcard host": Invalid(
        se(hosts=["*.example.com"]), "spec.hosts[0]", "wildcard"
    ),
    "se endpoint port not declared": Invalid(
        se(resolution="STATIC", endpoints=[{"address": "192.0.2.1", "ports": {"grpc": 9000}}]),
        "spec.endpoints[0].ports.grpc",
    ),
    "se endpoint weight 0": Invalid(
        se(resolution="STATIC", endpoints=[{"address": "192.0.2.1", "weight": 0}]),
        "spec.endpoints[0].weight",
    ),
    "se endpoint network": Invalid(
        se(resolution="STATIC", endpoints=[{"address": "192.0.2.1", "network": "n1"}]),
        "spec.endpoints[0].network",
        "not supported",
    ),
    "se exportTo ~ and more": Invalid(se(exportTo=["~", "."]), "spec.exportTo", "~"),
    "se exportTo not a list": Invalid(se(exportTo="."), "spec.exportTo", "a list of namespaces"),
    # --- Sidecar ------------------------------------------------------------------------
    "sidecar ALLOW_ANY": Invalid(
        sc(outboundTrafficPolicy={"mode": "ALLOW_ANY"}),
        "spec.outboundTrafficPolicy.mode",
        "explicit proxy",
    ),
    "sidecar unknown mode": Invalid(
        sc(outboundTrafficPolicy={"mode": "OPEN"}), "spec.outboundTrafficPolicy.mode", "valid"
    ),
    "sidecar egress proxy": Invalid(
        sc(outboundTrafficPolicy={"egressProxy": {"host": "x"}}),
        "spec.outboundTrafficPolicy.egressProxy",
        "not supported",
    ),
    "sidecar ingress": Invalid(sc(ingress=[{"port": {"number": 80}}]), "spec.ingress", "inbound"),
    "sidecar egress port": Invalid(
        sc(egress=[{"port": {"number": 80}, "hosts": ["./*"]}]), "spec.egress[0].port", "port"
    ),
    "sidecar egress bind": Invalid(
        sc(egress=[{"bind": "0.0.0.0", "hosts": ["./*"]}]), "spec.egress[0].bind", "supported"
    ),
    "sidecar egress capture mode": Invalid(
        sc(egress=[{"captureMode": "NONE", "hosts": ["./*"]}]),
        "spec.egress[0].captureMode",
        "supported",
    ),
    "sidecar host without namespace": Invalid(
        sc(egress=[{"hosts": ["reviews"]}]), "spec.egress[0].hosts[0]", "namespace/host"
    ),
    "sidecar host with a bad namespace": Invalid(
        sc(egress=[{"hosts": ["Prod/*"]}]), "spec.egress[0].hosts[0]", "DNS label"
    ),
    "sidecar host with a bad wildcard": Invalid(
        sc(egress=[{"hosts": ["./re*views"]}]), "spec.egress[0].hosts[0]", "wildcard"
    ),
    "sidecar egress without hosts": Invalid(sc(egress=[{}]), "spec.egress[0].hosts", "required"),
    "sidecar two egress listeners": Invalid(
        sc(egress=[{"hosts": ["./*"]}, {"hosts": ["*/*"]}]), "spec.egress", "one listener"
    ),
    "sidecar empty selector": Invalid(sc(workloadSelector={}), "spec.workloadSelector", ""),
    # --- Gateway ------------------------------------------------------------------------
    "gw without servers": Invalid(gw(), "spec.servers", "at least 1"),
    "gw server without hosts": Invalid(
        gw({"port": {"number": 80, "name": "http", "protocol": "HTTP"}}),
        "spec.servers[0].hosts",
        "required",
    ),
    "gw short host": Invalid(
        gw(http_server(hosts=["reviews"])), "spec.servers[0].hosts[0]", "short names"
    ),
    "gw bad host namespace": Invalid(
        gw(http_server(hosts=["Bad/a.example.com"])), "spec.servers[0].hosts[0]", "namespace"
    ),
    "gw port without name": Invalid(
        gw({"port": {"number": 80, "protocol": "HTTP"}, "hosts": ["*"]}),
        "spec.servers[0].port.name",
        "required",
    ),
    "gw protocol GRPC": Invalid(
        gw({"port": {"number": 80, "name": "g", "protocol": "GRPC"}, "hosts": ["*"]}),
        "spec.servers[0].port.protocol",
        "not supported",
    ),
    "gw HTTPS without tls": Invalid(
        gw({"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"]}),
        "spec.servers[0].tls",
        "required",
    ),
    "gw SIMPLE without certificates": Invalid(
        gw(
            {
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "tls": {"mode": "SIMPLE"},
            }
        ),
        "spec.servers[0].tls.serverCertificate",
        "credentialName",
    ),
    "gw MUTUAL without CA": Invalid(
        gw(
            {
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "tls": {"mode": "MUTUAL", "serverCertificate": "/c.pem", "privateKey": "/k.pem"},
            }
        ),
        "spec.servers[0].tls.caCertificates",
    ),
    "gw ISTIO_MUTUAL": Invalid(
        gw(
            {
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "tls": {"mode": "ISTIO_MUTUAL"},
            }
        ),
        "spec.servers[0].tls.mode",
        "not supported",
    ),
    "gw certificates on an HTTP server": Invalid(
        gw(http_server(tls={"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"})),
        "spec.servers[0].tls",
        "httpsRedirect",
    ),
    "gw credentialName": Invalid(
        gw(
            {
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "tls": {"mode": "SIMPLE", "credentialName": "shop-cert"},
            }
        ),
        "spec.servers[0].tls.credentialName",
        "not supported",
    ),
    "gw tls on a TCP server": Invalid(
        gw(
            {
                "port": {"number": 9000, "name": "tcp", "protocol": "TCP"},
                "hosts": ["*"],
                "tls": {"httpsRedirect": True},
            }
        ),
        "spec.servers[0].tls",
    ),
    "gw duplicate port names": Invalid(
        gw(http_server(), http_server()), "spec.servers[1].port.name", "already used"
    ),
    "gw one port, two protocols": Invalid(
        gw(
            http_server(),
            {"port": {"number": 80, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]},
        ),
        "spec.servers[1].port.protocol",
    ),
    "gw minProtocolVersion": Invalid(
        gw(
            {
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "tls": {
                    "mode": "SIMPLE",
                    "serverCertificate": "/c.pem",
                    "privateKey": "/k.pem",
                    "minProtocolVersion": "TLSV1_2",
                },
            }
        ),
        "spec.servers[0].tls.minProtocolVersion",
        "not supported",
    ),
    "gw server bind": Invalid(
        gw(http_server(bind="127.0.0.1")), "spec.servers[0].bind", "not supported"
    ),
    # --- PeerAuthentication -------------------------------------------------------------
    "pa unknown mode": Invalid(
        with_spec("PeerAuthentication", {"mtls": {"mode": "ON"}}), "spec.mtls.mode", "STRICT"
    ),
    "pa port mtls without selector": Invalid(
        with_spec(
            "PeerAuthentication",
            {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        ),
        "spec.portLevelMtls",
        "selector",
    ),
    "pa port not a number": Invalid(
        with_spec(
            "PeerAuthentication",
            {
                "selector": {"matchLabels": {"app": "a"}},
                "portLevelMtls": {"http": {"mode": "DISABLE"}},
            },
        ),
        "spec.portLevelMtls.http",
        "port",
    ),
    "pa selector without labels": Invalid(
        with_spec("PeerAuthentication", {"selector": {"matchLabels": {}}}),
        "spec.selector.matchLabels",
    ),
    "pa selector wildcard": Invalid(
        with_spec("PeerAuthentication", {"selector": {"matchLabels": {"app": "*"}}}),
        "spec.selector.matchLabels.app",
    ),
    "pa selector without matchLabels": Invalid(
        with_spec("PeerAuthentication", {"selector": {"app": "a"}}),
        "spec.selector.app",
        "unknown field",
    ),
    # --- RequestAuthentication ----------------------------------------------------------
    "ra rule without issuer": Invalid(
        with_spec("RequestAuthentication", {"jwtRules": [{"jwks": RSA_JWKS}]}),
        "spec.jwtRules[0].issuer",
        "required",
    ),
    "ra jwksUri not https": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "jwksUri": "http://issuer.example.com/keys"}]},
        ),
        "spec.jwtRules[0].jwksUri",
        "must be https",
    ),
    "ra jwksUri relative": Invalid(
        with_spec("RequestAuthentication", {"jwtRules": [{"issuer": "a", "jwksUri": "/keys"}]}),
        "spec.jwtRules[0].jwksUri",
        "absolute https URL",
    ),
    "ra jwksUri with credentials": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "jwksUri": "https://me:pw@issuer.example.com/k"}]},
        ),
        "spec.jwtRules[0].jwksUri",
        "credentials",
    ),
    "ra jwksUri and jwks": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "jwks": RSA_JWKS, "jwksUri": "https://a/keys"}]},
        ),
        "spec.jwtRules[0].jwksUri",
        "not both",
    ),
    "ra rule without keys": Invalid(
        with_spec("RequestAuthentication", {"jwtRules": [{"issuer": "a"}]}),
        "spec.jwtRules[0].jwksUri",
        "one of jwks or jwksUri is required",
    ),
    "ra timeout": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "jwksUri": "https://a/keys", "timeout": "5s"}]},
        ),
        "spec.jwtRules[0].timeout",
        "not supported",
    ),
    "ra symmetric key": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "jwks": '{"keys": [{"kty": "oct", "k": "c2Vj"}]}'}]},
        ),
        "spec.jwtRules[0].jwks",
        "symmetric key",
    ),
    "ra unknown key type": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "jwks": '{"keys": [{"kty": "XYZ"}]}'}]},
        ),
        "spec.jwtRules[0].jwks",
        "not one of RSA, EC, OKP",
    ),
    "ra jwks key Envoy cannot use": Invalid(
        with_spec(
            "RequestAuthentication",
            {
                "jwtRules": [
                    {
                        "issuer": "a",
                        "jwks": '{"keys": [{"kty": "RSA", "n": "xFsKQeOSLyX3W1Lm", "e": "AQAB"}]}',
                    }
                ]
            },
        ),
        "spec.jwtRules[0].jwks",
        "keys[0] cannot verify tokens: n is not an RSA modulus",
    ),
    "ra jwks not JSON": Invalid(
        with_spec("RequestAuthentication", {"jwtRules": [{"issuer": "a", "jwks": "{keys"}]}),
        "spec.jwtRules[0].jwks",
        "JSON",
    ),
    "ra header without name": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "fromHeaders": [{"prefix": "Bearer "}]}]},
        ),
        "spec.jwtRules[0].fromHeaders[0].name",
    ),
    "ra cookie name with a space": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "jwks": RSA_JWKS, "fromCookies": ["my session"]}]},
        ),
        "spec.jwtRules[0].fromCookies[0]",
        "not a valid cookie name",
    ),
    "ra cookie name with '='": Invalid(
        with_spec(
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "a", "jwks": RSA_JWKS, "fromCookies": ["a=b"]}]},
        ),
        "spec.jwtRules[0].fromCookies[0]",
        "not a valid cookie name",
    ),
    "ra claim to an invalid header": Invalid(
        with_spec(
            "RequestAuthentication",
            {
                "jwtRules": [
                    {
                        "issuer": "a",
                        "jwks": RSA_JWKS,
                        "outputClaimToHeaders": [{"header": "x user", "claim": "sub"}],
                    }
                ]
            },
        ),
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
        "not a valid header name",
    ),
    "ra claim to a pseudo-header": Invalid(
        with_spec(
            "RequestAuthentication",
            {
                "jwtRules": [
                    {
                        "issuer": "a",
                        "jwks": RSA_JWKS,
                        "outputClaimToHeaders": [{"header": ":path", "claim": "sub"}],
                    }
                ]
            },
        ),
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
        "pseudo-headers",
    ),
    "ra claim to Host": Invalid(
        with_spec(
            "RequestAuthentication",
            {
                "jwtRules": [
                    {
                        "issuer": "a",
                        "jwks": RSA_JWKS,
                        "outputClaimToHeaders": [{"header": "Host", "claim": "sub"}],
                    }
                ]
            },
        ),
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
        "Host header",
    ),
    "ra claim without a claim": Invalid(
        with_spec(
            "RequestAuthentication",
            {
                "jwtRules": [
                    {"issuer": "a", "jwks": RSA_JWKS, "outputClaimToHeaders": [{"header": "x-u"}]}
                ]
            },
        ),
        "spec.jwtRules[0].outputClaimToHeaders[0].claim",
        "required",
    ),
    "ra two claims to one header": Invalid(
        with_spec(
            "RequestAuthentication",
            {
                "jwtRules": [
                    {
                        "issuer": "a",
                        "jwks": RSA_JWKS,
                        "outputPayloadToHeader": "x-user",
                        "outputClaimToHeaders": [{"header": "X-User", "claim": "sub"}],
                    }
                ]
            },
        ),
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
        "written twice",
    ),
    "ra targetRef": Invalid(
        with_spec("RequestAuthentication", {"targetRef": {"kind": "Service", "name": "a"}}),
        "spec.targetRef",
        "not supported",
    ),
    "ra empty audience": Invalid(
        with_spec("RequestAuthentication", {"jwtRules": [{"issuer": "a", "audiences": [""]}]}),
        "spec.jwtRules[0].audiences[0]",
    ),
    # --- AuthorizationPolicy ------------------------------------------------------------
    "ap dry-run not a boolean": Invalid(
        patched("AuthorizationPolicy", "metadata.annotations", {"istio.io/dry-run": "yes"}),
        'metadata.annotations["istio.io/dry-run"]',
        'write "true" or "false"',
    ),
    "ap dry-run of an AUDIT policy": Invalid(
        {
            **ap(action="AUDIT", rules=[{}]),
            "metadata": {
                "name": "x",
                "namespace": "default",
                "annotations": {"istio.io/dry-run": "true"},
            },
        },
        'metadata.annotations["istio.io/dry-run"]',
        "not AUDIT",
    ),
    "ap CUSTOM action": Invalid(ap(action="CUSTOM", rules=[{}]), "spec.action", "not supported"),
    "ap unknown action": Invalid(ap(action="PERMIT"), "spec.action", "ALLOW"),
    "ap DENY without rules": Invalid(ap(action="DENY"), "spec.rules", "never matches"),
    "ap empty source": Invalid(
        ap(rules=[{"from": [{"source": {}}]}]), "spec.rules[0].from[0].source", "at least one"
    ),
    "ap from without source": Invalid(
        ap(rules=[{"from": [{}]}]), "spec.rules[0].from[0].source", "required"
    ),
    "ap empty from list": Invalid(ap(rules=[{"from": []}]), "spec.rules[0].from"),
    "ap ipBlocks": Invalid(
        ap(rules=[{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}]),
        "spec.rules[0].from[0].source.ipBlocks",
        "not supported",
    ),
    # Hosts and namespaces are matched with regexes Interlock builds: Envoy would NACK them
    # past its RE2 program size (a 100-character host: 110).
    "ap host too long for Envoy's regex": Invalid(
        ap(rules=[{"to": [{"operation": {"hosts": ["h" * 88 + ".example.com"]}}]}]),
        "spec.rules[0].to[0].operation.hosts[0]",
        "program size",
    ),
    "ap namespace too long for Envoy's regex": Invalid(
        ap(rules=[{"from": [{"source": {"namespaces": ["n" * 70]}}]}]),
        "spec.rules[0].from[0].source.namespaces[0]",
        "program size",
    ),
    "ap bad port": Invalid(
        ap(rules=[{"to": [{"operation": {"ports": ["http"]}}]}]),
        "spec.rules[0].to[0].operation.ports[0]",
        "port",
    ),
    "ap wildcard in the middle": Invalid(
        ap(rules=[{"to": [{"operation": {"paths": ["/a/*/b"]}}]}]),
        "spec.rules[0].to[0].operation.paths[0]",
        "'*'",
    ),
    "ap path template": Invalid(
        ap(rules=[{"to": [{"operation": {"paths": ["/a/{*}/b"]}}]}]),
        "spec.rules[0].to[0].operation.paths[0]",
        "template",
    ),
    "ap unknown condition key": Invalid(
        ap(rules=[{"when": [{"key": "request.method", "values": ["GET"]}]}]),
        "spec.rules[0].when[0].key",
        "condition key",
    ),
    "ap experimental key": Invalid(
        ap(rules=[{"when": [{"key": "experimental.envoy.filters.a[b]", "values": ["x"]}]}]),
        "spec.rules[0].when[0].key",
        "not supported",
    ),
    "ap condition without values": Invalid(
        ap(rules=[{"when": [{"key": "source.namespace"}]}]), "spec.rules[0].when[0]", "values"
    ),
    "ap source.ip not an IP": Invalid(
        ap(rules=[{"when": [{"key": "source.ip", "values": ["somewhere"]}]}]),
        "spec.rules[0].when[0].values[0]",
        "not an IP",
    ),
    "ap destination.port not a port": Invalid(
        ap(rules=[{"when": [{"key": "destination.port", "notValues": ["99999"]}]}]),
        "spec.rules[0].when[0].notValues[0]",
    ),
    "ap header key without brackets": Invalid(
        ap(rules=[{"when": [{"key": "request.headers", "values": ["a"]}]}]),
        "spec.rules[0].when[0].key",
        "brackets",
    ),
    "ap empty principal": Invalid(
        ap(rules=[{"from": [{"source": {"principals": [""]}}]}]),
        "spec.rules[0].from[0].source.principals[0]",
    ),
    "ap condition value with a wildcard in the middle": Invalid(
        ap(rules=[{"when": [{"key": "request.headers[x-a]", "notValues": ["a*b"]}]}]),
        "spec.rules[0].when[0].notValues[0]",
        "'*' may only start or end a value",
    ),
    # --- RateLimit ----------------------------------------------------------------------
    "rl without target": Invalid(
        with_spec("RateLimit", {"tokenBucket": {"maxTokens": 1, "fillInterval": "1s"}}),
        "spec.target",
        "required",
    ),
    "rl without token bucket": Invalid(
        with_spec("RateLimit", {"target": {"service": "reviews"}}), "spec.tokenBucket", "required"
    ),
    "rl fill interval under 50ms": Invalid(
        rl(tokenBucket={"maxTokens": 1, "fillInterval": "10ms"}),
        "spec.tokenBucket.fillInterval",
        "50ms",
    ),
    "rl zero tokens": Invalid(
        rl(tokenBucket={"maxTokens": 0, "fillInterval": "1s"}), "spec.tokenBucket.maxTokens"
    ),
    "rl status 200": Invalid(rl(responseStatus=200), "spec.responseStatus", "400"),
    "rl status Envoy cannot answer": Invalid(
        rl(responseStatus=418), "spec.responseStatus", "Envoy's rate limit"
    ),
    "rl route with name and prefix": Invalid(
        rl(target={"service": "reviews", "routes": [{"name": "a", "pathPrefix": "/a"}]}),
        "spec.target.routes[0]",
        "only one",
    ),
    "rl prefix without slash": Invalid(
        rl(target={"service": "reviews", "routes": [{"pathPrefix": "api"}]}),
        "spec.target.routes[0].pathPrefix",
        "'/'",
    ),
    "rl percentage 200": Invalid(rl(percentage=200), "spec.percentage"),
    "rl host header": Invalid(rl(responseHeaders={"host": "x"}), "spec.responseHeaders.host"),
    "rl bad service": Invalid(rl(target={"service": "Not A Host"}), "spec.target.service"),
    # --- Telemetry ----------------------------------------------------------------------
    "tm nothing to do": Invalid(tm(service="reviews"), "spec", "accessLogging, tracing"),
    "tm service and selector": Invalid(
        tm(service="reviews", selector={"matchLabels": {"app": "reviews"}}, accessLogging={}),
        "spec",
        "only one",
    ),
    "tm unknown format": Invalid(
        tm(accessLogging={"format": "xml"}), "spec.accessLogging.format", "json"
    ),
    "tm sampling 101": Invalid(
        tm(accessLogging={"samplingPercentage": 101}), "spec.accessLogging.samplingPercentage"
    ),
    "tm unknown provider": Invalid(
        tm(tracing={"provider": "jaeger", "address": "a:1"}), "spec.tracing.provider", "zipkin"
    ),
    "tm address without port": Invalid(
        tm(tracing={"provider": "zipkin", "address": "zipkin"}), "spec.tracing.address", "host:port"
    ),
    "tm tracing without address": Invalid(
        tm(tracing={"provider": "zipkin"}), "spec.tracing.address", "required"
    ),
    "tm metrics": Invalid(tm(metrics=[{}], accessLogging={}), "spec.metrics", "unknown field"),
}
