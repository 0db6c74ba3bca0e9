"""X.509-SVIDs as issued: the leaf, its chain, its key, and when to renew it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from interlock.ca.spiffe import SpiffeId

RENEW_JITTER = 0.1
"""Default renewal jitter, as a fraction of the certificate's lifetime."""
MAX_RENEW_MARGIN = timedelta(minutes=5)


class RandomSource(Protocol):
    """What :meth:`Svid.renew_at` needs of a random generator (``random.Random`` fits)."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class Svid:
    """An issued X.509-SVID.

    ``cert_pem`` is the leaf; ``chain_pem`` the intermediates a peer needs to reach a root of
    the bundle (``b""`` when a root signed it); ``key_pem`` the private key when the CA
    generated it (``None`` when the caller gave a public key). Treat ``key_pem`` as a secret:
    it is left out of ``repr``.
    """

    spiffe_id: SpiffeId
    cert_pem: bytes
    key_pem: bytes | None = field(repr=False)
    chain_pem: bytes
    not_before: datetime
    not_after: datetime
    serial: int

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    def certificate_chain_pem(self) -> bytes:
        """Leaf then intermediates: what a proxy presents (Envoy's ``certificate_chain``)."""
        return self.cert_pem + self.chain_pem

    def renew_at(self, rng: RandomSource, *, jitter: float = RENEW_JITTER) -> datetime:
        """When to replace this SVID: half-way through its lifetime, give or take ``jitter``.

        The offset is drawn uniformly from ``rng``. Whatever ``rng`` returns, the result is
        never before ``not_before`` nor later than ``not_after`` minus a safety margin (a tenth
        of the lifetime, at most five minutes). ``jitter`` must be in ``[0, 0.4]``.
        """
        if not 0 <= jitter <= 0.4:
            raise ValueError("jitter must be between 0 and 0.4 of the lifetime")
        lifetime = self.lifetime
        offset = lifetime * (0.5 + rng.uniform(-jitter, jitter))
        margin = min(MAX_RENEW_MARGIN, lifetime / 10)
        return max(self.not_before, min(self.not_before + offset, self.not_after - margin))
