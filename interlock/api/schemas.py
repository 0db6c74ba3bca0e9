"""The wire schemas of API v1 (pydantic), validated once, here, at the edge.

Request bodies are strict (``"8080"`` is not a port, ``1`` is not ``true``) and closed (an
unknown field is an error); names, labels, localities and addresses follow
:mod:`interlock.model.names`. Responses wrap resources with the mesh ``revision`` they were
read or written at: one resource is its fields plus ``revision``; a list is
``{"revision": …, "items": […]}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from interlock.model import names
from interlock.model.service import Instance, Protocol, Service


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


def _locality_error(value: str) -> str | None:
    return names.locality_error(value) if value else None


ServiceName = Annotated[str, _rule(names.service_name_error)]
Namespace = Annotated[str, _rule(names.namespace_error)]
InstanceId = Annotated[str, _rule(names.instance_id_error)]
Address = Annotated[str, _rule(names.address_error)]
LabelKey = Annotated[str, _rule(names.label_key_error)]
LabelValue = Annotated[str, _rule(names.label_value_error)]
Locality = Annotated[str, _rule(_locality_error)]
Port = Annotated[
    int, AfterValidator(_port_rule), Field(json_schema_extra={"minimum": 1, "maximum": 65535})
]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- services -----------------------------------------------------------------------------


class ServiceSpec(_Body):
    """The body of ``PUT /v1/services/{name}``."""

    namespace: Namespace = "default"
    # Lax only here: a JSON string must become the enum; other types are still refused.
    protocol: Protocol = Field(default=Protocol.HTTP, strict=False)
    port: Port

    def to_model(self, name: str) -> Service:
        return Service(name=name, namespace=self.namespace, protocol=self.protocol, port=self.port)


class ServiceView(_Out):
    """A service as the API shows it (one item of a list)."""

    name: str
    namespace: str
    protocol: Protocol
    port: int

    @classmethod
    def of(cls, service: Service) -> ServiceView:
        return cls(
            name=service.name,
            namespace=service.namespace,
            protocol=service.protocol,
            port=service.port,
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
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=names.MAX_LABELS)
    locality: Locality = ""
    healthy: bool = True
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
            sidecar=self.sidecar,
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
        "healthy": instance.healthy,
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
    healthy: bool
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


# --- the rest -----------------------------------------------------------------------------


class RevisionResponse(_Out):
    """The mesh revision: after a write (deletes), or now (``GET /v1/revision``)."""

    revision: int


class Health(_Out):
    status: Literal["ok"] = "ok"
    revision: int
