"""RateLimit (interlock.io/v1, Interlock's own kind): a local token-bucket rate limit on the
requests a service receives — all of them, or only some routes.

```yaml
apiVersion: interlock.io/v1
kind: RateLimit
metadata: {name: reviews, namespace: default}
spec:
  target:
    service: reviews            # a registered service, written as in VirtualService hosts
    routes:                     # optional: only these routes (absent: every request)
    - name: reviews-v2          # an http route name of a VirtualService for the service
    - pathPrefix: /api/
  tokenBucket: {maxTokens: 100, tokensPerFill: 10, fillInterval: 1s}
  responseStatus: 429           # default 429
  responseHeaders: {x-rate-limited: "true"}
  enabled: true                 # default true
  percentage: 100               # share of requests the limit applies to (default 100)
```

Each instance of the service (each sidecar) keeps its own bucket: the limit is per instance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock.model.errors import FieldError
from interlock.model.policy.common import no_map
from interlock.model.policy.hosts import fqdn_error
from interlock.model.schema import (
    Bool,
    Duration,
    Errors,
    Field,
    Int,
    ListOf,
    MapOf,
    Obj,
    OneOf,
    Percentage,
    Str,
    child,
)
from interlock.model.schema.values import header_value_error, header_write_error

#: Envoy's local rate limit refuses a fill interval under 50 ms.
MIN_FILL_INTERVAL_MS = 50
#: The 4xx and 5xx statuses Envoy's local rate limit can answer with (its HttpStatus enum).
RESPONSE_STATUSES = frozenset(
    [*range(400, 418), 421, 422, 423, 424, 426, 428, 429, 431, *range(500, 509), 510, 511]
)


def _check_status(spec: RateLimit, path: str, errors: Errors) -> None:
    if spec.response_status not in RESPONSE_STATUSES:
        errors.append(
            FieldError(
                child(path, "responseStatus"),
                f"{spec.response_status} is not a status Envoy's rate limit can answer with "
                "(e.g. 429, 503)",
            )
        )


@dataclass(frozen=True)
class RouteSelector:
    """One of: ``name`` (an http route's name in a VirtualService of the target service) or
    ``path_prefix`` (requests whose path starts with it)."""

    name: str | None = None
    path_prefix: str | None = None


@dataclass(frozen=True)
class RateLimitTarget:
    service: str
    routes: tuple[RouteSelector, ...] = ()


@dataclass(frozen=True)
class TokenBucket:
    """Up to ``max_tokens`` requests at once; ``tokens_per_fill`` more every
    ``fill_interval``."""

    max_tokens: int
    fill_interval: dt.timedelta
    tokens_per_fill: int = 1


@dataclass(frozen=True)
class RateLimit:
    target: RateLimitTarget
    token_bucket: TokenBucket
    response_status: int = 429
    response_headers: Mapping[str, str] = field(default_factory=no_map)
    enabled: bool = True
    percentage: float = 100.0


def _path_prefix_error(value: str) -> str | None:
    if not value.startswith("/"):
        return f"{value!r} must start with '/'"
    return None


def _response_header_error(name: str) -> str | None:
    return header_write_error(name, request=False)


ROUTE_SELECTOR: Obj[RouteSelector] = Obj(
    RouteSelector,
    {"name": Str(non_empty=True), "pathPrefix": Str(check=_path_prefix_error)},
    one_of=[OneOf(("name", "pathPrefix"))],
)

SPEC: Obj[RateLimit] = Obj(
    RateLimit,
    {
        "target": Field(
            Obj(
                RateLimitTarget,
                {
                    "service": Field(Str(check=fqdn_error), required=True),
                    "routes": ListOf(ROUTE_SELECTOR),
                },
            ),
            required=True,
        ),
        "tokenBucket": Field(
            Obj(
                TokenBucket,
                {
                    "maxTokens": Field(Int(minimum=1, maximum=2**32 - 1), required=True),
                    "tokensPerFill": Int(minimum=1, maximum=2**32 - 1),
                    "fillInterval": Field(Duration(minimum_ms=MIN_FILL_INTERVAL_MS), required=True),
                },
            ),
            required=True,
        ),
        "responseStatus": Int(minimum=400, maximum=599),
        "responseHeaders": MapOf(Str(check=_response_header_error), Str(check=header_value_error)),
        "enabled": Bool(),
        "percentage": Percentage(),
    },
    checks=[_check_status],
)
