"""``/v1/services/{name}/instances``: register, read and remove a service's instances."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Response, status

from interlock.api.auth import RegistrationTokenDep, confined_to
from interlock.api.routing import StoreDep, api_router, at_revision, errors_at
from interlock.api.schemas import (
    AppHealthReport,
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
    with errors_at(**AT_PATH), store.read_view() as snap:
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
    with errors_at(**AT_PATH), store.read_view() as snap:
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


@router.put("/{instance_id}/heartbeat")
async def heartbeat(
    name: NamePath,
    instance_id: IdPath,
    store: StoreDep,
    response: Response,
    registration: RegistrationTokenDep,
) -> InstanceWritten:
    """A heartbeat of an instance registered with a ``ttl`` (like a Consul TTL check): the
    next is due within the ttl, and an instance that missed one is healthy again (unless
    another check fails). 409 (field ``ttl``) for an instance registered without one. A
    heartbeat that changes no health makes no revision. Registration tokens of the service
    may send it (in their namespace)."""
    action = f"send heartbeats for service {name}"
    with errors_at(**AT_PATH), confined_to(registration, action) as namespace:
        result = await store.health.heartbeat_async(name, instance_id, in_namespace=namespace)
    at_revision(response, result.revision)
    return written(result)


@router.put("/{instance_id}/health")
async def report_app_health(
    name: NamePath,
    instance_id: IdPath,
    report: AppHealthReport,
    store: StoreDep,
    response: Response,
    registration: RegistrationTokenDep,
) -> InstanceWritten:
    """The verdict of the instance's app probe, as ``interlock sidecar --health-path`` or
    ``--health-tcp`` reports it: ``unhealthy`` takes the instance out of every proxy's
    endpoints (its ``health.reason`` says why), ``healthy`` brings it back unless another
    check fails. Only a change is a revision. Registration tokens of the service may send it
    (in their namespace)."""
    failing = None
    if report.status == "unhealthy":
        failing = report.reason or "its app probe fails"
    action = f"report the health of instances of service {name}"
    with errors_at(**AT_PATH), confined_to(registration, action) as namespace:
        result = await store.health.report_app_async(
            name, instance_id, failing, in_namespace=namespace
        )
    at_revision(response, result.revision)
    return written(result)
