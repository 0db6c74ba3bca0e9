"""``GET /healthz``, ``GET /readyz`` and ``GET /v1/revision``.

Both health endpoints answer 200 ``{"status": "ok", "revision": N}`` or 503 problem+json
(``Retry-After``) whose ``errors`` name each failing check (``field``: ``store``,
``reconciler``, ``change_feed``…) and why:

- ``/healthz``: every part of the server is running (the reconciler's loop, the change feed,
  the other supervised loops) and the store answers a read.
- ``/readyz``: all of that, and the proxies are being kept current: the reconciler's last
  attempt succeeded (it is not retrying after a failure).
"""

from __future__ import annotations

from fastapi import Response
from starlette.concurrency import run_in_threadpool

from interlock.api.context import ContextDep
from interlock.api.problems import RESPONSES
from interlock.api.routing import StoreDep, api_router, at_revision
from interlock.api.schemas import Health, RevisionResponse
from interlock.model.errors import FieldError, InterlockError, Unavailable

router = api_router(responses={503: RESPONSES[503]})


async def _health(context: ContextDep, response: Response, *, ready: bool) -> Health:
    failing = [
        FieldError(check.name, reason)
        for check in context.health_checks
        if (ready or not check.readiness_only) and (reason := check.problem()) is not None
    ]
    revision = 0
    try:
        revision = await run_in_threadpool(context.store.revision)
    except InterlockError as exc:
        failing.insert(0, FieldError("store", exc.message))
    if failing:
        what = "ready" if ready else "healthy"
        detail = f"not {what}: " + "; ".join(f"{e.field}: {e.message}" for e in failing)
        raise Unavailable(detail, errors=tuple(failing))
    return Health(revision=at_revision(response, revision))


@router.get("/healthz", tags=["meta"])
async def healthz(context: ContextDep, response: Response) -> Health:
    """200 while every part of the server runs and the store answers; else 503 naming each
    failing check."""
    return await _health(context, response, ready=False)


@router.get("/readyz", tags=["meta"])
async def readyz(context: ContextDep, response: Response) -> Health:
    """Like ``/healthz``, and 503 too while the reconciler is retrying after a failure (the
    proxies may be served an older revision than the store holds)."""
    return await _health(context, response, ready=True)


@router.get("/v1/revision", tags=["meta"])
def get_revision(store: StoreDep, response: Response) -> RevisionResponse:
    """The current mesh revision."""
    return RevisionResponse(revision=at_revision(response, store.revision()))
