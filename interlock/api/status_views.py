"""Turning the xDS status registry into what `GET /v1/proxies` and `GET /v1/revisions/{rev}`
show: per proxy and type SYNCED / STALE / NACKED / NOT SENT, and per revision who has ACKed it,
who is still pending and who rejected it (with Envoy's message)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.status import ProxyStatus, RefusedProxy, TypeStatus

TYPE_NAMES: dict[str, str] = {
    rt.CLUSTER: "clusters",
    rt.ENDPOINT: "endpoints",
    rt.LISTENER: "listeners",
    rt.ROUTE: "routes",
    rt.SECRET: "secrets",
}
TYPE_URLS: dict[str, str] = {name: url for url, name in TYPE_NAMES.items()}
TYPE_ORDER = ("clusters", "endpoints", "listeners", "routes", "secrets")

SyncState = Literal["SYNCED", "STALE", "NACKED", "NOT SENT"]
CommitTime = Callable[[int], float | None]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class NackView(_Out):
    message: str
    version: str
    revision: int | None
    at: str | None


class TypeView(_Out):
    type: str
    state: SyncState
    version_sent: str | None
    revision_sent: int | None
    sent_at: str | None
    version_acked: str | None
    revision_acked: int | None
    acked_at: str | None
    #: From the commit of ``revision_acked`` to the proxy's ACK of it, when it was pushed.
    convergence_ms: float | None
    last_nack: NackView | None


class StreamView(_Out):
    stream_id: int
    api: str
    variant: str
    connected_since: str | None
    peer: str


class ProxyProblem(_Out):
    """Something a proxy is not given, and why: part of a policy its translation left out (e.g.
    what a proxyless gRPC client does not implement), or the reason it is not served at all
    (e.g. an Envoy release outside the supported range)."""

    resource: str
    field: str
    message: str
    severity: Literal["warning", "error"]


class ProxyView(_Out):
    node_id: str
    service: str
    namespace: str
    envoy_version: str
    variant: str
    connected_since: str | None
    synced_revision: int | None
    streams: list[StreamView]
    types: list[TypeView]
    #: What its configuration leaves out and why; for a refused proxy (no streams, sent
    #: nothing), why it is not served (e.g. an unsupported Envoy release).
    problems: list[ProxyProblem] = []
    #: When its last stream was refused (only for a refused proxy).
    refused_at: str | None = None


def type_state(t: TypeStatus) -> SyncState:
    """SYNCED: the last response was ACKed. STALE: a response is in flight (also a fix sent
    after a NACK). NACKED: the last response was rejected. NOT SENT: nothing sent yet."""
    if t.version_sent is None:
        return "NOT SENT"
    if t.pending:
        return "STALE"
    if t.last_nack is not None and (t.acked_at is None or t.last_nack.at >= t.acked_at):
        return "NACKED"
    if t.version_acked != t.version_sent:
        return "STALE"
    return "SYNCED"


def type_view(t: TypeStatus, commit_time: CommitTime) -> TypeView:
    convergence: float | None = None
    if t.revision_acked is not None and t.acked_at is not None:
        committed = commit_time(t.revision_acked)
        if committed is not None and t.acked_at >= committed:
            convergence = round((t.acked_at - committed) * 1000, 1)
    nack = t.last_nack
    return TypeView(
        type=TYPE_NAMES.get(t.type_url, t.type_url),
        state=type_state(t),
        version_sent=t.version_sent,
        revision_sent=t.revision_sent,
        sent_at=iso(t.sent_at),
        version_acked=t.version_acked,
        revision_acked=t.revision_acked,
        acked_at=iso(t.acked_at),
        convergence_ms=convergence,
        last_nack=None
        if nack is None
        else NackView(
            message=nack.message, version=nack.version, revision=nack.revision, at=iso(nack.at)
        ),
    )


def proxy_views(streams: Iterable[ProxyStatus], commit_time: CommitTime) -> list[ProxyView]:
    """One view per node id (a per-type fleet opens one stream per type), sorted by node id."""
    by_node: dict[str, list[ProxyStatus]] = {}
    for s in streams:
        by_node.setdefault(s.node_id, []).append(s)
    views = []
    for node_id, group in sorted(by_node.items()):
        group.sort(key=lambda s: s.stream_id)
        first = group[0]
        types: dict[str, TypeView] = {}
        for s in group:
            for t in s.types.values():
                view = type_view(t, commit_time)
                types[view.type] = view
        synced = [s.synced_revision for s in group]
        namespace = first.node_metadata.get("namespace", "default")
        views.append(
            ProxyView(
                node_id=node_id,
                service=first.node_cluster,
                namespace=namespace if isinstance(namespace, str) else "default",
                envoy_version=first.envoy_version,
                variant=first.variant,
                connected_since=iso(min(s.connected_since for s in group)),
                synced_revision=None if None in synced else min(r for r in synced if r is not None),
                streams=[
                    StreamView(
                        stream_id=s.stream_id,
                        api=s.service,
                        variant=s.variant,
                        connected_since=iso(s.connected_since),
                        peer=s.peer,
                    )
                    for s in group
                ],
                types=sorted(
                    types.values(),
                    key=lambda v: TYPE_ORDER.index(v.type) if v.type in TYPE_ORDER else 99,
                ),
            )
        )
    return views


def refused_views(refused: Iterable[RefusedProxy]) -> list[ProxyView]:
    """Proxies whose streams were refused (not connected), each with the reason as a problem."""
    views = []
    for r in refused:
        namespace = r.node_metadata.get("namespace", "default")
        views.append(
            ProxyView(
                node_id=r.node_id,
                service=r.node_cluster,
                namespace=namespace if isinstance(namespace, str) else "default",
                envoy_version=r.envoy_version,
                variant="",
                connected_since=None,
                synced_revision=None,
                streams=[],
                types=[],
                problems=[
                    ProxyProblem(
                        resource=f"Proxy/{namespace}/{r.node_id}",
                        field="node.user_agent_build_version",
                        message=r.reason,
                        severity="error",
                    )
                ],
                refused_at=iso(r.at),
            )
        )
    return views


class RevisionProxy(_Out):
    node_id: str
    service: str
    types: list[str]
    message: str | None = None


class RevisionRollout(_Out):
    """Where a revision stands on the proxies connected now."""

    total: int
    acked: int
    pending: int
    nacked: int
    complete: bool
    pending_proxies: list[RevisionProxy]
    nacked_proxies: list[RevisionProxy]


def rollout(views: Iterable[ProxyView], revision: int) -> RevisionRollout:
    """ACKed: the proxy's every type is ACKed at ``revision`` or later. NACKed: not there, and
    a type's last response was rejected. Pending: neither, yet."""
    acked = 0
    pending: list[RevisionProxy] = []
    nacked: list[RevisionProxy] = []
    for v in views:
        if v.synced_revision is not None and v.synced_revision >= revision:
            acked += 1
            continue
        # Rejected *for this revision*: the NACKed content is what ``revision`` (or a later
        # one) asks for. An older NACK leaves the proxy pending: its fix may be on the way.
        rejected = [
            t
            for t in v.types
            if t.state == "NACKED"
            and t.last_nack is not None
            and t.last_nack.revision is not None
            and t.last_nack.revision >= revision
        ]
        if rejected:
            message = "; ".join(
                f"{t.type}: {t.last_nack.message}" for t in rejected if t.last_nack is not None
            )
            nacked.append(
                RevisionProxy(
                    node_id=v.node_id,
                    service=v.service,
                    types=[t.type for t in rejected],
                    message=message,
                )
            )
        else:
            behind = [
                t.type for t in v.types if t.state != "SYNCED" or (t.revision_acked or 0) < revision
            ]
            pending.append(RevisionProxy(node_id=v.node_id, service=v.service, types=behind))
    total = acked + len(pending) + len(nacked)
    return RevisionRollout(
        total=total,
        acked=acked,
        pending=len(pending),
        nacked=len(nacked),
        complete=not pending,
        pending_proxies=pending,
        nacked_proxies=nacked,
    )
