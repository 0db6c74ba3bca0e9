"""``GET /v1/proxies``, ``GET /v1/proxies/{node_id}`` and ``GET /v1/proxies/{node_id}/config``:
which proxies are connected and, per resource type, what was sent, ACKed or rejected."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Query
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from interlock.api.context import ApiContext, ContextDep
from interlock.api.routing import api_router
from interlock.api.status_views import (
    TYPE_NAMES,
    TYPE_ORDER,
    ProxyProblem,
    ProxyView,
    proxy_views,
    refused_views,
)
from interlock.model import Problem, Severity
from interlock.model.errors import FieldError, InvalidInput, NotFound
from interlock.xds.transport.status import ProxyStatus

router = api_router(tags=["proxies"])

REDACTED = "[redacted]"
_SECRET_KEYS = frozenset({"private_key", "password", "inline_bytes", "inline_string"})


class ProxyList(BaseModel):
    model_config = ConfigDict(frozen=True)
    items: list[ProxyView]


class ProxyConfig(BaseModel):
    model_config = ConfigDict(frozen=True)
    node_id: str
    resources: dict[str, list[dict[str, Any]]]


def as_json(message: Message) -> dict[str, Any]:
    """A served resource as JSON (proto field names), secrets still in: see :func:`redact`."""
    data: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return data


def redact(value: Any, *, inside_secret: bool = False) -> Any:
    """``value`` with private keys and passwords replaced, however deep (any secret's
    inline bytes or string under a ``private_key`` too)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in {"private_key", "password"} or (inside_secret and key in _SECRET_KEYS):
                out[key] = REDACTED
            else:
                out[key] = redact(item, inside_secret=inside_secret or key == "private_key")
        return out
    if isinstance(value, list):
        return [redact(v, inside_secret=inside_secret) for v in value]
    return value


async def commit_times(
    context: ApiContext, streams: list[ProxyStatus]
) -> Callable[[int], float | None]:
    """A lookup of revision → commit time covering every revision ``streams`` mention."""
    store = context.store
    known = context.commit_times
    wanted = {
        rev
        for s in streams
        for t in s.types.values()
        for rev in (t.revision_acked, t.revision_sent)
        if rev is not None and rev > 0 and rev not in known
    }

    def load() -> None:
        for rev in wanted:
            try:
                known[rev] = store.get_revision(rev).committed_at
            except NotFound:
                continue
        while len(known) > 4096:
            known.pop(next(iter(known)))

    if wanted:
        await run_in_threadpool(load)
    return known.get


async def current_views(context: ApiContext) -> list[ProxyView]:
    """The connected proxies, each with the problems its view's last translation met."""
    status, reader = context.status, context.problem_reader
    streams = status.proxies() if status is not None else []
    views = proxy_views(streams, await commit_times(context, streams))
    if reader is None:
        return views
    keys = {s.node_id: s.snapshot_key for s in streams}
    return [
        view.model_copy(update={"problems": _problems(reader(keys[view.node_id]))})
        if view.node_id in keys
        else view
        for view in views
    ]


def _problems(found: Sequence[Problem]) -> list[ProxyProblem]:
    return [
        ProxyProblem(
            resource=p.resource,
            field=p.field,
            message=p.message,
            severity="error" if p.severity is Severity.ERROR else "warning",
        )
        for p in found
    ]


async def connected_and_refused(context: ApiContext) -> list[ProxyView]:
    """The connected proxies, then those refused lately (each with its problem)."""
    connected = await current_views(context)
    names = {v.node_id for v in connected}
    refused = context.status.refused() if context.status is not None else []
    return connected + [v for v in refused_views(refused) if v.node_id not in names]


@router.get("/v1/proxies")
async def list_proxies(context: ContextDep) -> ProxyList:
    """Every connected proxy, with per-type sync state (SYNCED, STALE, NACKED, NOT SENT), and
    every proxy refused lately (an Envoy release outside the supported range), with the
    reason in ``problems``."""
    return ProxyList(items=await connected_and_refused(context))


@router.get("/v1/proxies/{node_id}")
async def get_proxy(context: ContextDep, node_id: str) -> ProxyView:
    """One proxy's sync state and the problems its configuration met (e.g. the parts of a
    policy a proxyless gRPC client does not implement), or why it was refused."""
    for view in await connected_and_refused(context):
        if view.node_id == node_id:
            return view
    raise NotFound(
        f"no proxy with node id {node_id!r} is connected",
        errors=(FieldError("path.node_id", "not connected"),),
    )


@router.get("/v1/proxies/{node_id}/config")
async def get_proxy_config(
    context: ContextDep,
    node_id: str,
    type: Annotated[
        list[str] | None,
        Query(
            description="clusters, endpoints, listeners, routes or secrets",
            json_schema_extra={"items": {"type": "string", "enum": list(TYPE_ORDER)}},
        ),
    ] = None,
) -> ProxyConfig:
    """What the control plane currently serves this proxy, by type; secrets are redacted."""
    wanted = type or list(TYPE_ORDER)
    unknown = [t for t in wanted if t not in TYPE_ORDER]
    if unknown:
        raise InvalidInput(
            f"unknown type {unknown[0]!r}; use one of {', '.join(TYPE_ORDER)}",
            errors=(FieldError("query.type", f"must be one of {', '.join(TYPE_ORDER)}"),),
        )
    status, reader = context.status, context.config_reader
    streams = [s for s in (status.proxies() if status else []) if s.node_id == node_id]
    if not streams or reader is None:
        raise NotFound(
            f"no proxy with node id {node_id!r} is connected",
            errors=(FieldError("path.node_id", "not connected"),),
        )
    config = reader(streams[0].snapshot_key) or {}
    resources = {
        name: [redact(as_json(m)) for m in config.get(url, ())]
        for url, name in TYPE_NAMES.items()
        if name in wanted
    }
    return ProxyConfig(node_id=node_id, resources=resources)
