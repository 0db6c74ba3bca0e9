"""The composition root: one event loop runs the xDS server (grpc.aio) and the REST API
(uvicorn) over one store, with the reconciler between them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import uvicorn

from interlock.api import create_app
from interlock.api.auth import ApiAuth
from interlock.api.context import HealthCheck
from interlock.api.routers.ca import CaAdmin
from interlock.liveness import Liveness
from interlock.model import InterlockError
from interlock.model.addresses import HostPort
from interlock.model.health import DEFAULT_INSTANCE_TTL
from interlock.model.identity import DEFAULT_ROOT_NAMESPACE, DEFAULT_TRUST_DOMAIN, MeshIdentity
from interlock.reconcile import DEFAULT_MAX_VIEWS, DebounceSettings, Reconciler
from interlock.rest_server import ApiLimits, ApiServer, raise_descriptor_limit
from interlock.security.admin import ensure_admin_token
from interlock.security.authority import CaRuntime, CaStartError, OperatorCa, utc_now
from interlock.security.files import (
    KEK_ENV,
    SecretFileError,
    default_admin_token_path,
    default_ca_bundle_path,
    resolve_kek,
)
from interlock.security.jwks import JwksSettings, KeyFetcher
from interlock.security.metrics import SecurityMetrics
from interlock.security.proxies import ProxySecurity
from interlock.security.revocation import DEFAULT_RECHECK_SECONDS, Revocations
from interlock.security.serving import ServerNames, ServingIdentity, server_name_error
from interlock.store import DEFAULT_DB_TIMEOUT, Store
from interlock.telemetry.als import AccessLogReceiver
from interlock.telemetry.graph import TrafficGraph
from interlock.telemetry.metrics import ControlPlaneMetrics
from interlock.xds.transport.cache import SnapshotCache
from interlock.xds.transport.limits import StreamLimits as StreamLimits
from interlock.xds.transport.server import XdsServer
from interlock.xds.transport.status import StatusRegistry

log = logging.getLogger("interlock.server")


class SettingsError(ValueError):
    """A server setting a user gave is wrong; the message names it."""


def parse_address(value: str, option: str) -> HostPort:
    """``HOST:PORT`` (or ``[v6]:PORT``) of a listener; port 0 means "any free port"."""
    try:
        return HostPort.parse(value, allow_any_port=True)
    except ValueError as exc:
        raise SettingsError(f"{option}: {exc}") from None


DEFAULT_API = HostPort("127.0.0.1", 8080)
DEFAULT_XDS = HostPort("127.0.0.1", 18000)


@dataclass(frozen=True)
class ServerSettings:
    db_url: str = "sqlite:///interlock.db"
    api: HostPort = DEFAULT_API
    xds: HostPort = DEFAULT_XDS
    debounce_quiet: float = 0.05
    debounce_max: float = 0.5
    ready_file: Path | None = None
    log_level: str = "info"
    #: Identities: ``spiffe://<trust_domain>/ns/<namespace>/sa/<service>``.
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    #: Where mesh-wide policies (PeerAuthentication without selector) live.
    root_namespace: str = DEFAULT_ROOT_NAMESPACE
    leaf_lifetime: float = 24 * 3600.0
    #: An operator-supplied CA, used on first start (later: ``interlock ca rotate``).
    ca_cert: Path | None = None
    ca_key: Path | None = None
    ca_chain: Path | None = None
    #: The key-encryption key of the CA's stored key (else INTERLOCK_CA_KEK, else a file).
    ca_kek_file: Path | None = None
    #: Seconds between checks that close the streams of revoked proxy tokens.
    token_recheck: float = DEFAULT_RECHECK_SECONDS
    #: Let anyone read the REST API (writes always need the admin token).
    open_reads: bool = False
    #: Where the first admin token is written (default: beside a SQLite database).
    admin_token_file: Path | None = None
    #: Revoke the admin token(s) and write a new one.
    new_admin_token: bool = False
    #: Further DNS names / IP addresses clients reach the server by (``--server-name``).
    server_names: tuple[str, ...] = ()
    #: Serve the API and xDS without TLS: only when both listen on loopback.
    plaintext: bool = False
    #: Where the CA bundle clients trust is written (default: ``<db>.ca.pem``).
    ca_bundle_file: Path | None = None
    #: Seconds without an xDS stream from an instance's proxy before it is unhealthy.
    instance_ttl: float = DEFAULT_INSTANCE_TTL
    #: Seconds one wait on the database may take (busy, connect and statement timeouts).
    db_timeout: float = DEFAULT_DB_TIMEOUT
    #: What a gRPC client may cost (see :class:`~interlock.xds.transport.limits.StreamLimits`).
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    #: Distinct proxy configurations (views, one translation each) held at most.
    max_views: int = DEFAULT_MAX_VIEWS
    #: Seconds a REST client has for its TLS handshake and each request's headers.
    api_header_timeout: float = 10.0
    #: REST connections held at once (and so requests in flight); see ``rest_server``.
    api_max_connections: int = 10_000
    #: How often RequestAuthentications' ``jwksUri`` key sets are fetched again, and the
    #: CA file trusted for them besides the system's (``--jwks-refresh``, ``--jwks-ca-file``).
    jwks_refresh: float = JwksSettings.refresh
    jwks_ca_file: Path | None = None


@dataclass(frozen=True)
class Components:
    """The running parts, for in-process tests that need to reach inside (never for users)."""

    store: Store
    cache: SnapshotCache
    status: StatusRegistry
    reconciler: Reconciler
    xds: XdsServer
    graph: TrafficGraph
    access_logs: AccessLogReceiver
    security: ProxySecurity
    revocations: Revocations
    liveness: Liveness


@dataclass(frozen=True)
class ServerInfo:
    """Where a started server listens (the real ports when 0 was asked for)."""

    api_url: str
    xds_address: str
    api_port: int
    xds_port: int
    db_url: str
    pid: int
    admin_token_file: str = ""
    #: The CA bundle clients verify the server with, and its roots' SHA-256 fingerprints.
    ca_file: str = ""
    ca_fingerprints: list[str] = field(default_factory=list)
    tls: bool = True


def listen_socket(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a SettingsError naming the address."""
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise SettingsError(f"cannot listen on {host}:{port} for {what}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: a response written in two parts (headers, body)
        # must not wait for the client's delayed ACK (~40 ms per request).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(addr)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise SettingsError(f"cannot listen on {host}:{port} for {what}: {exc.strerror}") from None
    return sock


def _security_settings(settings: ServerSettings) -> OperatorCa | None:
    """Check the security settings; the operator's CA files, if given."""
    from interlock.ca import validate_trust_domain
    from interlock.model import names

    try:
        validate_trust_domain(settings.trust_domain, field="--trust-domain")
    except InterlockError as exc:
        raise SettingsError(exc.message) from None
    if err := names.namespace_error(settings.root_namespace):
        raise SettingsError(f"--root-namespace: {err}")
    if settings.leaf_lifetime < 10:
        raise SettingsError("--leaf-lifetime must be at least 10 seconds")
    if settings.token_recheck <= 0:
        raise SettingsError("--token-recheck must be positive")
    if not settings.db_timeout > 0:
        raise SettingsError("--db-timeout must be positive")
    if settings.instance_ttl < 1:
        raise SettingsError("--instance-ttl must be at least 1 second")
    limits = settings.stream_limits
    if limits.first_request_timeout <= 0:
        raise SettingsError("--first-request-timeout must be positive")
    if limits.max_streams < 1 or limits.max_streams_per_connection < 1:
        raise SettingsError("--max-streams and --max-streams-per-connection must be at least 1")
    if settings.max_views < 1:
        raise SettingsError("--max-views must be at least 1")
    if settings.api_header_timeout <= 0:
        raise SettingsError("--api-header-timeout must be positive")
    if settings.api_max_connections < 1:
        raise SettingsError("--api-max-connections must be at least 1")
    for name in settings.server_names:
        if err := server_name_error(name):
            raise SettingsError(f"--server-name: {err}")
    if settings.plaintext:
        exposed = [
            f"{option} {address}"
            for option, address in (("--api", settings.api), ("--xds", settings.xds))
            if not address.is_loopback
        ]
        if exposed:
            raise SettingsError(
                "--plaintext would send private keys and tokens across the network in clear; "
                "it is allowed only when --api and --xds listen on loopback "
                f"(got {', '.join(exposed)}). Drop --plaintext: TLS is the default"
            )
    if (settings.ca_cert is None) != (settings.ca_key is None):
        raise SettingsError("give --ca-cert and --ca-key together")
    if settings.ca_chain is not None and settings.ca_cert is None:
        raise SettingsError("--ca-chain needs --ca-cert and --ca-key")
    if settings.ca_cert is None or settings.ca_key is None:
        return None
    try:
        return OperatorCa.from_files(settings.ca_cert, settings.ca_key, settings.ca_chain)
    except CaStartError as exc:
        raise SettingsError(str(exc)) from None


async def serve(
    settings: ServerSettings,
    stop: asyncio.Event,
    on_ready: Callable[[ServerInfo], None] | None = None,
    *,
    expose: Callable[[Components], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Run the control plane until ``stop`` is set, then shut everything down in order.

    Raises :class:`SettingsError` (bad or busy addresses, unusable security settings: KEK,
    CA, trust domain) and InterlockError (database) before serving anything; once serving, a
    stop request shuts the API, the xDS server, the reconciler and the store down in that
    order. ``say`` gets the lines an operator must see (where the admin token and a generated
    KEK are); they never contain a secret.
    """
    tell = say or log.info
    operator_ca = _security_settings(settings)
    async with contextlib.AsyncExitStack() as parts:
        # Each part registers its own shutdown as it starts; they run in reverse order (the
        # API first, the store last), also when a later part fails to start.
        api_sock = listen_socket(settings.api.host, settings.api.port, "the REST API (--api)")
        parts.callback(api_sock.close)
        store = await asyncio.to_thread(
            functools.partial(Store.open, settings.db_url, timeout=settings.db_timeout)
        )
        parts.push_async_callback(asyncio.to_thread, store.close)
        try:
            kek, generated = resolve_kek(
                settings.db_url, settings.ca_kek_file, os.environ.get(KEK_ENV)
            )
        except SecretFileError as exc:
            raise SettingsError(str(exc)) from None
        if generated is not None:
            tell(
                f"generated the CA key-encryption key in {generated} (mode 0600); "
                "back it up with the database: the CA key cannot be opened without it"
            )
        ca = CaRuntime(
            store.security,
            kek,
            settings.trust_domain,
            leaf_lifetime=timedelta(seconds=settings.leaf_lifetime),
        )
        try:
            await asyncio.to_thread(ca.start, operator_ca, tell)
        except CaStartError as exc:
            raise SettingsError(str(exc)) from None
        token_file = settings.admin_token_file or default_admin_token_path(settings.db_url)
        try:
            tell(
                await asyncio.to_thread(
                    ensure_admin_token,
                    store.security,
                    token_file,
                    rotate=settings.new_admin_token,
                )
            )
        except SecretFileError as exc:
            raise SettingsError(str(exc)) from None
        cache = SnapshotCache()
        status = StatusRegistry()
        metrics = ControlPlaneMetrics()
        metrics.watch(status)
        security_metrics = SecurityMetrics(metrics.registry)
        debounce = DebounceSettings(
            quiet=settings.debounce_quiet,
            max_wait=max(settings.debounce_max, settings.debounce_quiet),
        )
        bundle_file = settings.ca_bundle_file or default_ca_bundle_path(settings.db_url)
        serving = ServingIdentity(
            ca,
            settings.root_namespace,
            ServerNames.of(settings.server_names, (settings.api, settings.xds)),
            lifetime=timedelta(seconds=settings.leaf_lifetime),
            bundle_file=bundle_file,
            metrics=security_metrics,
        )
        try:
            serving.start()
        except OSError as exc:
            raise SettingsError(
                f"cannot write the CA bundle to {bundle_file} (--ca-bundle-file): "
                f"{exc.strerror or exc}"
            ) from None
        parts.push_async_callback(serving.stop)
        for line in _trust_lines(serving, bundle_file, settings.plaintext):
            tell(line)
        security = ProxySecurity(store.security, ca, cache, kek, security_metrics)
        identity = MeshIdentity(settings.trust_domain, settings.root_namespace)
        try:
            key_fetcher = KeyFetcher(
                JwksSettings(refresh=settings.jwks_refresh, ca_file=settings.jwks_ca_file)
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        reconciler = Reconciler(
            store,
            cache,
            debounce,
            metrics,
            security,
            identity,
            max_views=settings.max_views,
            keys=key_fetcher,
        )
        key_fetcher.on_change = reconciler.keys_changed
        # Load before serving: a proxy must never receive an empty config at start (nor key
        # sets not fetched yet: the first fetch of each is tried before serving).
        await reconciler.start()
        parts.push_async_callback(reconciler.stop)
        key_fetcher.start()
        parts.push_async_callback(key_fetcher.stop)
        security.start()
        parts.push_async_callback(security.stop)
        graph = TrafficGraph()
        access_logs = AccessLogReceiver(
            graph,
            security.access_log_principal,
            counter=metrics.access_log_entries,
            dropped=metrics.access_log_dropped,
            limits=settings.stream_limits,
        )
        liveness = Liveness(store, settings.instance_ttl)
        liveness.start()
        parts.push_async_callback(liveness.stop)
        xds = XdsServer(
            cache,
            status,
            liveness.hook(reconciler.open_stream),
            [access_logs.handler()],
            settings.stream_limits,
        )
        try:
            bound_xds = await xds.start(
                str(settings.xds), None if settings.plaintext else serving.grpc_credentials()
            )
        except (OSError, RuntimeError) as exc:
            raise SettingsError(f"cannot listen on {settings.xds} for xDS (--xds): {exc}") from None
        parts.push_async_callback(xds.stop, 0.5)
        revocations = Revocations(store.security, xds, settings.token_recheck, security_metrics)
        revocations.start()
        parts.push_async_callback(revocations.stop)
        api = create_app(
            store,
            status=status,
            config_reader=reconciler.served_config,
            problem_reader=reconciler.problems_of,
            graph_reader=lambda window: graph.snapshot(window),
            metrics=metrics,
            auth=ApiAuth(store.security.find_token, open_reads=settings.open_reads),
            ca_admin=CaAdmin(kek, settings.trust_domain, utc_now, settings.leaf_lifetime),
            root_namespace=settings.root_namespace,
            bundle=serving,
            instance_ttl=settings.instance_ttl,
            health_checks=(
                HealthCheck("reconciler", reconciler.running_problem),
                HealthCheck("change_feed", store.feed_problem),
                HealthCheck("liveness", _stopped(liveness, "the liveness sweep")),
                HealthCheck("svid_renewal", _stopped(security, "SVID renewal")),
                HealthCheck("jwks", _stopped(key_fetcher, "the jwksUri key set refresh")),
                HealthCheck("reconciler", reconciler.failing_problem, readiness_only=True),
            ),
        )
        api_task = await _start_api(
            api,
            api_sock,
            parts,
            None if settings.plaintext else serving.api_context(),
            ApiLimits(settings.api_header_timeout, settings.api_max_connections),
            on_stop=serving.release,
        )
        bound_api = int(api_sock.getsockname()[1])
        scheme = "http" if settings.plaintext else "https"
        info = ServerInfo(
            api_url=f"{scheme}://{_url_host(settings.api.host)}:{bound_api}",
            xds_address=str(HostPort(settings.xds.host, bound_xds)),
            api_port=bound_api,
            xds_port=bound_xds,
            db_url=_redact(settings.db_url),
            pid=os.getpid(),
            admin_token_file=str(token_file),
            ca_file=str(bundle_file),
            ca_fingerprints=list(serving.bundle.fingerprints),
            tls=not settings.plaintext,
        )
        log.info("REST API on %s, xDS on %s, store %s", info.api_url, info.xds_address, info.db_url)
        if settings.ready_file is not None:
            tmp = settings.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(info.__dict__))
            tmp.replace(settings.ready_file)
        if expose is not None:
            expose(
                Components(
                    store,
                    cache,
                    status,
                    reconciler,
                    xds,
                    graph,
                    access_logs,
                    security,
                    revocations,
                    liveness,
                )
            )
        if on_ready is not None:
            on_ready(info)
        stop_wait = asyncio.create_task(stop.wait())
        await asyncio.wait({stop_wait, api_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()


class _Running(Protocol):
    @property
    def running(self) -> bool: ...


def _stopped(part: _Running, what: str) -> Callable[[], str | None]:
    """A health check: "<what> is not running" once ``part``'s loop has ended."""

    def problem() -> str | None:
        return None if part.running else f"{what} is not running"

    return problem


async def _start_api(
    api: Any,
    sock: socket.socket,
    parts: contextlib.AsyncExitStack,
    context: ssl.SSLContext | None,
    limits: ApiLimits,
    *,
    on_stop: Callable[[], None] | None = None,
) -> asyncio.Task[None]:
    """Serve ``api`` on ``sock`` (uvicorn, embedded; TLS with ``context``, which the serving
    identity keeps current); its shutdown joins ``parts``. ``on_stop`` is called first when
    it stops, to answer held requests (uvicorn waits for every request to finish, up to
    :data:`API_SHUTDOWN_GRACE` seconds). ``limits``: see :mod:`interlock.rest_server`."""
    config = uvicorn.Config(
        api,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=API_SHUTDOWN_GRACE,
        # One request at a time per connection, and connections are limited by the server:
        # past that many requests in flight, uvicorn answers 503.
        limit_concurrency=limits.effective_connections() + 1,
    )
    config.load()
    config.ssl = context  # uvicorn builds a context only from files; this one is in memory
    server = ApiServer(config, limits)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="interlock-api")

    async def stop() -> None:
        if on_stop is not None:
            on_stop()
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task

    parts.push_async_callback(stop)
    while not server.started:
        if task.done():
            await task
            host, port = sock.getsockname()[:2]
            raise SettingsError(f"the REST API could not start on {host}:{port}")
        await asyncio.sleep(0.01)
    return task


API_SHUTDOWN_GRACE = 2
"""Seconds a stopping server lets requests in flight finish before it cancels them."""


def _trust_lines(serving: ServingIdentity, bundle_file: Path, plaintext: bool) -> list[str]:
    """What an operator needs to point clients at this server (no secret)."""
    roots = ", ".join(f"sha256:{f}" for f in serving.bundle.fingerprints)
    if plaintext:
        return [f"serving PLAIN TEXT on loopback (--plaintext); CA bundle in {bundle_file}"]
    return [
        f"serving TLS as {serving.spiffe_id}; CA bundle in {bundle_file}, root {roots}",
        f"clients: --ca-file {bundle_file} (a copy of it), or --ca-fingerprint "
        f"sha256:{serving.anchor_fingerprint}",
    ]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _redact(url: str) -> str:
    """A database URL without its password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
    return url


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


#: Allocations between two young collections (CPython's default is 700). A push to thousands
#: of streams allocates far more than that; fewer young collections promote fewer short-lived
#: objects to the old generations, which a full collection then has to scan.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once the server is loaded and about to serve: collect, then move everything alive
    (modules, classes, functions, the loaded mesh) out of the collector's sight
    (``gc.freeze``), and make young collections rarer. Full collections then scan only what
    serving allocated, not the whole process: measured at 2,000 streams, they were ~40% of the
    CPU of a push and each stalled every stream for up to a second (docs/benchmarks.md).
    Only the server's process does this (tests and embedded uses keep Python's defaults)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (it serves the same streams with less CPU
    per callback: every push and every ACK is a few of them per stream), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop
        return None
    return uvloop.new_event_loop


def run_server(settings: ServerSettings, say: Callable[[str], None] = print) -> int:
    """`interlock server`: run until SIGINT/SIGTERM; returns the process exit code."""
    configure_logging(settings.log_level)
    raise_descriptor_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(info: ServerInfo) -> None:
            settle_heap()
            say(f"interlock server ready: REST API {info.api_url}  xDS {info.xds_address}")

        await serve(settings, stop, ready, say=say)

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    except (InterlockError, SettingsError, OSError) as exc:
        say(f"error: {getattr(exc, 'message', None) or exc}")
        return 1
    return 0
