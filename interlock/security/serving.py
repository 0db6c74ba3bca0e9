"""The control plane's own TLS identity: the certificate its REST API and xDS port serve.

The control plane is a workload of its own mesh. Its certificate comes from the mesh CA, with
the URI SAN :func:`interlock.trust.control_plane_identity` (``spiffe://<trust-domain>/ns/
<root-namespace>/sa/interlock``; Envoy's ``interlock_xds`` cluster matches exactly that) and
DNS/IP SANs for every name clients use: ``--server-name`` values, ``localhost``, the loopback
addresses, this host's name, and the listen addresses that are not wildcards.

- It is issued at start (kept in memory only: each replica has its own key, never stored), and
  renewed at half its lifetime (the leaf lifetime), give or take the jitter. New handshakes
  get the new certificate; open connections and streams are untouched.
- When the CA that signs changes (the second step of a root rotation) it is re-issued at
  once by the new CA, so clients, which got the new root one step earlier, keep trusting it.
- The trust bundle clients verify it with is written to ``bundle_file`` (``<db>.ca.pem``)
  whenever it changes, and served by ``GET /v1/ca/bundle``, which a client can hold open
  until the bundle changes (:meth:`ServingIdentity.bundle_changed`).

gRPC asks :meth:`_grpc_fetch` before every new connection's handshake (from its own thread);
the API's :class:`ssl.SSLContext` is reloaded on the event loop. The private key reaches
OpenSSL through an anonymous in-memory file, never a file on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import random
import socket
import ssl
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import hashes

from interlock.ca import SpiffeId, Svid
from interlock.model.addresses import HostPort
from interlock.security.authority import CaRuntime
from interlock.security.metrics import SecurityMetrics
from interlock.trust import control_plane_identity, fingerprints

log = logging.getLogger("interlock.security.serving")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RENEW_JITTER = 0.03
_DNS_LABEL = "abcdefghijklmnopqrstuvwxyz0123456789-"


def server_name_error(name: str) -> str | None:
    """What is wrong with a ``--server-name`` (a DNS name or an IP address)."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    text = name.lower().rstrip(".")
    labels = text.split(".")
    if (
        not text
        or len(text) > 253
        or any(
            not label
            or len(label) > 63
            or label[0] == "-"
            or label[-1] == "-"
            or any(c not in _DNS_LABEL for c in label)
            for label in labels
        )
    ):
        return f"{name!r} is neither a DNS name nor an IP address"
    return None


@dataclass(frozen=True)
class ServerNames:
    """The DNS and IP SANs of the control plane's certificate."""

    dns: tuple[str, ...]
    ips: tuple[IPAddress, ...]

    @classmethod
    def of(cls, given: Sequence[str], listen: Sequence[HostPort]) -> ServerNames:
        """``given`` (``--server-name``, already checked), ``localhost`` and the loopback
        addresses, this host's name, and the non-wildcard listen hosts."""
        dns: list[str] = []
        ips: list[IPAddress] = []
        hostname = socket.gethostname()
        candidates = [*given, "localhost", "127.0.0.1", "::1", *(a.host for a in listen)]
        if hostname and server_name_error(hostname) is None:
            candidates.append(hostname)
        for name in candidates:
            try:
                ip = ipaddress.ip_address(name)
            except ValueError:
                low = name.lower().rstrip(".")
                if low not in dns:
                    dns.append(low)
                continue
            if not ip.is_unspecified and ip not in ips:
                ips.append(ip)
        return cls(tuple(dns), tuple(ips))


@dataclass(frozen=True)
class CaBundle:
    """The trust bundle as clients get it: PEM, a version (its SHA-256), root fingerprints."""

    pem: bytes
    version: str
    fingerprints: tuple[str, ...]

    @classmethod
    def of(cls, pem: bytes) -> CaBundle:
        return cls(pem, hashlib.sha256(pem).hexdigest(), tuple(fingerprints(pem)))


@dataclass(frozen=True)
class _Issued:
    svid: Svid
    key_pem: bytes = field(repr=False)
    ca_key_id: str
    renew_at: datetime
    generation: int = 0


class ServingIdentity:
    """The control plane's certificate (see the module docstring). ``start`` on the event
    loop that serves; thread-safe otherwise."""

    def __init__(
        self,
        ca: CaRuntime,
        root_namespace: str,
        names: ServerNames,
        *,
        lifetime: timedelta,
        bundle_file: Path | None = None,
        metrics: SecurityMetrics | None = None,
        jitter: float = RENEW_JITTER,
        rng: random.Random | None = None,
    ) -> None:
        self.ca = ca
        self.spiffe_id = control_plane_identity(ca.trust_domain, root_namespace)
        self.names = names
        self.lifetime = lifetime
        self.bundle_file = bundle_file
        self.metrics = metrics
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._issued: _Issued | None = None
        self._bundle = CaBundle.of(b"")
        self._generation = 0
        self._grpc_served = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: ssl.SSLContext | None = None
        self._context_generation = -1
        self._changed = asyncio.Event()
        self._closing = False
        self._renewal: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Issue the first certificate, write the bundle file, follow the CA from now on and
        renew before expiry. Raises OSError if the bundle file cannot be written."""
        self._loop = asyncio.get_running_loop()
        self._follow_ca(initial=True)
        self.ca.on_load(self._follow_ca)
        self._renewal = asyncio.create_task(self._renewals(), name="interlock-serving-renewal")

    def release(self) -> None:
        """Answer every held bundle request now (the server is stopping: it must not wait
        for them)."""
        self._closing = True
        self._changed.set()

    async def stop(self) -> None:
        self.release()
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal

    # -- what it is --------------------------------------------------------------------------
    @property
    def bundle(self) -> CaBundle:
        with self._lock:
            return self._bundle

    @property
    def anchor_fingerprint(self) -> str:
        """The SHA-256 fingerprint of the root the served certificate chains to: the one to
        pin with ``--ca-fingerprint``."""
        root = self.ca.state.signing.roots()[0]
        return root.fingerprint(hashes.SHA256()).hex()

    @property
    def certificate(self) -> Svid:
        """The certificate served to new connections."""
        with self._lock:
            assert self._issued is not None, "not started"
            return self._issued.svid

    async def bundle_changed(self, known: str, hold: float) -> CaBundle:
        """The bundle, once its version is not ``known`` (at once if it is already another
        one), or after ``hold`` seconds in any case."""
        deadline = asyncio.get_running_loop().time() + hold
        while True:
            bundle = self.bundle
            remaining = deadline - asyncio.get_running_loop().time()
            if bundle.version != known or remaining <= 0 or self._closing:
                return bundle
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # -- serving -----------------------------------------------------------------------------
    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials whose certificate follows this identity (checked before every
        new connection's handshake)."""
        with self._lock:
            initial = self._grpc_config()
        # (the stubs say the fetcher may not return None; gRPC documents None as "no change")
        return grpc.dynamic_ssl_server_credentials(initial, self._grpc_fetch)  # type: ignore[arg-type]

    def _grpc_config(self) -> grpc.ServerCertificateConfiguration:
        issued = self._issued
        assert issued is not None, "not started"
        self._grpc_served = issued.generation
        chain = issued.svid.certificate_chain_pem()
        return grpc.ssl_server_certificate_configuration([(issued.key_pem, chain)])

    def _grpc_fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            if self._issued is None or self._issued.generation == self._grpc_served:
                return None
            return self._grpc_config()

    def api_context(self) -> ssl.SSLContext:
        """The REST API's server context, reloaded in place when the certificate changes."""
        if self._context is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.set_alpn_protocols(["http/1.1"])
            self._context = context
            self._reload_context()
        return self._context

    def _reload_context(self) -> None:
        """On the event loop (never while OpenSSL may be starting a handshake elsewhere)."""
        with self._lock:
            issued = self._issued
        if self._context is None or issued is None:
            return
        if issued.generation != self._context_generation:
            _load_chain(self._context, issued.svid.certificate_chain_pem(), issued.key_pem)
            self._context_generation = issued.generation

    # -- issuing and following ---------------------------------------------------------------
    def _issue(self, reason: str) -> _Issued:
        """Blocking (crypto): a new certificate from the CA that signs now."""
        authority = self.ca.authority
        svid = authority.issue_svid(
            SpiffeId.parse(self.spiffe_id),
            lifetime=self.lifetime,
            dns_names=self.names.dns,
            ip_addresses=self.names.ips,
        )
        assert svid.key_pem is not None
        start = max(svid.not_before, min(self.ca.clock(), svid.not_after))
        renew_at = Svid(
            svid.spiffe_id, svid.cert_pem, None, b"", start, svid.not_after, svid.serial
        ).renew_at(self._rng, jitter=self._jitter)
        if self.metrics is not None:
            self.metrics.svids_issued.labels(f"control-plane-{reason}").inc()
        log.info(
            "control plane certificate serial %x (%s) for %s, DNS %s, IP %s; renewal at %s",
            svid.serial,
            reason,
            self.spiffe_id,
            ",".join(self.names.dns),
            ",".join(str(ip) for ip in self.names.ips),
            renew_at.isoformat(timespec="seconds"),
        )
        return _Issued(svid, svid.key_pem, authority.key_id, renew_at)

    def _install(self, issued: _Issued) -> None:
        """Serve ``issued`` to new connections from now on (call with the lock held)."""
        self._generation += 1
        self._issued = replace(issued, generation=self._generation)

    def _follow_ca(self, initial: bool = False) -> None:
        """The CA was (re)loaded: re-issue when another CA signs now; publish a new bundle."""
        signing = self.ca.authority.key_id
        bundle = CaBundle.of(self.ca.bundle_pem())
        with self._lock:
            stale = self._issued is None or self._issued.ca_key_id != signing
            if stale:
                self._install(self._issue("new" if initial else "rotation"))
            moved = bundle.version != self._bundle.version
            if moved:
                self._bundle = bundle
        if moved and self.bundle_file is not None:
            _write_public(self.bundle_file, bundle.pem)
        if stale or moved:
            self._on_loop(self._applied)

    def _on_loop(self, callback: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback()  # type: ignore[operator]
        else:
            loop.call_soon_threadsafe(callback)  # type: ignore[arg-type]

    def _applied(self) -> None:
        self._reload_context()
        self._changed.set()
        self._wake.set()

    async def _renewals(self) -> None:
        while True:
            with self._lock:
                issued = self._issued
            assert issued is not None
            wait = (issued.renew_at - self.ca.clock()).total_seconds()
            if wait <= 0:
                try:
                    renewed = await asyncio.to_thread(self._issue, "renewal")
                except Exception:
                    log.exception("control plane certificate renewal failed; retrying in 1 s")
                    await asyncio.sleep(1.0)
                    continue
                with self._lock:
                    if self._issued is issued:
                        self._install(renewed)
                self._applied()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(wait, 60.0))


def _load_chain(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """Load a certificate chain and its key into ``context`` without writing the key to a
    file on disk (an anonymous in-memory file where the platform has one)."""
    data = chain_pem + key_pem
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("interlock-serving", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="interlock-") as tmp:  # pragma: no cover
        path = Path(tmp) / "serving.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        context.load_cert_chain(str(path))


def _write_public(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once (readers see the old or the new file, never a
    part), readable by everyone: a trust bundle holds no secret."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)
    tmp.replace(path)


__all__ = ["CaBundle", "ServerNames", "ServingIdentity", "server_name_error"]
