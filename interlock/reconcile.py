"""The only glue between the store and the xDS cache.

change feed → debounce (quiet period + maximum wait) → ``load_state_since`` → translate each
proxy view → consistency check → publish to the snapshot cache. A view whose translation is
inconsistent keeps its last good snapshot and records the problem; nothing half-built is ever
published. Proxies that agree on everything but their node id share one view (one translation,
one set of serialized resources).

Changes that move only instances (the common case: registrations, deregistrations, health) take
the incremental path: only the changed services' instances are read from the store, and each
view's previous resources get fresh load assignments for those services alone
(:func:`~interlock.xds.translate.refresh_endpoints`); every other message is shared with the
previous snapshot, so the cache serializes nothing else. Anything else rebuilds every view.

With security (:class:`~interlock.security.proxies.ProxySecurity`), every stream is
authenticated by its proxy token before anything else, and is served a per-proxy snapshot
derived from its view: the view's resources as they are, plus the proxy's own certificate and
the trust bundle. A revision's CA changes (a rotation step) are applied to every proxy's
secrets *before* its views are published, so a proxy that ACKed revision R holds what R
published. A view also carries the registered labels of the proxy's instance (workload
selectors read them), so a label change can move a proxy to another view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from interlock.model import InterlockError, MeshState, Problem, Proxy, StateChange
from interlock.model.identity import PROXY_SECRETS, MeshIdentity
from interlock.model.service import Instance
from interlock.security.proxies import ProxySecurity
from interlock.store import Store
from interlock.telemetry.metrics import ControlPlaneMetrics
from interlock.xds import resource_types as rt
from interlock.xds.cache import SnapshotCache
from interlock.xds.server import StreamGrant, StreamRejected
from interlock.xds.translate import Resources, check_consistency, refresh_endpoints, translate

log = logging.getLogger("interlock.reconcile")


_NO_LABELS: Mapping[str, str] = MappingProxyType({})

DEFAULT_MAX_VIEWS = 10_000
"""Views (distinct proxy configurations, one translation each) a server holds at most."""
VIEW_GRACE = 2.0
"""Seconds a new view is kept before its stream watches it, when views must make room."""


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
        security: ProxySecurity | None = None,
        identity: MeshIdentity | None = None,
        max_views: int = DEFAULT_MAX_VIEWS,
    ) -> None:
        """Without ``security`` streams are not authenticated and get their view as is (for
        tests of the pipeline); ``identity`` turns on mTLS in the translation. A stream that
        would need view number ``max_views + 1`` is refused (RESOURCE_EXHAUSTED)."""
        self.metrics = metrics
        self.max_views = max_views
        if metrics is not None:
            metrics.views_limit.set(max_views)
        self.security = security
        self.identity = identity
        #: Per-proxy key → the proxy as its node describes it (labels come from the registry).
        self.proxies: dict[str, Proxy] = {}
        #: Per service: its instances (as in ``state``) and their labels by instance id.
        self._labels: dict[str, tuple[tuple[Instance, ...], dict[str, Mapping[str, str]]]] = {}
        #: Per-proxy key → the labels it was last placed with and the view key they gave.
        self._placed: dict[str, tuple[Mapping[str, str], Proxy, str]] = {}
        self.store = store
        self.cache = cache
        self.debounce = debounce or DebounceSettings()
        self.state: MeshState | None = None
        self.views: dict[str, Proxy] = {}
        self.reports: dict[str, ViewReport] = {}
        #: The last resources published for each view (what its proxies are being served).
        self.published: dict[str, Resources] = {}
        #: The revision each view's published resources were built from.
        self._published_at: dict[str, int] = {}
        #: Builds that took the incremental path (see the module docstring).
        self.incremental_builds = 0
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
    async def open_stream(
        self, node: object, metadata: Sequence[tuple[str, str | bytes]]
    ) -> str | StreamGrant:
        """Authenticate a new stream (with security), map its node to its view (building the
        view's snapshot if needed) and say what it is served.

        Refusals, before anything is sent: UNAUTHENTICATED (no, unknown or revoked token),
        INVALID_ARGUMENT (a node that does not describe a proxy), PERMISSION_DENIED (a node
        claiming another service, namespace or instance than its token).
        """
        token = None
        if self.security is not None:
            token = await self.security.authenticate(metadata)
        node_id = str(getattr(node, "id", ""))
        cluster = str(getattr(node, "cluster", ""))
        meta = MessageToDict(node.metadata) if hasattr(node, "metadata") else {}
        try:
            proxy = Proxy.from_node(node_id, cluster, meta)
        except InterlockError as exc:
            raise StreamRejected(grpc.StatusCode.INVALID_ARGUMENT, exc.message) from None
        if self.security is None or token is None:
            key = self._ensure_view(proxy)
            return key
        self.security.authorize(token, proxy)
        self._check_registration(proxy)
        proxy_key = f"{proxy.view_key()}@{proxy.node_id}"
        self.proxies[proxy_key] = proxy
        base = self._ensure_view(self._labelled(proxy))
        await self.security.attach(proxy_key, base, token)
        return StreamGrant(
            proxy_key,
            principal=token.token_id,
            allowed=self.security.allowed,
            on_denied=self.security.on_denied(token),
        )

    def _labelled(self, proxy: Proxy) -> Proxy:
        """``proxy`` with its instance's registered labels (none when it is not registered).

        The labels of a service's instances are indexed once per version of its instance
        list (an instance-only revision keeps every other service's list as it was).
        """
        state = self.state
        instances = state.instances.get(proxy.service, ()) if state is not None else ()
        index = self._labels.get(proxy.service)
        if index is None or index[0] is not instances:
            index = (instances, {i.instance_id: i.labels for i in instances})
            self._labels[proxy.service] = index
        return proxy.with_labels(index[1].get(proxy.node_id, _NO_LABELS))

    def _placed_in(self, proxy_key: str, proxy: Proxy) -> tuple[Proxy, str]:
        """``proxy`` labelled (see :meth:`_labelled`) and its view key, reusing the last
        result while its instance's labels are the same object."""
        state = self.state
        instances = state.instances.get(proxy.service, ()) if state is not None else ()
        index = self._labels.get(proxy.service)
        placed = self._placed.get(proxy_key)
        if (
            placed is not None
            and index is not None
            and index[0] is instances
            and index[1].get(proxy.node_id, _NO_LABELS) is placed[0]
        ):
            return placed[1], placed[2]
        labelled = self._labelled(proxy)
        index = self._labels[proxy.service]
        key = labelled.view_key()
        self._placed[proxy_key] = (index[1].get(proxy.node_id, _NO_LABELS), labelled, key)
        return labelled, key

    def _check_registration(self, proxy: Proxy) -> None:
        """Refuse (PERMISSION_DENIED) a node whose ports or kind contradict its instance's
        registration, so that a proxy cannot mint views at will. An instance the loaded state
        does not have yet (registered a moment ago) is not checked."""
        state = self.state
        instances = state.instances.get(proxy.service, ()) if state is not None else ()
        for instance in instances:
            if instance.instance_id == proxy.node_id:
                if message := proxy.registration_error(instance):
                    if self.security is not None:
                        self.security.metrics.rejected.labels("permission_denied").inc()
                    raise StreamRejected(grpc.StatusCode.PERMISSION_DENIED, message)
                return

    def _ensure_view(self, proxy: Proxy) -> str:
        key = proxy.view_key()
        if key not in self.views:
            if len(self.views) >= self.max_views:
                # Views no stream uses make room at once; a view opened a moment ago may
                # not be watched yet (its stream is still being authenticated).
                self._forget_idle_views(idle=VIEW_GRACE)
            if len(self.views) >= self.max_views:
                if self.metrics is not None:
                    self.metrics.views_refused.inc()
                log.warning(
                    "refused a stream of %s/%s instance %s: the server holds its most views "
                    "(%d, --max-views)",
                    proxy.namespace,
                    proxy.service,
                    proxy.node_id[:253],
                    self.max_views,
                )
                raise StreamRejected(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the control plane holds its most proxy views ({self.max_views}, "
                    "--max-views); a view is each distinct proxy configuration",
                )
            self.views[key] = proxy.view()
            self._build(key)
            self._count_views()
        self._last_seen[key] = time.monotonic()
        return key

    def _count_views(self) -> None:
        if self.metrics is not None:
            self.metrics.views.set(len(self.views))

    # -- change feed and debounce ----------------------------------------------------------
    def _on_commit(self, revision: int) -> None:
        """Called by the store's change feed, from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands
            # as the event is set, and stop() would then wait forever.
            try:
                async with asyncio.timeout(self.debounce.resync_interval):
                    await self._wake.wait()
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
                async with asyncio.timeout(min(self.debounce.quiet, remaining)):
                    await self._wake.wait()
            except TimeoutError:
                return

    async def rebuild(self, *, force: bool = False) -> None:
        """Load the newest state and republish every view (only when the revision moved,
        unless ``force``)."""
        previous = self.state
        state, change = await asyncio.to_thread(self.store.load_state_since, previous)
        if not force and previous is not None and state.revision == previous.revision:
            return
        if force or previous is None:
            change = StateChange.everything()
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
        if self.security is not None:
            # Secrets first (see the module docstring), then the views.
            await self.security.refresh()
        bases: dict[str, str] = {}
        for proxy_key in self.security.attached() if self.security else {}:
            proxy = self.proxies.get(proxy_key)
            if proxy is not None:
                labelled, base = self._placed_in(proxy_key, proxy)
                bases[proxy_key] = base
                if base not in self.views:
                    self.views[base] = labelled.view()
        since = previous.revision if previous is not None else -1
        for key in list(self.views):
            self._build(key, change, since)
        if self.security is not None:
            for proxy_key, base in bases.items():
                self.security.rebase(proxy_key, base)

    def _forget_idle_views(self, idle: float | None = None) -> None:
        """Forget views no stream has used for ``idle`` seconds (default: ``view_idle``)."""
        idle = self.debounce.view_idle if idle is None else idle
        watched = self.cache.watched_keys()
        now = time.monotonic()
        if self.security is not None:
            attached = self.security.attached()
            for proxy_key in tuple(self.proxies):
                if proxy_key not in attached:
                    del self.proxies[proxy_key]
                    self._placed.pop(proxy_key, None)
        for key in list(self.views):
            if key in watched:
                self._last_seen[key] = now
            elif now - self._last_seen.get(key, now) > idle:
                del self.views[key]
                self.reports.pop(key, None)
                self.published.pop(key, None)
                self._published_at.pop(key, None)
                self._last_seen.pop(key, None)
                self.cache.drop(key)
        self._count_views()

    # -- translate and publish -------------------------------------------------------------
    def _build(self, key: str, change: StateChange | None = None, since: int = -1) -> None:
        """Translate view ``key`` and publish it. With ``change`` (what moved since revision
        ``since``), a view published at ``since`` may take the incremental path."""
        state = self.state
        assert state is not None, "start() loads the state before any stream is served"
        proxy = self.views[key]
        started = time.perf_counter()
        resources = self._refreshed(key, change, since)
        if resources is not None:
            # Only load assignments were replaced: names, and so consistency, are unchanged.
            inconsistencies: tuple[str, ...] = ()
            self.incremental_builds += 1
        else:
            resources = translate(state, proxy, self.identity)
            if self.transform is not None:
                resources = self.transform(proxy, resources)
            provided = PROXY_SECRETS if self.security is not None else ()
            inconsistencies = tuple(check_consistency(resources, provided))
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
        if self.transform is None:
            self._published_at[key] = state.revision
        else:  # never refresh what the test seam rewrote: the next build starts afresh
            self._published_at.pop(key, None)
        if self.metrics is not None:
            self.metrics.builds.inc()
            self.metrics.build_seconds.observe(time.perf_counter() - started)

    def _refreshed(self, key: str, change: StateChange | None, since: int) -> Resources | None:
        """View ``key``'s published resources brought up to the current state by the
        incremental path, or None when it does not apply."""
        previous = self.published.get(key)
        if (
            change is None
            or not change.instances_only
            or previous is None
            or self._published_at.get(key) != since
            or self.transform is not None
        ):
            return None
        assert self.state is not None
        return refresh_endpoints(
            previous, self.state, self.views[key], change.instance_services, self.identity
        )

    def served_config(self, key: str) -> dict[str, list[dict[str, Any]]] | None:
        """The resources served to ``key`` (a view, or a proxy's key derived from one) as JSON,
        by type URL; private keys redacted."""
        base = self.cache.base_of(key) or key
        resources = self.published.get(base)
        if resources is None:
            return None
        served = as_type_map(resources)
        if self.security is not None and base != key:
            served[rt.SECRET] = (*served[rt.SECRET], *self.security.secrets_of(key))
        return {
            type_url: [redacted_json(m) for m in messages] for type_url, messages in served.items()
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
