"""``/v1/services``: register, read and remove services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Response, status

from interlock.api.auth import RegistrationTokenDep, confined_to, refused
from interlock.api.routing import (
    RootNamespaceDep,
    StoreDep,
    api_router,
    at_revision,
    errors_at,
)
from interlock.api.schemas import (
    RevisionResponse,
    ServiceList,
    ServiceName,
    ServiceResponse,
    ServiceSpec,
    ServiceView,
    ServiceWritten,
)
from interlock.model.errors import FieldError, InvalidInput
from interlock.trust import CONTROL_PLANE_SERVICE

router = api_router(prefix="/v1/services", tags=["services"])

NamePath = Annotated[ServiceName, Path(description="the service name (a DNS label)")]

# Fields the store names in its errors, and where this router's requests carry them.
AT_PATH = {"service": "path.name", "name": "path.name", "cascade": "query.cascade"}


@router.get("")
def list_services(store: StoreDep, response: Response) -> ServiceList:
    """Every service, sorted by name."""
    with errors_at(**AT_PATH), store.read_view() as snap:
        services = snap.list_services()
        revision = snap.revision
    return ServiceList(
        revision=at_revision(response, revision), items=[ServiceView.of(s) for s in services]
    )


@router.put(
    "/{name}",
    status_code=status.HTTP_200_OK,
    responses={201: {"description": "Created", "model": ServiceWritten}},
)
async def put_service(
    name: NamePath,
    spec: ServiceSpec,
    store: StoreDep,
    response: Response,
    registration: RegistrationTokenDep,
    root_namespace: RootNamespaceDep,
) -> ServiceWritten:
    """Create or replace a service. Idempotent: the same body again changes nothing and
    returns the same revision (200); the first creation answers 201.

    With a registration token, 403 (nothing changed) unless the body's namespace (``default``
    when omitted) is the token's and the service is not registered in another one. The name
    ``interlock`` in the root namespace is the control plane's identity: 422."""
    if name == CONTROL_PLANE_SERVICE and spec.namespace == root_namespace:
        message = (
            f"service {name!r} in the root namespace {root_namespace!r} is reserved: it is the "
            "control plane's own identity (docs/security.md); choose another name or namespace"
        )
        raise InvalidInput(message, errors=(FieldError("path.name", message),))
    if registration is not None and spec.namespace != registration.namespace:
        reason = f"it is bound to namespace {registration.namespace}"
        action = f"register service {name} in namespace {spec.namespace}"
        raise refused(registration, action, reason, field="namespace")
    with errors_at(**AT_PATH), confined_to(registration, f"change service {name}") as namespace:
        result = await store.put_service_async(spec.to_model(name), in_namespace=namespace)
    if result.created:
        response.status_code = status.HTTP_201_CREATED
    return ServiceWritten(
        revision=at_revision(response, result.revision),
        created=result.created,
        changed=result.changed,
        **ServiceView.of(result.value).model_dump(),
    )


@router.get("/{name}")
def get_service(name: NamePath, store: StoreDep, response: Response) -> ServiceResponse:
    with errors_at(**AT_PATH), store.read_view() as snap:
        service = snap.get_service(name)
        revision = snap.revision
    return ServiceResponse.at(service, at_revision(response, revision))


@router.delete("/{name}")
async def delete_service(
    name: NamePath,
    store: StoreDep,
    response: Response,
    cascade: Annotated[
        bool, Query(description="also delete the service's instances (else 409 if any)")
    ] = False,
) -> RevisionResponse:
    """Delete a service; 409 while it has instances unless ``cascade=true`` (their proxy
    tokens are then revoked, in the same transaction)."""
    with errors_at(**AT_PATH):
        revision = await store.delete_service_async(name, cascade=cascade)
    return RevisionResponse(revision=at_revision(response, revision))
