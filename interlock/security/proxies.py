"""Who a stream speaks for, and the secrets it gets: authentication, X.509-SVIDs and renewal.

A stream is authenticated by the proxy token in its ``authorization: Bearer …`` metadata (no
token, an unknown or a revoked one: UNAUTHENTICATED; looked up through
:class:`~interlock.security.token_lookup.TokenLookup`, so bad tokens cost little), bare or —
what gRPC's xDS clients send — in its JWT-shaped envelope
(:mod:`interlock.model.token_envelope`; an expired or malformed one: UNAUTHENTICATED);
access-log (ALS) streams too (:meth:`ProxySecurity.access_log_principal`). The token is bound
to one instance of one service; a node claiming another service, namespace or instance is
refused (PERMISSION_DENIED).
Node metadata is otherwise trusted only for what it cannot abuse: the proxy's own ports.

Each attached proxy is served a *derived* snapshot (see :meth:`SnapshotCache.set_derived`): its
view's resources, shared with every proxy of the view and never serialized again, plus two
secrets of its own, ``default`` (its SVID and key) and ``ROOTCA`` (the trust bundle). A stream
may subscribe to no other secret name: such a request gets nothing, a warning in the log and
``interlock_sds_denied_total``.

SVIDs are per instance. One is issued on first connect (or read back from the store, sealed,
when it is still fresh: a control-plane restart serves a reconnecting proxy the certificate it
holds), renewed at half its lifetime (from issue, give or take the jitter) while the proxy is
connected, and re-issued at once when the CA that signs changes (root rotation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import grpc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from interlock.ca import Svid
from interlock.ca.storage import seal_svid_key, unseal_svid_key
from interlock.model import InterlockError, Proxy
from interlock.model.identity import PROXY_SECRETS, Token, TokenRole, token_hash
from interlock.model.token_envelope import EnvelopeError, looks_wrapped, unwrap
from interlock.security.authority import CaRuntime
from interlock.security.metrics import SecurityMetrics
from interlock.security.token_lookup import TokenLookup
from interlock.store.security import SecurityStore, StoredSvid
from interlock.telemetry.als import Principal, StreamRefused
from interlock.xds.translate.tls import identity_secrets
from interlock.xds.transport import resource_types as rt
from interlock.xds.transport.cache import SnapshotCache
from interlock.xds.transport.server import OnDenied, StreamRejected

log = logging.getLogger("interlock.security")

RENEW_JITTER = 0.03
"""Renewal happens at half the lifetime, give or take 3% of it (about 43 min of a day; 1.8 s
of a 60 s certificate, which leaves time to deliver it inside the 27-33 s window)."""
IDLE_SECONDS = 300.0
"""A proxy gone this long is forgotten (its SVID is kept in the store until it expires)."""

Instance = tuple[str, str, str]  # namespace, service, instance id


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The token of an ``authorization: Bearer <token>`` entry, if there is one."""
    for key, value in metadata:
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


@dataclass
class _Issued:
    """One instance's current SVID (its key is a secret: never logged)."""

    svid: Svid
    key_pem: bytes = field(repr=False)
    ca_key_id: str
    renew_at: datetime


@dataclass
class _Attached:
    """One per-proxy snapshot key: what it derives from and whose SVID it serves."""

    base: str
    instance: Instance
    token_id: str
    last_seen: float


class ProxySecurity:
    """Authentication, SVIDs and secret publishing for the xDS streams of one server."""

    def __init__(
        self,
        store: SecurityStore,
        ca: CaRuntime,
        cache: SnapshotCache,
        kek: bytes,
        metrics: SecurityMetrics | None = None,
        *,
        jitter: float = RENEW_JITTER,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self.ca = ca
        self._cache = cache
        self._kek = kek
        self.metrics = metrics or SecurityMetrics()
        self._jitter = jitter
        self._rng = rng or random.Random()
        #: Grouped lookups, unknown hashes remembered (see :mod:`.token_lookup`).
        self._tokens = TokenLookup(store.find_tokens)
        self._issued: dict[Instance, _Issued] = {}
        self._attached: dict[str, _Attached] = {}
        self._bundle = b""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.metrics.watch_expiry(self.certificate_margins)

    # -- authentication ----------------------------------------------------------------------
    async def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> Token:
        """The proxy token the stream carries; :class:`StreamRejected` (UNAUTHENTICATED)."""
        token = bearer_token(metadata)
        if token is None:
            self._reject("unauthenticated")
            raise StreamRejected(
                grpc.StatusCode.UNAUTHENTICATED,
                "no proxy token: send 'authorization: Bearer <token>' "
                "(POST /v1/services/{name}/instances/{id}/token issues one)",
            )
        if looks_wrapped(token):
            try:
                token = unwrap(token, time.time()).token
            except EnvelopeError as exc:
                self._reject("unauthenticated")
                raise StreamRejected(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        try:
            record = await self._tokens.find(token_hash(token))
        except InterlockError as exc:
            raise StreamRejected(grpc.StatusCode.UNAVAILABLE, exc.message) from None
        if record is None or not record.active or record.role is not TokenRole.PROXY:
            self._reject("unauthenticated")
            raise StreamRejected(
                grpc.StatusCode.UNAUTHENTICATED, "the proxy token is unknown or revoked"
            )
        return record

    async def access_log_principal(
        self, metadata: Sequence[tuple[str, str | bytes]], claimed: Principal
    ) -> Principal:
        """:meth:`authenticate` and :meth:`authorize` for an access-log stream whose node
        claims ``claimed`` (:data:`interlock.telemetry.als.Authenticate`): the token's
        instance, or :class:`~interlock.telemetry.als.StreamRefused` (counted alike)."""
        try:
            token = await self.authenticate(metadata)
            self._authorize(token, (claimed.namespace, claimed.service, claimed.instance_id))
        except StreamRejected as exc:
            raise StreamRefused(exc.code, exc.message) from None
        return Principal(token.namespace, token.service, token.instance_id)

    def authorize(self, token: Token, proxy: Proxy) -> None:
        """Refuse (PERMISSION_DENIED) a node that claims another identity than ``token``'s."""
        self._authorize(token, (proxy.namespace, proxy.service, proxy.node_id))

    def _authorize(self, token: Token, claimed: Instance) -> None:
        bound = (token.namespace, token.service, token.instance_id)
        if claimed != bound:
            self._reject("permission_denied")
            raise StreamRejected(
                grpc.StatusCode.PERMISSION_DENIED,
                f"proxy token {token.token_id} speaks for instance {bound[2]} of "
                f"{bound[0]}/{bound[1]}; the node claims instance {claimed[2]} of "
                f"{claimed[0]}/{claimed[1]}",
            )

    def _reject(self, code: str) -> None:
        self.metrics.rejected.labels(code).inc()

    def on_denied(self, token: Token) -> OnDenied:
        """The callback for names a stream of ``token`` may not subscribe to."""

        def denied(type_url: str, names: frozenset[str]) -> None:
            shown = sorted(n[:120] for n in names)[:8]
            if type_url == rt.SECRET:
                self.metrics.sds_denied.inc(len(names))
            log.warning(
                "proxy %s/%s instance %s (token %s) asked for %d %s name(s) it may not have "
                "%s; nothing was sent",
                token.namespace,
                token.service,
                token.instance_id,
                token.token_id,
                len(names),
                rt.SHORT_NAMES.get(type_url, type_url),
                shown,
            )

        return denied

    @property
    def allowed(self) -> dict[str, frozenset[str]]:
        """The only secret names any proxy may subscribe to."""
        return {rt.SECRET: PROXY_SECRETS}

    # -- attaching proxies ---------------------------------------------------------------------
    async def attach(self, key: str, base: str, token: Token) -> None:
        """Serve ``key`` = view ``base`` + the SVID of ``token``'s instance (issued now unless
        a fresh one is stored) + the trust bundle."""
        instance: Instance = (token.namespace, token.service, token.instance_id)
        issued = None
        if instance not in self._issued:
            issued = await asyncio.to_thread(self._load_or_issue, instance)
        # No await from here on: the renewal loop never sees the instance without its key.
        if issued is not None and instance not in self._issued:
            self._issued[instance] = issued
            self._wake.set()
        self._attached[key] = _Attached(base, instance, token.token_id, time.monotonic())
        self._publish(key)

    def rebase(self, key: str, base: str) -> None:
        """Derive ``key`` from view ``base`` from now on (its labels moved it)."""
        attached = self._attached.get(key)
        if attached is not None and attached.base != base:
            attached.base = base
            self._publish(key)

    def attached(self) -> dict[str, str]:
        """Per-proxy key → the view key it derives from."""
        return {key: a.base for key, a in self._attached.items()}

    def secrets_of(self, key: str) -> tuple[secret_pb2.Secret, ...]:
        """The secrets served to ``key`` (for proxy-config, which redacts the key)."""
        attached = self._attached.get(key)
        issued = None if attached is None else self._issued.get(attached.instance)
        if issued is None:
            return ()
        return identity_secrets(
            issued.svid.certificate_chain_pem(), issued.key_pem, self.ca.bundle_pem()
        )

    def count_refusal(self, reason: str) -> None:
        """Count a stream refused after authentication (``reason``: its status, lower case)."""
        self.metrics.rejected.labels(reason).inc()

    def certificate_margins(self) -> list[tuple[tuple[str, str, str], float]]:
        """((namespace, service, node id), seconds until its certificate expires) for each
        attached proxy."""
        now = self.ca.clock()
        margins = []
        for key, attached in tuple(self._attached.items()):
            issued = self._issued.get(attached.instance)
            if issued is not None:
                namespace, service, _ = attached.instance
                node_id = key.rpartition("@")[2]
                seconds = (issued.svid.not_after - now).total_seconds()
                margins.append(((namespace, service, node_id), seconds))
        return margins

    def _publish(self, key: str) -> None:
        attached = self._attached[key]
        issued = self._issued[attached.instance]
        secrets = identity_secrets(
            issued.svid.certificate_chain_pem(), issued.key_pem, self.ca.bundle_pem()
        )
        self._cache.set_derived(key, attached.base, {rt.SECRET: secrets})

    # -- issuing -------------------------------------------------------------------------------
    def _renew_time(self, svid: Svid, issued_at: datetime) -> datetime:
        """Half-way from issue to expiry, give or take the jitter (the CA backdates
        ``not_before`` for clock skew; that margin is not part of the lifetime asked for)."""
        start = max(svid.not_before, min(issued_at, svid.not_after))
        return replace(svid, not_before=start).renew_at(self._rng, jitter=self._jitter)

    def _load_or_issue(self, instance: Instance, *, reason: str = "new") -> _Issued:
        """Blocking (store and crypto): the stored SVID if fresh and signed by the current
        signing CA, else a new one (stored sealed)."""
        namespace, service, instance_id = instance
        signing = self.ca.authority.key_id
        now = self.ca.clock()
        if reason == "new":
            stored = self._store.svid(service, instance_id)
            if (
                stored is not None
                and stored.namespace == namespace
                and stored.ca_key_id == signing
                and stored.renew_at > now.timestamp()
            ):
                try:
                    key_pem = unseal_svid_key(
                        stored.sealed_key,
                        self._kek,
                        namespace=namespace,
                        service=service,
                        instance_id=instance_id,
                    )
                    return _Issued(
                        _stored_svid(stored, self.ca.trust_domain),
                        key_pem,
                        stored.ca_key_id,
                        datetime.fromtimestamp(stored.renew_at, tz=now.tzinfo),
                    )
                except InterlockError as exc:
                    log.warning("stored SVID of %s/%s/%s unusable: %s", *instance, exc.message)
        svid, ca_key_id = self.ca.issue(namespace, service)
        assert svid.key_pem is not None
        renew_at = self._renew_time(svid, now)
        self._store.put_svid(
            StoredSvid(
                service=service,
                namespace=namespace,
                instance_id=instance_id,
                ca_key_id=ca_key_id,
                cert_pem=svid.cert_pem,
                chain_pem=svid.chain_pem,
                sealed_key=seal_svid_key(
                    svid.key_pem,
                    self._kek,
                    namespace=namespace,
                    service=service,
                    instance_id=instance_id,
                ),
                not_after=svid.not_after.timestamp(),
                renew_at=renew_at.timestamp(),
            )
        )
        self.metrics.svids_issued.labels(reason).inc()
        log.info(
            "issued SVID serial %x to %s/%s/%s (%s), renewal at %s",
            svid.serial,
            namespace,
            service,
            instance_id,
            reason,
            renew_at.isoformat(timespec="seconds"),
        )
        return _Issued(svid, svid.key_pem, ca_key_id, renew_at)

    async def _reissue(self, instances: Sequence[Instance], reason: str) -> None:
        def work() -> dict[Instance, _Issued]:
            return {i: self._load_or_issue(i, reason=reason) for i in instances}

        for instance, issued in (await asyncio.to_thread(work)).items():
            self._issued[instance] = issued
        for key, attached in tuple(self._attached.items()):
            if attached.instance in instances:
                self._publish(key)

    # -- the CA moved ---------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Follow the stored CA: re-issue every SVID the new signing CA did not sign, and
        republish every proxy's secrets when the bundle changed. Call it before publishing a
        revision's views, so that a proxy that reached the revision holds what it published."""
        await asyncio.to_thread(self.ca.refresh)
        signing = self.ca.authority.key_id
        stale = [i for i, issued in self._issued.items() if issued.ca_key_id != signing]
        if stale:
            await self._reissue(stale, "rotation")
        bundle = self.ca.bundle_pem()
        if bundle != self._bundle:
            self._bundle = bundle
            for key in tuple(self._attached):
                self._publish(key)

    # -- renewal and forgetting ------------------------------------------------------------------
    def start(self) -> None:
        self._bundle = self.ca.bundle_pem()
        self._task = asyncio.create_task(self._renewals(), name="interlock-svid-renewal")

    @property
    def running(self) -> bool:
        """Whether its loop runs (it ends only by :meth:`stop`)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _renewals(self) -> None:
        while True:
            self._forget_idle()
            now = self.ca.clock()
            live = {a.instance for a in self._attached.values()}
            due = [i for i in live if self._issued[i].renew_at <= now]
            if due:
                try:
                    await self._reissue(due, "renewal")
                except InterlockError as exc:
                    log.warning("SVID renewal failed (%s); retrying in 1 s", exc.message)
                    await asyncio.sleep(1.0)
                except Exception:
                    log.exception("SVID renewal failed; retrying in 1 s")
                    await asyncio.sleep(1.0)
                continue
            upcoming = [self._issued[i].renew_at for i in live]
            wait = 30.0
            if upcoming:
                wait = min(wait, max(0.0, (min(upcoming) - now).total_seconds()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _forget_idle(self) -> None:
        watched = self._cache.watched_keys()
        now = time.monotonic()
        for key, attached in tuple(self._attached.items()):
            if key in watched:
                attached.last_seen = now
            elif now - attached.last_seen > IDLE_SECONDS:
                del self._attached[key]
                self._cache.drop(key)
        live = {a.instance for a in self._attached.values()}
        for instance in tuple(self._issued):
            if instance not in live:
                del self._issued[instance]


def _stored_svid(stored: StoredSvid, trust_domain: str) -> Svid:
    from cryptography import x509

    from interlock.ca import SpiffeId

    cert = x509.load_pem_x509_certificate(stored.cert_pem)
    return Svid(
        spiffe_id=SpiffeId.for_service(trust_domain, stored.namespace, stored.service),
        cert_pem=stored.cert_pem,
        key_pem=None,
        chain_pem=stored.chain_pem,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
    )
