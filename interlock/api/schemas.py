"""The wire schemas of API v1 (pydantic), validated once, here, at the edge.

Request bodies are strict (``"8080"`` is not a port, ``1`` is not ``true``; ``8080.0`` is, as
JSON Schema's integers are) and closed (an unknown field is an error); names, labels,
localities and addresses follow :mod:`interlock.model.names`, and the OpenAPI document
declares the same patterns and limits (``tests/api/test_fuzz.py`` holds the API to them).
Responses wrap resources with the mesh ``revision`` they were read or written at: one
resource is its fields plus ``revision``; a list is ``{"revision": …, "items": […]}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from interlock.model import names
from interlock.model.errors import FieldError, InvalidInput
from interlock.model.export import export_to_errors
from interlock.model.health import MAX_REASON, format_seconds
from interlock.model.schema.values import parse_duration
from interlock.model.service import (
    HealthCheck,
    Instance,
    Service,
    ServiceProtocol,
    health_check_errors,
)


def _rule(check: Callable[[str], str | None]) -> AfterValidator:
    def validate(value: str) -> str:
        if message := check(value):
            raise PydanticCustomError("invalid_value", message)
        return value

    return AfterValidator(validate)


def _port_rule(value: int) -> int:
    if message := names.port_error(value):
        raise PydanticCustomError("invalid_port", message)
    return value


def _reason_error(value: str) -> str | None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "a reason is one line of text without control characters"
    return None


def _locality_error(value: str) -> str | None:
    return names.locality_error(value) if value else None


def _declared(pattern: str, max_length: int, **extra: Any) -> Any:
    """What the OpenAPI document says of a name (the rule itself is enforced by ``_rule``,
    with a message a person can act on): the whole value matches ``pattern``."""
    return Field(json_schema_extra={"pattern": f"^{pattern}$", "maxLength": max_length, **extra})


ServiceName = Annotated[
    str, _rule(names.service_name_error), _declared(names.DNS_LABEL, 63, minLength=1)
]
Namespace = Annotated[
    str, _rule(names.namespace_error), _declared(names.DNS_LABEL, 63, minLength=1)
]
#: A namespace, or one of Istio's words: '.' (its own), '*' (every), '~' (none).
ExportTarget = Annotated[str, _declared(f"(?:{names.DNS_LABEL}|[.*~])", 63, minLength=1)]
InstanceId = Annotated[
    str, _rule(names.instance_id_error), _declared(names.INSTANCE_ID, 253, minLength=1)
]
Address = Annotated[
    str,
    _rule(names.address_error),
    Field(json_schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
]
LabelKey = Annotated[str, _rule(names.label_key_error), _declared(names.LABEL_KEY, 317)]
LabelValue = Annotated[str, _rule(names.label_value_error), _declared(names.LABEL_VALUE, 63)]
Locality = Annotated[str, _rule(_locality_error), _declared(f"({names.LOCALITY})?", 3 * 63 + 2)]


def _integral(value: Any) -> Any:
    """JSON Schema's integer: ``8080.0`` is one (a JSON number; still strict: not ``"8080"``,
    not ``true``, not ``8080.5``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_integral)]
Port = Annotated[
    Integer, AfterValidator(_port_rule), Field(json_schema_extra={"minimum": 1, "maximum": 65535})
]

MIN_TTL, MAX_TTL = 1.0, 86400.0

#: The syntax of a duration (``1.5s``, ``100ms``, ``1h30m``); each field states its range.
DURATION_PATTERN = r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ms|us|µs|ns|h|m|s))+$"


def _labels_schema(schema: dict[str, Any]) -> None:
    """Labels as JSON Schema says them: pydantic writes the key rule as ``patternProperties``,
    which lets any other key through; the API refuses them, so say so."""
    patterns = schema.pop("patternProperties", {})
    names = schema.setdefault("propertyNames", {})
    for pattern, value in patterns.items():
        names["pattern"] = pattern
        schema["additionalProperties"] = value


def _ttl_rule(value: str) -> str:
    nanos, error = parse_duration(value)
    if error is None and nanos is not None and not MIN_TTL <= nanos / 1e9 <= MAX_TTL:
        error = f"{value!r} is out of range: a ttl is from 1s to 24h"
    if error is None and nanos is not None and nanos % 1_000_000:
        error = f"{value!r} is more precise than a millisecond"
    if error is not None:
        raise PydanticCustomError("invalid_duration", error)
    return value


def duration_seconds(value: str) -> float:
    """A valid :data:`Ttl` in seconds."""
    nanos, _ = parse_duration(value)
    assert nanos is not None
    return nanos / 1e9


Ttl = Annotated[
    str,
    AfterValidator(_ttl_rule),
    Field(
        description="a duration from 1s to 24h, e.g. 30s, 1m30s",
        examples=["30s"],
        json_schema_extra={"pattern": DURATION_PATTERN},
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- services -----------------------------------------------------------------------------


def _duration_rule(value: str) -> str:
    nanos, error = parse_duration(value)
    if error is None and nanos is not None and nanos % 1_000_000:
        error = f"{value!r} is more precise than a millisecond"
    if error is not None:
        raise PydanticCustomError("invalid_duration", error)
    return value


Duration = Annotated[
    str,
    AfterValidator(_duration_rule),
    Field(examples=["5s", "500ms"], json_schema_extra={"pattern": DURATION_PATTERN}),
]


class HealthCheckSpec(_Body):
    """Envoy's active health check of the service's endpoints, run by every proxy that calls
    it: ``GET path`` (200-399 passes; HTTP/2 for http2 and grpc services) or, without
    ``path``, a TCP connection."""

    interval: Duration = "5s"
    timeout: Duration = "1s"
    path: str | None = Field(
        default=None,
        description="e.g. /healthz; none: a TCP connection (tcp services: none)",
        json_schema_extra={"pattern": "^/[\\x21-\\x7e\\x80-\\uffff]*$", "maxLength": 1024},
    )
    unhealthy_threshold: Integer = Field(
        default=3, ge=1, le=100, description="failures in a row: out"
    )
    healthy_threshold: Integer = Field(
        default=2, ge=1, le=100, description="successes in a row: back"
    )

    def to_model(self) -> HealthCheck:
        return HealthCheck(
            path=self.path,
            interval=duration_seconds(self.interval),
            timeout=duration_seconds(self.timeout),
            unhealthy_threshold=self.unhealthy_threshold,
            healthy_threshold=self.healthy_threshold,
        )


class HealthCheckView(_Out):
    path: str | None
    interval: str
    timeout: str
    unhealthy_threshold: int
    healthy_threshold: int

    @classmethod
    def of(cls, check: HealthCheck) -> HealthCheckView:
        return cls(
            path=check.path,
            interval=format_seconds(check.interval),
            timeout=format_seconds(check.timeout),
            unhealthy_threshold=check.unhealthy_threshold,
            healthy_threshold=check.healthy_threshold,
        )


class ServiceSpec(_Body):
    """The body of ``PUT /v1/services/{name}``."""

    namespace: Namespace = "default"
    # Lax only here: a JSON string must become the enum; other types are still refused.
    protocol: ServiceProtocol = Field(default=ServiceProtocol.HTTP, strict=False)
    port: Port
    health_check: HealthCheckSpec | None = None
    #: Istio's exportTo: the namespaces whose proxies may call it ('.', '*', '~' or names;
    #: '*' and '~' stand alone, which the schema says in words).
    export_to: list[ExportTarget] = Field(default=[], json_schema_extra={"uniqueItems": True})

    def to_model(self, name: str) -> Service:
        """The service; :class:`InvalidInput` naming ``health_check.*`` for a check its
        protocol cannot have or out of range, ``export_to[i]`` for a bad namespace."""
        check = None if self.health_check is None else self.health_check.to_model()
        if check is not None:
            errors = tuple(
                FieldError(f"health_check.{field}", message)
                for field, message in health_check_errors(check, self.protocol)
            )
            if errors:
                detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
                raise InvalidInput(f"invalid health check: {detail}", errors=errors)
        export_errors = tuple(
            FieldError("export_to" if index is None else f"export_to[{index}]", message)
            for index, message in export_to_errors(self.export_to)
        )
        if export_errors:
            detail = "; ".join(f"{e.field}: {e.message}" for e in export_errors)
            raise InvalidInput(f"invalid export_to: {detail}", errors=export_errors)
        return Service(
            name=name,
            namespace=self.namespace,
            protocol=self.protocol,
            port=self.port,
            health_check=check,
            export_to=tuple(self.export_to),
        )


class ServiceView(_Out):
    """A service as the API shows it (one item of a list)."""

    name: str
    namespace: str
    protocol: ServiceProtocol
    port: int
    health_check: HealthCheckView | None = None
    export_to: list[str] = []

    @classmethod
    def of(cls, service: Service) -> ServiceView:
        check = service.health_check
        return cls(
            name=service.name,
            namespace=service.namespace,
            protocol=service.protocol,
            port=service.port,
            health_check=None if check is None else HealthCheckView.of(check),
            export_to=list(service.export_to),
        )


class ServiceResponse(ServiceView):
    """One service and the revision it was read or written at."""

    revision: int

    @classmethod
    def at(cls, service: Service, revision: int) -> ServiceResponse:
        return cls(revision=revision, **ServiceView.of(service).model_dump())


class ServiceWritten(ServiceResponse):
    created: bool = Field(description="true when the service did not exist before")
    changed: bool = Field(description="false when the body was identical (no new revision)")


class ServiceList(_Out):
    revision: int
    items: list[ServiceView]


# --- instances ----------------------------------------------------------------------------


class InstanceSpec(_Body):
    """The body of ``PUT /v1/services/{name}/instances/{instance_id}``."""

    address: Address
    port: Port
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=names.MAX_LABELS, json_schema_extra=_labels_schema
    )
    locality: Locality = ""
    healthy: bool = Field(
        default=True,
        description="false takes the instance out of traffic by hand (its checks still run)",
    )
    ttl: Ttl | None = Field(
        default=None,
        description="heartbeats (PUT …/heartbeat) must arrive within it, else the instance "
        "is unhealthy until the next one: for instances without a sidecar",
    )
    sidecar: bool = Field(
        default=False,
        description="true when an Interlock sidecar fronts the instance (address:port is its "
        "inbound listener), so callers send it mutual TLS; false (the default) for a plain "
        "app, a database, a gateway: callers send it plain text",
    )

    def to_model(self, service: str, instance_id: str) -> Instance:
        return Instance(
            service=service,
            instance_id=instance_id,
            address=self.address,
            port=self.port,
            labels=self.labels,
            locality=self.locality,
            healthy=self.healthy,
            ttl=None if self.ttl is None else duration_seconds(self.ttl),
            sidecar=self.sidecar,
        )


class HealthView(_Out):
    """Whether an instance receives traffic, why, and since when (read-only)."""

    status: Literal["healthy", "unhealthy"]
    reason: str = Field(description="what fails (unhealthy), or what made it healthy")
    since: str = Field(description="when the status began (ISO 8601, UTC)")


def health_view(instance: Instance) -> HealthView:
    return HealthView(
        status="healthy" if instance.routable else "unhealthy",
        reason=instance.health.reason,
        since=dt.datetime.fromtimestamp(instance.health.since, tz=dt.UTC).isoformat(
            timespec="milliseconds"
        ),
    )


def instance_fields(instance: Instance) -> dict[str, Any]:
    """An instance's fields as :class:`InstanceView` and its subclasses show them."""
    return {
        "service": instance.service,
        "instance_id": instance.instance_id,
        "address": instance.address,
        "port": instance.port,
        "labels": dict(instance.labels),
        "locality": instance.locality,
        "healthy": instance.routable,
        "ttl": None if instance.ttl is None else format_seconds(instance.ttl),
        "health": health_view(instance),
        "sidecar": instance.sidecar,
    }


class InstanceView(_Out):
    """An instance as the API shows it (one item of a list)."""

    service: str
    instance_id: str
    address: str
    port: int
    labels: dict[str, str]
    locality: str
    healthy: bool = Field(
        description="whether it receives traffic: registered healthy and no check fails"
    )
    ttl: str | None
    health: HealthView
    sidecar: bool

    @classmethod
    def of(cls, instance: Instance) -> InstanceView:
        return cls(**instance_fields(instance))


class InstanceResponse(InstanceView):
    """One instance and the revision it was read or written at."""

    revision: int

    @classmethod
    def at(cls, instance: Instance, revision: int) -> InstanceResponse:
        return cls(revision=revision, **instance_fields(instance))


class InstanceWritten(InstanceResponse):
    created: bool = Field(description="true when the instance did not exist before")
    changed: bool = Field(description="false when the body was identical (no new revision)")


class InstanceList(_Out):
    revision: int
    items: list[InstanceView]


class AppHealthReport(_Body):
    """The body of ``PUT /v1/services/{name}/instances/{instance_id}/health``: the verdict of
    the instance's app probe (what ``interlock sidecar --health-path`` reports)."""

    status: Literal["healthy", "unhealthy"]
    reason: Annotated[str, _rule(_reason_error)] = Field(
        default="",
        max_length=MAX_REASON,
        description="why (shown in the instance's health): one line, no control characters",
        json_schema_extra={"pattern": "^[^\\x00-\\x1f\\x7f]*$"},
    )


# --- the rest -----------------------------------------------------------------------------


class RevisionResponse(_Out):
    """The mesh revision: after a write (deletes), or now (``GET /v1/revision``)."""

    revision: int


class Health(_Out):
    status: Literal["ok"] = "ok"
    revision: int
