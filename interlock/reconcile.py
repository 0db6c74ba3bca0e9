"""The only glue between the store and the xDS cache.

change feed → debounce (quiet period + maximum wait) → ``load_state`` → translate each proxy
view → consistency check → publish to the snapshot cache. A view whose translation is
inconsistent keeps its last good snapshot and records the problem; nothing half-built is ever
published. Proxies that agree on everything but their node id share one view (one translation,
one set of serialized resources).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from interlock.model import InterlockError, MeshState, Problem, Proxy
from interlock.store import Store
from interlock.telemetry.metrics import ControlPlaneMetrics
from interlock.xds import resource_types as rt
from interlock.xds.cache import SnapshotCache
from interlock.xds.server import StreamRejected
from interlock.xds.translate import Resources, check_consistency, translate

log = logging.getLogger("interlock.reconcile")


@dataclass(frozen=True)
class DebounceSettings:
    """Wait ``quiet`` seconds without a new write before rebuilding, but never more than
    ``max_wait`` seconds after the first write of a burst."""

    quiet: float = 0.05
    max_wait: float = 0.5
    # A safety net under the change feed: compare the stored revision this often.
    resync_interval: float = 5.0
    # A view nobody has streamed for this long is forgotten.
    view_idle: float = 300.0


@dataclass(frozen=True)
class ViewReport:
    """What the last build of one view produced: its problems, and whether it was published."""

    proxy: Proxy
    revision: int
    problems: tuple[Problem, ...]
    inconsistencies: tuple[str, ...]


class Reconciler:
    def __init__(
        self,
        store: Store,
        cache: SnapshotCache,
        debounce: DebounceSettings | None = None,
        metrics: ControlPlaneMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.cache = cache
        self.debounce = debounce or DebounceSettings()
        self.state: MeshState | None = None
        self.views: dict[str, Proxy] = {}
        self.reports: dict[str, ViewReport] = {}
        #: The last resources published for each view (what its proxies are being served).
        self.published: dict[str, Resources] = {}
        self._last_seen: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: object = None
        self.builds = 0
        self._wakes = 0
        #: A test-only seam: rewrites each view's translation before it is checked and
        #: published (e.g. to publish a route Envoy will reject). Never set in production.
        self.transform: Callable[[Proxy, Resources], Resources] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the store once (the server must not serve before this) and follow its feed."""
        self._loop = asyncio.get_running_loop()
        self.state = await asyncio.to_thread(self.store.load_state)
        log.info("loaded mesh state at revision %d", self.state.revision)
        self._unsubscribe = self.store.subscribe(self._on_commit)
        self._task = asyncio.create_task(self._run(), name="interlock-reconcile")

    async def stop(self) -> None:
        if callable(self._unsubscribe):
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the OpenStream hook for the xDS server --------------------------------------------
    async def open_stream(self, node: object, metadata: Sequence[tuple[str, str | bytes]]) -> str:
        """Map a new stream's node to its view key, building the view's snapshot if needed."""
        del metadata  # proxy authentication arrives with the security work
        node_id = str(getattr(node, "id", ""))
        cluster = str(getattr(node, "cluster", ""))
        meta = MessageToDict(node.metadata) if hasattr(node, "metadata") else {}
        try:
            proxy = Proxy.from_node(node_id, cluster, meta)
        except InterlockError as exc:
            raise StreamRejected(grpc.StatusCode.INVALID_ARGUMENT, exc.message) from None
        key = proxy.view_key()
        self._last_seen[key] = time.monotonic()
        if key not in self.views:
            self.views[key] = proxy.view()
            self._build(key)
        return key

    # -- change feed and debounce ----------------------------------------------------------
    def _on_commit(self, revision: int) -> None:
        """Called by the store's change feed, from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.debounce.resync_interval)
            except TimeoutError:
                stored = await asyncio.to_thread(self.store.revision)
                if self.state is not None and stored == self.state.revision:
                    self._forget_idle_views()
                    continue
            await self._settle()
            try:
                await self.rebuild()
            except InterlockError as exc:
                log.warning("could not load the mesh state: %s", exc.message)
                await asyncio.sleep(self.debounce.quiet)
                self._wake.set()

    async def _settle(self) -> None:
        """Return once writes have been quiet for ``quiet`` s, or ``max_wait`` s have passed."""
        started = time.monotonic()
        while True:
            self._wake.clear()
            self._wakes += 1
            remaining = self.debounce.max_wait - (time.monotonic() - started)
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), min(self.debounce.quiet, remaining))
            except TimeoutError:
                return

    async def rebuild(self, *, force: bool = False) -> None:
        """Load the newest state and republish every view (only when the revision moved,
        unless ``force``)."""
        state = await asyncio.to_thread(self.store.load_state)
        if not force and self.state is not None and state.revision == self.state.revision:
            return
        if self.metrics is not None:
            if self._wakes > 1:
                self.metrics.merged.inc(self._wakes - 1)
            if state.revision > 0:
                try:
                    info = await asyncio.to_thread(self.store.get_revision, state.revision)
                    self.metrics.committed(info.rev, info.committed_at)
                except InterlockError:
                    pass
        self._wakes = 0
        self.state = state
        for key in list(self.views):
            self._build(key)

    def _forget_idle_views(self) -> None:
        watched = self.cache.watched_keys()
        now = time.monotonic()
        for key in list(self.views):
            if key in watched:
                self._last_seen[key] = now
            elif now - self._last_seen.get(key, now) > self.debounce.view_idle:
                del self.views[key]
                self.reports.pop(key, None)
                self.published.pop(key, None)
                self._last_seen.pop(key, None)
                self.cache.drop(key)

    # -- translate and publish -------------------------------------------------------------
    def _build(self, key: str) -> None:
        state = self.state
        assert state is not None, "start() loads the state before any stream is served"
        proxy = self.views[key]
        started = time.perf_counter()
        resources = translate(state, proxy)
        if self.transform is not None:
            resources = self.transform(proxy, resources)
        inconsistencies = tuple(check_consistency(resources))
        self.reports[key] = ViewReport(proxy, state.revision, resources.problems, inconsistencies)
        self.builds += 1
        if inconsistencies:
            log.error(
                "not publishing revision %d for %s: %s",
                state.revision,
                key,
                "; ".join(inconsistencies),
            )
            return
        for problem in resources.problems:
            log.warning("%s %s: %s", problem.resource, problem.field, problem.message)
        self.cache.set_snapshot(key, as_type_map(resources), revision=state.revision)
        self.published[key] = resources
        if self.metrics is not None:
            self.metrics.builds.inc()
            self.metrics.build_seconds.observe(time.perf_counter() - started)

    def served_config(self, key: str) -> dict[str, list[dict[str, Any]]] | None:
        """The resources served to view ``key`` as JSON, by type URL; private keys redacted."""
        resources = self.published.get(key)
        if resources is None:
            return None
        return {
            type_url: [redacted_json(m) for m in messages]
            for type_url, messages in as_type_map(resources).items()
        }


def redacted_json(message: Message) -> dict[str, Any]:
    """``message`` as JSON (proto field names) with any private key replaced."""
    data: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    tls = data.get("tls_certificate")
    if isinstance(tls, dict) and "private_key" in tls:
        tls["private_key"] = {"inline_string": "[redacted]"}
    return data


def as_type_map(resources: Resources) -> dict[str, tuple[Message, ...]]:
    """The translator's output keyed by xDS type URL, as the cache takes it."""
    return {
        rt.CLUSTER: resources.clusters,
        rt.ENDPOINT: resources.endpoints,
        rt.LISTENER: resources.listeners,
        rt.ROUTE: resources.routes,
        rt.SECRET: resources.secrets,
    }
