"""``GET /v1/revisions/{rev}``: what a revision changed, and which connected proxies have ACKed
it, are still pending, or rejected it. ``?wait=SECONDS`` holds the answer until the rollout is
complete (every proxy ACKed or NACKed) or the time is up — the basis of ``--wait``."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

from fastapi import Path, Query, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from interlock.api.context import ContextDep
from interlock.api.routers.proxies import current_views
from interlock.api.routing import api_router, at_revision
from interlock.api.status_views import RevisionRollout, rollout
from interlock.model.errors import FieldError, NotFound

router = api_router(tags=["revisions"])

#: Seconds between recounts of a rollout someone waits for.
RECOUNT_INTERVAL = 0.02
MAX_WAIT = 300.0
#: Revisions are 64-bit signed integers in the store (PostgreSQL ``bigint``): a larger number
#: is no revision, and the database would refuse to compare with it.
MAX_REVISION = 2**63 - 1


class ChangeView(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: str
    name: str
    op: str


class RevisionReport(BaseModel):
    model_config = ConfigDict(frozen=True)
    revision: int
    committed_at: str
    changes: list[ChangeView]
    proxies: RevisionRollout


@router.get("/v1/revisions/{rev}")
async def get_revision_report(
    context: ContextDep,
    response: Response,
    rev: Annotated[int, Path(ge=1, le=MAX_REVISION, description="A committed mesh revision")],
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for the rollout to finish")
    ] = 0.0,
) -> RevisionReport:
    try:
        info = await run_in_threadpool(context.store.get_revision, rev)
    except NotFound as exc:
        raise NotFound(exc.message, errors=(FieldError("path.rev", "not committed"),)) from None
    status = context.status
    progress = rollout(await current_views(context), rev)
    if wait > 0 and status is not None and not progress.complete:
        changed = asyncio.Event()
        remove = status.add_listener(lambda _event: changed.set())
        try:
            async with asyncio.timeout(wait):
                while not progress.complete:
                    await changed.wait()
                    # ACKs from thousands of streams arrive together: let them gather, so the
                    # rollout is recounted a few times per second, not once per ACK.
                    await asyncio.sleep(RECOUNT_INTERVAL)
                    changed.clear()
                    progress = rollout(await current_views(context), rev)
        except TimeoutError:
            pass
        finally:
            remove()
    at_revision(response, rev)
    return RevisionReport(
        revision=info.rev,
        committed_at=dt.datetime.fromtimestamp(info.committed_at, tz=dt.UTC).isoformat(
            timespec="milliseconds"
        ),
        changes=[ChangeView(kind=c.kind, name=c.name, op=c.op) for c in info.changes],
        proxies=progress,
    )
