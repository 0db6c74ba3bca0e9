"""``GET /healthz`` and ``GET /v1/revision``."""

from __future__ import annotations

from fastapi import Response

from interlock.api.problems import RESPONSES
from interlock.api.routing import StoreDep, api_router, at_revision
from interlock.api.schemas import Health, RevisionResponse

router = api_router(responses={503: RESPONSES[503]})


@router.get("/healthz", tags=["meta"])
def healthz(store: StoreDep, response: Response) -> Health:
    """200 while the API can reach its database (503 problem otherwise)."""
    return Health(revision=at_revision(response, store.revision()))


@router.get("/v1/revision", tags=["meta"])
def get_revision(store: StoreDep, response: Response) -> RevisionResponse:
    """The current mesh revision."""
    return RevisionResponse(revision=at_revision(response, store.revision()))
