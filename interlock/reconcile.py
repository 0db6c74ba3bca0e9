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
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Protocol

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from interlock.model import InterlockError, MeshState, Problem, Proxy, ProxyKind, StateChange
from interlock.model.envoy_version import node_envoy_version, unsupported_reason
from interlock.model.identity import MeshIdentity, Token
from interlock.model.policy.request_authentication import FetchedKeys
from interlock.model.service import Instance
from interlock.store import Store
from interlock.telemetry.metrics import ControlPlaneMetrics
from interlock.xds.translate import Resources, check_consistency, refresh_endpoints, translate
from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache
from interlock.xds.transport.server import OnDenied, StreamGrant, StreamRejected

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


RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
"""The reconciler's backoff after a failure: 0.1 s, doubling, at most 5 s."""

_STAGES = {
    "check": "the reconciler's periodic revision check",
    "rebuild": "loading and publishing the mesh state",
}


@dataclass(frozen=True)
class Failure:
    """The reconciler's failures in a row: the last one's stage and reason, how many, since
    when (wall clock)."""

    stage: str
    reason: str
    count: int
    since: float


@dataclass
class View:
    """Everything the reconciler holds for one view, forgotten together."""

    proxy: Proxy
    #: When a stream last watched it (monotonic seconds).
    last_seen: float
    report: ViewReport | None = None
    #: The last resources published (what its proxies are being served) ...
    published: Resources | None = None
    #: ... and the revision they were built from (None: not to be refreshed incrementally).
    published_at: int | None = None


class StreamSecurity(Protocol):
    """What the reconciler asks of the security glue
    (:class:`~interlock.security.proxies.ProxySecurity`, or :class:`NoSecurity`)."""

    async def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> Token | None: ...
    def authorize(self, token: Token, proxy: Proxy) -> None: ...
    async def attach(self, key: str, base: str, token: Token) -> None: ...
    def on_denied(self, token: Token) -> OnDenied: ...
    @property
    def allowed(self) -> dict[str, frozenset[str]]: ...
    async def refresh(self) -> None: ...
    def attached(self) -> dict[str, str]: ...
    def rebase(self, key: str, base: str) -> None: ...
    def secrets_of(self, key: str) -> tuple[Message, ...]: ...
    def count_refusal(self, reason: str) -> None: ...


class KeySource(Protocol):
    """The key sets fetched for ``jwksUri`` (:class:`~interlock.security.jwks.KeyFetcher`):
    what is held of those a state names (the same object while nothing changed)."""

    def keys_for(self, state: MeshState) -> Mapping[str, FetchedKeys]: ...
    async def prime(self, state: MeshState) -> None: ...


class NoSecurity:
    """No security (tests of the pipeline): no stream carries an identity, every stream gets
    its view as is, and no proxy has secrets of its own."""

    async def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> Token | None:
        return None

    def authorize(self, token: Token, proxy: Proxy) -> None:
        raise AssertionError("no token without security")

    async def attach(self, key: str, base: str, token: Token) -> None:
        raise AssertionError("no token without security")

    def on_denied(self, token: Token) -> OnDenied:
        raise AssertionError("no token without security")

    @property
    def allowed(self) -> dict[str, frozenset[str]]:
        return {}

    async def refresh(self) -> None:
        return None

    def attached(self) -> dict[str, str]:
        return {}

    def rebase(self, key: str, base: str) -> None:
        return None

    def secrets_of(self, key: str) -> tuple[Message, ...]:
        return ()

    def count_refusal(self, reason: str) -> None:
        return None


class Reconciler:
    def __init__(
        self,
        store: Store,
        cache: SnapshotCache,
        debounce: DebounceSettings | None = None,
        metrics: ControlPlaneMetrics | None = None,
        security: StreamSecurity | None = None,
        identity: MeshIdentity | None = None,
        max_views: int = DEFAULT_MAX_VIEWS,
        keys: KeySource | None = None,
    ) -> None:
        """Without ``security`` streams are not authenticated and get their view as is (for
        tests of the pipeline); ``identity`` turns on mTLS in the translation. A stream that
        would need view number ``max_views + 1`` is refused (RESOURCE_EXHAUSTED). ``keys``
        gives the translation the fetched ``jwksUri`` key sets (call :meth:`keys_changed`
        when they change)."""
        self.keys = keys
        self.metrics = metrics
        self.max_views = max_views
        if metrics is not None:
            metrics.views_limit.set(max_views)
        self.security: StreamSecurity = security or NoSecurity()
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
        self.views: dict[str, View] = {}
        #: Builds that took the incremental path (see the module docstring).
        self.incremental_builds = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: object = None
        #: The failures in a row of the loop, None while it succeeds.
        self.failure: Failure | None = None
        self._incomplete = False
        self.builds = 0
        self._wakes = 0
        #: A test-only seam: rewrites each view's translation before it is checked and
        #: published (e.g. to publish a route Envoy will reject). Never set in production.
        self.transform: Callable[[Proxy, Resources], Resources] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the store once (the server must not serve before this) and follow its feed."""
        self._loop = asyncio.get_running_loop()
        state = await asyncio.to_thread(self.store.load_state)
        if self.keys is not None:
            await self.keys.prime(state)
            state = replace(state, fetched_keys=self.keys.keys_for(state))
        self.state = state
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
        claiming another service, namespace or instance than its token), FAILED_PRECONDITION
        (an Envoy release outside the supported range, listed by `GET /v1/proxies`).
        """
        token = await self.security.authenticate(metadata)
        node_id = str(getattr(node, "id", ""))
        cluster = str(getattr(node, "cluster", ""))
        meta = MessageToDict(node.metadata) if hasattr(node, "metadata") else {}
        if "kind" not in meta and str(getattr(node, "user_agent_name", "")).startswith("gRPC"):
            # gRPC's own xDS client (proxyless) with a bootstrap that does not say so
            meta["kind"] = ProxyKind.GRPC.value
        try:
            proxy = Proxy.from_node(node_id, cluster, meta)
        except InterlockError as exc:
            raise StreamRejected(grpc.StatusCode.INVALID_ARGUMENT, exc.message) from None
        if token is None:  # no security: the stream gets its view as is
            refuse_unsupported_envoy(node)
            return self._ensure_view(proxy)
        self.security.authorize(token, proxy)
        refuse_unsupported_envoy(node)
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
                    self.security.count_refusal("permission_denied")
                    raise StreamRejected(grpc.StatusCode.PERMISSION_DENIED, message)
                return

    def _ensure_view(self, proxy: Proxy) -> str:
        key = proxy.view_key()
        view = self.views.get(key)
        if view is not None:
            view.last_seen = time.monotonic()
        else:
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
            self.views[key] = View(proxy.view(), time.monotonic())
            self._build(key)
            self._count_views()
        return key

    def _count_views(self) -> None:
        if self.metrics is not None:
            self.metrics.views.set(len(self.views))

    # -- change feed and debounce ----------------------------------------------------------
    def keys_changed(self) -> None:
        """The fetched key sets changed (on the loop): rebuild, even at the same revision."""
        self._wake.set()

    def _on_commit(self, revision: int) -> None:
        """Called by the store's change feed, from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        """The loop, which never ends but by cancellation: a failure of any step is logged
        with its stage, counted, reported by :meth:`failing_problem` and retried with backoff (a
        commit heard meanwhile retries at once: the store works again)."""
        failures = 0
        while True:
            stage = "check"
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # lands as the event is set, and stop() would then wait forever.
                try:
                    async with asyncio.timeout(self.debounce.resync_interval):
                        await self._wake.wait()
                except TimeoutError:
                    stored = await asyncio.to_thread(self.store.revision)
                    if self.state is not None and stored == self.state.revision:
                        self._forget_idle_views()
                        self.failure = None
                        failures = 0
                        continue
                stage = "rebuild"
                await self._settle()
                await self.rebuild()
                self.failure = None
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** min(failures - 1, 16))
                self._failed(stage, exc, failures, delay)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                self._wake.set()  # retry: load and publish whatever the store now holds

    def _failed(self, stage: str, exc: Exception, failures: int, delay: float) -> None:
        reason = exc.message if isinstance(exc, InterlockError) else f"{type(exc).__name__}: {exc}"
        revision = self.state.revision if self.state is not None else -1
        what = _STAGES[stage]
        since = self.failure.since if self.failure is not None else time.time()
        self.failure = Failure(stage, reason, failures, since)
        if self.metrics is not None:
            self.metrics.reconcile_errors.labels(stage).inc()
        # A store error is expected in an outage (its message is enough); anything else is a
        # bug, logged with its traceback.
        log.log(
            logging.WARNING if isinstance(exc, InterlockError) else logging.ERROR,
            "%s failed (published revision %d, failure %d in a row): %s; retrying in %.1f s",
            what,
            revision,
            failures,
            reason,
            delay,
            exc_info=None if isinstance(exc, InterlockError) else exc,
        )

    def running_problem(self) -> str | None:
        """ "not running" when the loop's task has ended (it ends only by :meth:`stop`)."""
        task = self._task
        if task is None or task.done():
            return "the reconciler is not running"
        return None

    def failing_problem(self) -> str | None:
        """Why the proxies may be behind the store: the loop's last attempt failed and it is
        retrying (None while it succeeds)."""
        failure = self.failure
        if failure is None:
            return None
        return (
            f"{_STAGES[failure.stage]} failed {failure.count} time(s) in a row since "
            f"{time.strftime('%H:%M:%S', time.gmtime(failure.since))}Z: {failure.reason}"
        )

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
        keys_moved = False
        if self.keys is not None:
            keys = self.keys.keys_for(state)
            keys_moved = previous is None or keys is not previous.fetched_keys
            state = replace(state, fetched_keys=keys)
        # A rebuild that failed half-way is redone in full, even at the same revision.
        incomplete = self._incomplete
        if (
            not force
            and not incomplete
            and not keys_moved
            and previous is not None
            and state.revision == previous.revision
        ):
            return
        if force or previous is None or incomplete or keys_moved:
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
        self._incomplete = True
        # Secrets first (see the module docstring), then the views.
        await self.security.refresh()
        self.state = state
        bases: dict[str, str] = {}
        for proxy_key in self.security.attached():
            proxy = self.proxies.get(proxy_key)
            if proxy is not None:
                labelled, base = self._placed_in(proxy_key, proxy)
                bases[proxy_key] = base
                if base not in self.views:
                    self.views[base] = View(labelled.view(), time.monotonic())
        since = previous.revision if previous is not None else -1
        for key in list(self.views):
            self._build(key, change, since)
        for proxy_key, base in bases.items():
            self.security.rebase(proxy_key, base)
        self._incomplete = False

    def _forget_idle_views(self, idle: float | None = None) -> None:
        """Forget views no stream has used for ``idle`` seconds (default: ``view_idle``)."""
        idle = self.debounce.view_idle if idle is None else idle
        watched = self.cache.watched_keys()
        now = time.monotonic()
        attached = self.security.attached()
        for proxy_key in tuple(self.proxies):
            if proxy_key not in attached:
                del self.proxies[proxy_key]
                self._placed.pop(proxy_key, None)
        for key, view in list(self.views.items()):
            if key in watched:
                view.last_seen = now
            elif now - view.last_seen > idle:
                del self.views[key]
                self.cache.drop(key)
        self._count_views()

    # -- translate and publish -------------------------------------------------------------
    def _build(self, key: str, change: StateChange | None = None, since: int = -1) -> None:
        """Translate view ``key`` and publish it. With ``change`` (what moved since revision
        ``since``), a view published at ``since`` may take the incremental path."""
        state = self.state
        assert state is not None, "start() loads the state before any stream is served"
        view = self.views[key]
        proxy = view.proxy
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
            provided = self.security.allowed.get(rt.SECRET, frozenset())
            inconsistencies = tuple(check_consistency(resources, provided))
        view.report = ViewReport(proxy, state.revision, resources.problems, inconsistencies)
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
        view.published = resources
        # Never refresh what the test seam rewrote: the next build starts afresh.
        view.published_at = state.revision if self.transform is None else None
        if self.metrics is not None:
            self.metrics.builds.inc()
            self.metrics.build_seconds.observe(time.perf_counter() - started)

    def _refreshed(self, key: str, change: StateChange | None, since: int) -> Resources | None:
        """View ``key``'s published resources brought up to the current state by the
        incremental path, or None when it does not apply."""
        view = self.views[key]
        previous = view.published
        if (
            change is None
            or not change.instances_only
            or previous is None
            or view.published_at != since
            or self.transform is not None
        ):
            return None
        assert self.state is not None
        return refresh_endpoints(
            previous, self.state, view.proxy, change.instance_services, self.identity
        )

    def problems_of(self, key: str) -> tuple[Problem, ...]:
        """The problems the last build of ``key``'s view met (a view, or a proxy's key derived
        from one): what its proxies are not given, and why."""
        view = self.views.get(self.cache.base_of(key) or key)
        return view.report.problems if view is not None and view.report is not None else ()

    def served_config(self, key: str) -> dict[str, tuple[Message, ...]] | None:
        """The resources served to ``key`` (a view, or a proxy's key derived from one), by
        type URL, private keys included: whoever shows them redacts them."""
        base = self.cache.base_of(key) or key
        view = self.views.get(base)
        if view is None or view.published is None:
            return None
        served = as_type_map(view.published)
        if base != key:
            served[rt.SECRET] = (*served[rt.SECRET], *self.security.secrets_of(key))
        return served


def refuse_unsupported_envoy(node: object) -> None:
    """Refuse (FAILED_PRECONDITION, shown in `GET /v1/proxies`) the stream of an Envoy whose
    release is outside the supported range: it would be served configuration it may reject.
    Clients that are not Envoy, or do not say their release, pass."""
    version = node_envoy_version(node)
    reason = None if version is None else unsupported_reason(version)
    if reason is not None:
        raise StreamRejected(grpc.StatusCode.FAILED_PRECONDITION, reason, shown=True)


def as_type_map(resources: Resources) -> dict[str, tuple[Message, ...]]:
    """The translator's output keyed by xDS type URL, as the cache takes it."""
    return {
        rt.CLUSTER: resources.clusters,
        rt.ENDPOINT: resources.endpoints,
        rt.LISTENER: resources.listeners,
        rt.ROUTE: resources.routes,
        rt.SECRET: resources.secrets,
    }
