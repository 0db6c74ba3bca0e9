"""What every router of the API shares: JSON-only routes, documented problems, the store
dependency (from the app's :class:`~interlock.api.context.ApiContext`) and the revision
header. New routers (proxy status, revisions, Istio resources, tokens) start from
:func:`api_router` and are listed in :mod:`interlock.api.routers`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from interlock.api.body import JsonRoute
from interlock.api.context import ContextDep
from interlock.api.problems import RESPONSES
from interlock.model.errors import FieldError, InterlockError
from interlock.store import Store

REVISION_HEADER = "Interlock-Revision"


def api_router(
    *, responses: Mapping[int | str, dict[str, Any]] = RESPONSES, **kwargs: Any
) -> APIRouter:
    """An :class:`APIRouter` with JSON-only routes and ``responses`` (by default every
    problem a store-backed route may answer with) documented."""
    return APIRouter(route_class=JsonRoute, responses=dict(responses), **kwargs)


async def get_store(context: ContextDep) -> Store:
    """The store the app was created with (async only so that FastAPI resolves it on the
    event loop instead of in a worker thread)."""
    return context.store


StoreDep = Annotated[Store, Depends(get_store)]


async def get_root_namespace(context: ContextDep) -> str:
    """The mesh's root namespace (where mesh-wide policies live)."""
    return context.root_namespace


RootNamespaceDep = Annotated[str, Depends(get_root_namespace)]


@contextlib.contextmanager
def errors_at(**paths: str) -> Iterator[None]:
    """Rename the fields of an :class:`InterlockError` raised inside to where the request
    carried them: ``errors_at(service="path.name")`` turns the store's ``service`` field
    into ``path.name``."""
    try:
        yield
    except InterlockError as e:
        e.errors = tuple(
            FieldError(paths.get(err.field, err.field), err.message) for err in e.errors
        )
        raise


def at_revision(response: Response, revision: int) -> int:
    """Put ``revision`` in the ``Interlock-Revision`` header of ``response``; returns it."""
    response.headers[REVISION_HEADER] = str(revision)
    return revision
