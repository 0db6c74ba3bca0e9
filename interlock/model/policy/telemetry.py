"""Telemetry (interlock.io/v1, Interlock's own kind): access logs and tracing, for the whole
mesh (no scope) or for one service (``service``) or the instances a ``selector`` picks.

```yaml
apiVersion: interlock.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: default}
spec:
  accessLogging:
    enabled: true               # default true
    format: json                # json or text (default json)
    samplingPercentage: 10      # share of requests logged (default 100)
    als: true                   # also stream the logs to the control plane (default true)
  tracing:
    provider: zipkin            # zipkin or opentelemetry
    address: zipkin.default:9411
    randomSamplingPercentage: 1 # default 1
```

A scoped Telemetry (``service`` or ``selector``) overrides the mesh-wide one for what it
selects, section by section (``accessLogging``, ``tracing``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from interlock.model.errors import FieldError
from interlock.model.policy.common import WORKLOAD_SELECTOR, WorkloadSelector
from interlock.model.policy.hosts import fqdn_error
from interlock.model.schema import (
    Bool,
    Enum,
    Errors,
    Field,
    Obj,
    OneOf,
    Percentage,
    Str,
)
from interlock.model.schema.values import ip_error


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class TracingProvider(enum.StrEnum):
    ZIPKIN = "zipkin"
    OPENTELEMETRY = "opentelemetry"


@dataclass(frozen=True)
class AccessLogging:
    enabled: bool = True
    format: LogFormat = LogFormat.JSON
    sampling_percentage: float = 100.0
    #: Streamed to the control plane, which builds the service graph from them.
    als: bool = True


@dataclass(frozen=True)
class Tracing:
    provider: TracingProvider
    address: str
    random_sampling_percentage: float = 1.0

    @property
    def host_port(self) -> tuple[str, int]:
        """``address`` split into host and port (IPv6 brackets removed)."""
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Telemetry:
    service: str | None = None
    selector: WorkloadSelector | None = None
    access_logging: AccessLogging | None = None
    tracing: Tracing | None = None

    @property
    def mesh_wide(self) -> bool:
        return self.service is None and self.selector is None


def address_error(value: str) -> str | None:
    """``host:port``: a host name (a service's or an external one) or an IP (``[::1]:4317``)."""
    host, colon, port = value.rpartition(":")
    if not colon or not host:
        return f"{value!r} must be host:port"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"{value!r}: the port must be a number from 1 to 65535"
    if host.startswith("[") and host.endswith("]"):
        return ip_error(host[1:-1])
    if ip_error(host) is None:
        return None
    return fqdn_error(host)


def _check(telemetry: Telemetry, path: str, errors: Errors) -> None:
    if telemetry.access_logging is None and telemetry.tracing is None:
        errors.append(FieldError(path, "must set accessLogging, tracing or both"))


SPEC: Obj[Telemetry] = Obj(
    Telemetry,
    {
        "service": Str(check=fqdn_error),
        "selector": WORKLOAD_SELECTOR,
        "accessLogging": Obj(
            AccessLogging,
            {
                "enabled": Bool(),
                "format": Enum(LogFormat),
                "samplingPercentage": Percentage(),
                "als": Bool(),
            },
        ),
        "tracing": Obj(
            Tracing,
            {
                "provider": Field(Enum(TracingProvider), required=True),
                "address": Field(Str(check=address_error), required=True),
                "randomSamplingPercentage": Percentage(),
            },
        ),
    },
    one_of=[OneOf(("service", "selector"), required=False)],
    checks=[_check],
)
