"""``/v1/services/{name}/instances``: register, read and remove a service's instances."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Response, status

from interlock.api.auth import RegistrationTokenDep, confined_to
from interlock.api.routing import StoreDep, api_router, at_revision, errors_at
from interlock.api.schemas import (
    InstanceId,
    InstanceList,
    InstanceResponse,
    InstanceSpec,
    InstanceView,
    InstanceWritten,
    RevisionResponse,
    ServiceName,
    instance_fields,
)
from interlock.model.identity import Token
from interlock.model.service import Instance
from interlock.store import Store, WriteResult

router = api_router(prefix="/v1/services/{name}/instances", tags=["instances"])

NamePath = Annotated[ServiceName, Path(description="the service name (a DNS label)")]
IdPath = Annotated[InstanceId, Path(description="the instance id, unique within its service")]

# Fields the store names in its errors, and where this router's requests carry them.
AT_PATH = {"service": "path.name", "instance_id": "path.instance_id"}


@router.get("")
def list_instances(name: NamePath, store: StoreDep, response: Response) -> InstanceList:
    """The service's instances, sorted by id; 404 if the service does not exist."""
    with errors_at(**AT_PATH), store.snapshot() as snap:
        instances = snap.list_instances(name)
        revision = snap.revision
    return InstanceList(
        revision=at_revision(response, revision), items=[InstanceView.of(i) for i in instances]
    )


@router.put(
    "/{instance_id}",
    status_code=status.HTTP_200_OK,
    responses={201: {"description": "Created", "model": InstanceWritten}},
)
async def put_instance(
    name: NamePath,
    instance_id: IdPath,
    spec: InstanceSpec,
    store: StoreDep,
    response: Response,
    registration: RegistrationTokenDep,
) -> InstanceWritten:
    """Create or replace an instance of an existing service (404 if it does not exist).
    Idempotent like ``PUT /v1/services/{name}``. Concurrent registrations are committed
    together and may share a revision. With a registration token, 403 (nothing changed)
    unless the service is in the token's namespace."""
    result = await register(store, spec.to_model(name, instance_id), registration)
    if result.created:
        response.status_code = status.HTTP_201_CREATED
    at_revision(response, result.revision)
    return written(result)


async def register(
    store: Store, instance: Instance, registration: Token | None
) -> WriteResult[Instance]:
    """The store write of a registration (also made by :mod:`interlock.api.fast_path`),
    confined to the namespace of a ``registration`` token; errors name the request's fields."""
    action = f"register instances of service {instance.service}"
    with errors_at(**AT_PATH), confined_to(registration, action) as namespace:
        return await store.put_instance_async(instance, in_namespace=namespace)


def written(result: WriteResult[Instance]) -> InstanceWritten:
    """The body answering a registration (also built by :mod:`interlock.api.fast_path`)."""
    return InstanceWritten(
        **instance_fields(result.value),
        revision=result.revision,
        created=result.created,
        changed=result.changed,
    )


@router.get("/{instance_id}")
def get_instance(
    name: NamePath, instance_id: IdPath, store: StoreDep, response: Response
) -> InstanceResponse:
    with errors_at(**AT_PATH), store.snapshot() as snap:
        instance = snap.get_instance(name, instance_id)
        revision = snap.revision
    return InstanceResponse.at(instance, at_revision(response, revision))


@router.delete("/{instance_id}")
async def delete_instance(
    name: NamePath,
    instance_id: IdPath,
    store: StoreDep,
    response: Response,
    registration: RegistrationTokenDep,
) -> RevisionResponse:
    """Deregister an instance; its proxy tokens are revoked in the same transaction (its xDS
    streams close within the server's token re-check interval). With a registration token,
    403 (nothing changed) unless the service is in the token's namespace."""
    action = f"deregister instances of service {name}"
    with errors_at(**AT_PATH), confined_to(registration, action) as namespace:
        revision = await store.delete_instance_async(name, instance_id, in_namespace=namespace)
    return RevisionResponse(revision=at_revision(response, revision))
