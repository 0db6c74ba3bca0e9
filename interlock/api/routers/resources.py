"""``/v1/resources``: policy resources (Istio's kinds and Interlock's own) in YAML or JSON.

* ``POST /v1/resources`` applies one object, a JSON list or a multi-document YAML stream, all
  or nothing, in one revision; ``?dryRun=true`` says what would change without writing.
* ``PUT /v1/resources/{kind}/{namespace}/{name}`` creates or replaces one object.
* ``GET /v1/resources[?kind=&namespace=]``, ``GET``/``DELETE .../{kind}/{namespace}/{name}``.

``{kind}`` may be any name kubectl or istioctl accept (``VirtualService``, ``virtualservices``,
``vs``). Every resource shown carries the ``problems`` other resources cause it (a route to a
subset no DestinationRule defines, a host no service answers to), computed from the mesh as it
is after the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Response, status

from interlock.api.documents import REQUEST_BODY, Documents, read_documents
from interlock.api.resource_views import (
    ApplyResponse,
    ResourceList,
    ResourceResponse,
    ResourceView,
    ResourceWritten,
    applied_views,
)
from interlock.api.routing import (
    RootNamespaceDep,
    StoreDep,
    api_router,
    at_revision,
    errors_at,
)
from interlock.api.schemas import RevisionResponse
from interlock.model import names
from interlock.model.errors import FieldError, InvalidInput, NotFound
from interlock.model.policy import KindInfo, known_kinds_text, lookup_kind, read_resources
from interlock.model.policy.documents import DNS_SUBDOMAIN, name_error, similar_kind
from interlock.model.policy.hosts import dns_label_error
from interlock.model.policy.problems import problems_by_resource
from interlock.model.policy.registry import known_kind_names
from interlock.model.resource import Resource, ResourceKey
from interlock.model.state import MeshState
from interlock.store import ApplyResult, Store

router = api_router(prefix="/v1/resources", tags=["resources"])

DocumentsDep = Annotated[Documents, Depends(read_documents)]
#: What the OpenAPI document says of names (the routes check them with their own messages).
_KIND = {"pattern": "^[A-Za-z][A-Za-z.]*$", "maxLength": 64}
_NAMESPACE = {"pattern": f"^{names.DNS_LABEL}$", "minLength": 1, "maxLength": 63}
_NAME = {"pattern": f"^{DNS_SUBDOMAIN}$", "minLength": 1, "maxLength": 253}
KindPath = Annotated[
    str,
    Path(
        description="the kind: VirtualService, virtualservices, vs, dr, gw, se, ... "
        "(case-insensitive; 404 for another word)",
        json_schema_extra=_KIND,
    ),
]
NamespacePath = Annotated[
    str, Path(description="the namespace (a DNS label)", json_schema_extra=_NAMESPACE)
]
NamePath = Annotated[
    str, Path(description="the resource's name (a DNS subdomain)", json_schema_extra=_NAME)
]
DryRun = Annotated[
    bool, Query(alias="dryRun", description="validate and say what would change; write nothing")
]

AT_PATH = {"name": "path.name"}


def _kind(word: str, field: str) -> KindInfo[Any]:
    info = lookup_kind(word)
    if info is not None:
        return info
    close = similar_kind(word)
    hint = f"; did you mean {close}?" if close else f"; known kinds: {known_kinds_text()}"
    message = f"{word!r} is not a resource kind{hint}"
    if field == "path.kind":
        raise NotFound(message, errors=(FieldError(field, message),))
    raise InvalidInput(message, errors=(FieldError(field, message),))


def _key(kind: str, namespace: str, name: str) -> ResourceKey:
    info = _kind(kind, "path.kind")
    errors = []
    if message := dns_label_error(namespace, "namespace"):
        errors.append(FieldError("path.namespace", message))
    if message := name_error(name):
        errors.append(FieldError("path.name", message))
    if errors:
        raise InvalidInput("; ".join(e.message for e in errors), errors=tuple(errors))
    return ResourceKey(info.kind, namespace, name)


def _state_after(store: Store, result: ApplyResult) -> MeshState:
    """The mesh the written resources now live in (for a dry run: would live in)."""
    state = store.load_state()
    if result.dry_run:
        return state.with_resources(put=[i.resource for i in result.items])
    return state


@router.post("", openapi_extra=REQUEST_BODY, response_model_exclude_none=True)
def apply_resources(
    documents: DocumentsDep,
    store: StoreDep,
    root: RootNamespaceDep,
    response: Response,
    dry_run: DryRun = False,
) -> ApplyResponse:
    """Create or replace every object of the body in one transaction and one revision. One
    invalid object rejects them all (422; each error's field starts with the document's
    index, ``[2].spec.http[0].route``). Objects identical to what is stored are
    ``unchanged``; if all are, no revision is created."""
    resources = read_resources(documents.items, batch=documents.batch)
    result = store.apply_resources(resources, dry_run=dry_run)
    problems = problems_by_resource(_state_after(store, result), root)
    return ApplyResponse(
        revision=at_revision(response, result.revision),
        dryRun=dry_run,
        items=applied_views(result.items, problems),
    )


@router.get("", response_model_exclude_none=True)
def list_resources(
    store: StoreDep,
    root: RootNamespaceDep,
    response: Response,
    kind: Annotated[
        str | None,
        Query(
            description="only this kind (any of its names, case-insensitive)",
            json_schema_extra={"enum": known_kind_names()},
        ),
    ] = None,
    namespace: Annotated[
        str | None, Query(description="only this namespace", json_schema_extra=_NAMESPACE)
    ] = None,
) -> ResourceList:
    """The stored resources, sorted by kind, namespace and name."""
    wanted = _kind(kind, "query.kind").kind if kind else None
    if namespace is not None and (message := dns_label_error(namespace, "namespace")):
        raise InvalidInput(message, errors=(FieldError("query.namespace", message),))
    with store.read_view() as snap:
        state = snap.state()
    problems = problems_by_resource(state, root)
    items = [
        ResourceView.of(r, problems.get(r.ref, ()))
        for r in state.policies.resources()
        if (wanted is None or r.kind == wanted) and (namespace is None or r.namespace == namespace)
    ]
    return ResourceList(revision=at_revision(response, state.revision), items=items)


@router.put(
    "/{kind}/{namespace}/{name}",
    status_code=status.HTTP_200_OK,
    responses={201: {"description": "Created", "model": ResourceWritten}},
    openapi_extra=REQUEST_BODY,
    response_model_exclude_none=True,
)
def put_resource(
    kind: KindPath,
    namespace: NamespacePath,
    name: NamePath,
    documents: DocumentsDep,
    store: StoreDep,
    root: RootNamespaceDep,
    response: Response,
    dry_run: DryRun = False,
) -> ResourceWritten:
    """Create (201) or replace (200) one resource. The body's kind, metadata.namespace and
    metadata.name must match the path (or be left out: the path supplies them)."""
    key = _key(kind, namespace, name)
    if documents.batch or len(documents.items) != 1:
        message = "PUT takes exactly one object; POST /v1/resources applies several"
        raise InvalidInput(message, errors=(FieldError("body", message),))
    document = _with_path(documents.items[0], key)
    resource = read_resources([document], batch=False)[0]
    result = store.apply_resources([resource], dry_run=dry_run)
    problems = problems_by_resource(_state_after(store, result), root)
    applied = result.items[0]
    if applied.outcome == "created" and not dry_run:
        response.status_code = status.HTTP_201_CREATED
    view = ResourceView.of(applied.resource, problems.get(applied.resource.ref, ()))
    return ResourceWritten(
        revision=at_revision(response, result.revision),
        result=applied.outcome,
        dryRun=dry_run,
        **view.model_dump(),
    )


def _with_path(document: object, key: ResourceKey) -> object:
    """``document`` with kind, apiVersion, metadata.namespace and metadata.name filled in from
    the path when absent; 422 when present and different."""
    if not isinstance(document, dict):
        return document
    info = _kind(key.kind, "path.kind")
    errors = []
    kind = document.get("kind")
    if kind is not None and kind != key.kind:
        errors.append(FieldError("kind", f"{kind!r} does not match the path's {key.kind!r}"))
    metadata = document.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    for field, wanted in (("namespace", key.namespace), ("name", key.name)):
        given = metadata.get(field)
        if given is not None and given != wanted:
            errors.append(
                FieldError(f"metadata.{field}", f"{given!r} does not match the path's {wanted!r}")
            )
        metadata[field] = wanted
    if errors:
        raise InvalidInput(
            "; ".join(f"{e.field}: {e.message}" for e in errors), errors=tuple(errors)
        )
    return {
        **document,
        "kind": key.kind,
        "apiVersion": document.get("apiVersion") or info.preferred_api_version,
        "metadata": metadata,
    }


@router.get("/{kind}/{namespace}/{name}", response_model_exclude_none=True)
def get_resource(
    kind: KindPath,
    namespace: NamespacePath,
    name: NamePath,
    store: StoreDep,
    root: RootNamespaceDep,
    response: Response,
) -> ResourceResponse:
    key = _key(kind, namespace, name)
    with errors_at(**AT_PATH), store.read_view() as snap:
        resource: Resource = snap.get_resource(key)
        state = snap.state()
    problems = problems_by_resource(state, root).get(resource.ref, ())
    view = ResourceView.of(resource, problems)
    return ResourceResponse(revision=at_revision(response, state.revision), **view.model_dump())


@router.delete("/{kind}/{namespace}/{name}")
def delete_resource(
    kind: KindPath, namespace: NamespacePath, name: NamePath, store: StoreDep, response: Response
) -> RevisionResponse:
    """Delete one resource (404 if it does not exist)."""
    key = _key(kind, namespace, name)
    with errors_at(**AT_PATH):
        revision = store.delete_resource(key)
    return RevisionResponse(revision=at_revision(response, revision))
