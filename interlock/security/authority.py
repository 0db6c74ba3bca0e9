"""The CA at run time: created (or taken from the operator) on first start, read back on every
start and whenever a rotation step is written, by any replica.

The stored state is the three-step rotation of :mod:`interlock.ca.rotation` (certificates only)
plus each CA's private key sealed under the KEK. :class:`CaRuntime` unseals the key of the CA
that signs in the current phase and keeps the phase's trust bundle; it never writes a key or a
token anywhere but the store, sealed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from interlock.ca import (
    DEFAULT_LEAF_LIFETIME,
    CertificateAuthority,
    Clock,
    RotationState,
    SpiffeId,
    Svid,
)
from interlock.ca.storage import seal_ca_key, unseal_ca_key
from interlock.model.errors import InterlockError, InvalidInput
from interlock.store.security import SecurityStore, StoredCa

log = logging.getLogger("interlock.security")


def utc_now() -> datetime:
    return datetime.now(UTC)


class CaStartError(Exception):
    """The CA cannot be set up; the message says why and what to do (never a key)."""


@dataclass(frozen=True)
class OperatorCa:
    """A root or intermediate CA the operator supplies (``--ca-cert``, ``--ca-key``, and
    ``--ca-chain`` for an intermediate)."""

    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes | None = None

    @classmethod
    def from_files(cls, cert: Path, key: Path, chain: Path | None = None) -> OperatorCa:
        try:
            return cls(cert.read_bytes(), key.read_bytes(), chain.read_bytes() if chain else None)
        except OSError as exc:
            raise CaStartError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None

    def authority(self, trust_domain: str, clock: Clock) -> CertificateAuthority:
        return CertificateAuthority.from_pem(
            self.cert_pem, self.key_pem, self.chain_pem, clock=clock, trust_domain=trust_domain
        )


class CaRuntime:
    """The signing CA and trust bundle of the stored rotation phase. Thread-safe reads."""

    def __init__(
        self,
        store: SecurityStore,
        kek: bytes,
        trust_domain: str,
        *,
        leaf_lifetime: timedelta = DEFAULT_LEAF_LIFETIME,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._kek = kek
        self.trust_domain = trust_domain
        self.leaf_lifetime = leaf_lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._state: RotationState | None = None
        self._authority: CertificateAuthority | None = None
        self._stored: StoredCa | None = None
        self._listeners: list[Callable[[], None]] = []

    def on_load(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from whichever thread loaded it) each time a stored state is
        loaded: at start and after every rotation step."""
        self._listeners.append(listener)

    # -- start and refresh (blocking: call from a thread) ------------------------------------
    def start(self, operator: OperatorCa | None, say: Callable[[str], None]) -> None:
        """Load the stored CA, creating it on first start (self-signed, or ``operator``'s).

        Raises :class:`CaStartError` when the stored CA is of another trust domain, when the
        KEK does not open its key, or when ``operator`` names another CA than the stored one.
        """
        try:
            stored = self._store.ca()
            if stored is None:
                if operator is not None:
                    ca = operator.authority(self.trust_domain, self.clock)
                    what = "the CA given by --ca-cert"
                else:
                    ca = CertificateAuthority.create_root(self.trust_domain, self.clock)
                    what = "a new self-signed root CA"
                key_id, sealed = seal_ca_key(ca, self._kek)
                state = RotationState.initial(ca)
                if self._store.create_ca(self.trust_domain, state.to_json(), {key_id: sealed}):
                    say(
                        f"CA: stored {what} for trust domain {self.trust_domain} "
                        f"(key id {key_id[:16]}), its key sealed under the KEK"
                    )
                stored = self._store.ca()
                assert stored is not None
            if stored.trust_domain != self.trust_domain:
                raise CaStartError(
                    f"the stored CA is for trust domain {stored.trust_domain!r}, not "
                    f"{self.trust_domain!r} (--trust-domain); a trust domain cannot change"
                )
            self._load(stored)
            if operator is not None:
                given = operator.authority(self.trust_domain, self.clock).key_id
                state = self.state
                known = {state.current.key_id} | (
                    {state.incoming.key_id} if state.incoming is not None else set()
                )
                if given not in known:
                    raise CaStartError(
                        "the CA given by --ca-cert is not the stored one; to replace the CA "
                        "without breaking connections, rotate to it: interlock ca rotate "
                        "--ca-cert FILE --ca-key FILE"
                    )
        except InterlockError as exc:
            raise CaStartError(f"the CA cannot be loaded: {exc.message}") from None

    def refresh(self) -> bool:
        """Read the stored state again; True (and the new signing CA loaded) when it moved."""
        stored = self._store.ca()
        if stored is None or stored == self._stored:
            return False
        self._load(stored)
        return True

    def _load(self, stored: StoredCa) -> None:
        state = RotationState.from_json(stored.state)
        key_id = state.signing.key_id
        key_pem = unseal_ca_key(self._store.sealed_key(key_id), self._kek, key_id)
        authority = state.authority(key_pem, clock=self.clock)
        with self._lock:
            self._state = state
            self._authority = authority
            self._stored = stored
        for listener in tuple(self._listeners):
            listener()
        log.info(
            "CA: phase %s (step %d), signing key %s, %d root(s) in the bundle",
            state.phase.value,
            state.step,
            key_id[:16],
            len(authority.roots),
        )

    # -- what it is ------------------------------------------------------------------------
    @property
    def state(self) -> RotationState:
        with self._lock:
            if self._state is None:
                raise RuntimeError("the CA is not loaded yet")
            return self._state

    @property
    def authority(self) -> CertificateAuthority:
        with self._lock:
            if self._authority is None:
                raise RuntimeError("the CA is not loaded yet")
            return self._authority

    @property
    def revision(self) -> int:
        """The mesh revision that wrote the loaded state."""
        with self._lock:
            return 0 if self._stored is None else self._stored.revision

    def bundle_pem(self) -> bytes:
        return self.authority.bundle_pem()

    def issue(self, namespace: str, service: str) -> tuple[Svid, str]:
        """A new SVID for ``namespace/service`` (with a new key) and the signing key's id."""
        authority = self.authority
        spiffe_id = SpiffeId.for_service(self.trust_domain, namespace, service)
        lifetime = self.leaf_lifetime
        if lifetime <= timedelta(0):
            raise InvalidInput("the leaf lifetime must be positive")
        return authority.issue_svid(spiffe_id, lifetime=lifetime), authority.key_id
