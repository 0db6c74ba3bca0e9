"""Checks on model values entering the store from code (the API has already checked its input
with the same rules; this keeps programmatic callers from storing what Envoy cannot use)."""

from __future__ import annotations

from collections.abc import Callable

from interlock.model import names
from interlock.model.errors import FieldError, InvalidInput
from interlock.model.export import export_to_errors
from interlock.model.policy.documents import read_resource
from interlock.model.resource import Resource
from interlock.model.service import Instance, Service, ServiceProtocol, health_check_errors

_Rule = Callable[[str], str | None]


def check_service(service: Service) -> None:
    """Raise :class:`InvalidInput` naming every bad field of ``service``."""
    errors: list[FieldError] = []
    _text(errors, "name", service.name, names.service_name_error)
    _text(errors, "namespace", service.namespace, names.namespace_error)
    if not isinstance(service.protocol, ServiceProtocol):
        errors.append(
            FieldError("protocol", f"protocol {service.protocol!r} is not a service protocol")
        )
    _port(errors, "port", service.port)
    if service.health_check is not None:
        errors += [
            FieldError(f"health_check.{field}", message)
            for field, message in health_check_errors(service.health_check, service.protocol)
        ]
    errors += [
        FieldError("export_to" if index is None else f"export_to[{index}]", message)
        for index, message in export_to_errors(service.export_to)
    ]
    _raise(errors, f"service {service.name!r}")


def check_instance(instance: Instance) -> None:
    """Raise :class:`InvalidInput` naming every bad field of ``instance``."""
    errors: list[FieldError] = []
    _text(errors, "service", instance.service, names.service_name_error)
    _text(errors, "instance_id", instance.instance_id, names.instance_id_error)
    _text(errors, "address", instance.address, names.address_error)
    _port(errors, "port", instance.port)
    if len(instance.labels) > names.MAX_LABELS:
        errors.append(FieldError("labels", f"at most {names.MAX_LABELS} labels are allowed"))
    for key, value in instance.labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            errors.append(FieldError(f"labels.{key}", "label keys and values must be strings"))
            continue
        message = names.label_key_error(key) or names.label_value_error(value)
        if message:
            errors.append(FieldError(f"labels.{key}", message))
    if instance.locality:
        _text(errors, "locality", instance.locality, names.locality_error)
    if not isinstance(instance.healthy, bool):
        errors.append(FieldError("healthy", "healthy must be true or false"))
    if not isinstance(instance.sidecar, bool):
        errors.append(FieldError("sidecar", "sidecar must be true or false"))
    _raise(errors, f"instance {instance.service}/{instance.instance_id}")


def check_resource(resource: Resource) -> None:
    """Raise :class:`InvalidInput` naming every bad field of ``resource`` (its kind, API
    version, name, namespace, labels and spec, by the same rules the API applies)."""
    parsed, errors = read_resource(resource.to_document())
    if parsed is not None and parsed.kind != resource.kind:
        errors = [FieldError("kind", f"{resource.kind!r} is not the kind's exact name")]
    _raise(errors, resource.ref)


def _text(errors: list[FieldError], field: str, value: object, rule: _Rule) -> None:
    if not isinstance(value, str):
        errors.append(FieldError(field, f"{field} must be a string"))
    elif message := rule(value):
        errors.append(FieldError(field, message))


def _port(errors: list[FieldError], field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(field, f"{field} must be an integer"))
    elif message := names.port_error(value):
        errors.append(FieldError(field, message))


def _raise(errors: list[FieldError], what: str) -> None:
    if errors:
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        raise InvalidInput(f"invalid {what}: {detail}", errors=tuple(errors))
