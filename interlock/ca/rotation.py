"""Root rotation as a pure state machine.

Replacing the CA without breaking a connection takes three steps; each may start only once
every proxy has ACKed what the previous one published::

    idle ──start──► bundle-published ──advance──► signing-with-new ──advance──► idle
    (old signs,      (old signs,                   (new signs,                  (new signs,
     bundle: old)     bundle: old + new)            bundle: old + new)           bundle: new)

- ``bundle-published``: proxies learn to trust the new root before any certificate it signs
  exists. It may be abandoned (:func:`abort`): no certificate chains to the new root yet.
- ``signing-with-new``: once every proxy ACKed the two-root bundle, new SVIDs come from the new
  CA; old SVIDs still verify against the old root.
- back to ``idle``: once every proxy ACKed an SVID of the new CA, the old root is dropped.

The glue decides what "ACKed everywhere" means (each proxy ACKed resources produced at
:attr:`RotationState.step` or later) and passes it to :func:`advance`, which refuses with
:class:`~interlock.model.errors.Conflict` otherwise. States are JSON-serializable and carry
certificates only: private keys are sealed and stored apart, found by ``key_id``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace

from cryptography import x509

from interlock.ca._errors import invalid
from interlock.ca.authority import CaCertificates, CertificateAuthority, Clock
from interlock.ca.profile import to_pem, unique
from interlock.ca.spiffe import validate_trust_domain
from interlock.model.errors import Conflict

FORMAT_VERSION = 1


class RotationPhase(enum.StrEnum):
    IDLE = "idle"
    BUNDLE_PUBLISHED = "bundle-published"
    SIGNING_WITH_NEW = "signing-with-new"


@dataclass(frozen=True)
class RotationState:
    """Where a trust domain's CA rotation stands.

    ``current`` is the CA in use before the rotation (the only one when idle); ``incoming`` the
    CA being rotated to (``None`` exactly when idle). ``step`` grows by one at every transition,
    so the glue can tell which proxies ACKed resources of the current step.
    """

    trust_domain: str
    phase: RotationPhase
    current: CaCertificates
    incoming: CaCertificates | None = None
    step: int = 0

    def __post_init__(self) -> None:
        if (self.phase is RotationPhase.IDLE) != (self.incoming is None):
            raise invalid(
                "rotation.incoming", "a rotation in progress has an incoming CA; idle has none"
            )
        if self.step < 0:
            raise invalid("rotation.step", "the step must not be negative")

    @classmethod
    def initial(cls, ca: CertificateAuthority) -> RotationState:
        """Idle, with ``ca`` signing and publishing its own bundle."""
        return cls(
            trust_domain=ca.trust_domain, phase=RotationPhase.IDLE, current=ca.certificates()
        )

    @property
    def signing(self) -> CaCertificates:
        """The CA that signs SVIDs in this phase."""
        if self.phase is RotationPhase.SIGNING_WITH_NEW:
            assert self.incoming is not None
            return self.incoming
        return self.current

    def bundle(self) -> tuple[x509.Certificate, ...]:
        """The trust bundle proxies get in this phase: old roots first, no repeats."""
        roots = self.current.roots()
        if self.incoming is not None:
            roots += self.incoming.roots()
        return unique(roots)

    def bundle_pem(self) -> bytes:
        return to_pem(self.bundle())

    def authority(self, signing_key_pem: bytes, *, clock: Clock) -> CertificateAuthority:
        """The CA to issue with now: :attr:`signing` with its unsealed key and this phase's
        bundle. Raises :class:`InvalidInput` if the key does not match :attr:`signing`."""
        ca = CertificateAuthority.from_certificates(
            self.signing, signing_key_pem, clock=clock, trust_domain=self.trust_domain
        )
        return ca.with_bundle(self.bundle())

    # --- JSON -----------------------------------------------------------------------------

    def to_json(self) -> str:
        """This state as JSON text (certificates only, no private key)."""
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "trust_domain": self.trust_domain,
                "phase": self.phase.value,
                "step": self.step,
                "current": _ca_to_json(self.current),
                "incoming": None if self.incoming is None else _ca_to_json(self.incoming),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> RotationState:
        """The state :meth:`to_json` wrote; raise :class:`InvalidInput` naming what is wrong."""
        try:
            data = json.loads(text)
        except ValueError:
            raise invalid("rotation", "the stored rotation state is not JSON") from None
        if not isinstance(data, dict):
            raise invalid("rotation", "the stored rotation state must be a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise invalid(
                "rotation.version",
                f"rotation state format {data.get('version')!r} is not supported "
                f"(expected {FORMAT_VERSION})",
            )
        trust_domain = data.get("trust_domain")
        if not isinstance(trust_domain, str):
            raise invalid("rotation.trust_domain", "the trust domain must be a string")
        validate_trust_domain(trust_domain, field="rotation.trust_domain")
        try:
            phase = RotationPhase(str(data.get("phase")))
        except ValueError:
            raise invalid(
                "rotation.phase",
                "the phase must be one of " + ", ".join(p.value for p in RotationPhase),
            ) from None
        step = data.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise invalid("rotation.step", "the step must be an integer")
        incoming = data.get("incoming")
        return cls(
            trust_domain=trust_domain,
            phase=phase,
            current=_ca_from_json(data.get("current"), "rotation.current"),
            incoming=None if incoming is None else _ca_from_json(incoming, "rotation.incoming"),
            step=step,
        )


def _ca_to_json(ca: CaCertificates) -> dict[str, str]:
    return {
        "cert_pem": ca.cert_pem.decode("ascii"),
        "chain_pem": ca.chain_pem.decode("ascii"),
        "roots_pem": ca.roots_pem.decode("ascii"),
    }


def _ca_from_json(value: object, field_path: str) -> CaCertificates:
    if not isinstance(value, dict):
        raise invalid(field_path, "expected an object with cert_pem, chain_pem and roots_pem")
    texts: dict[str, bytes] = {}
    for name in ("cert_pem", "chain_pem", "roots_pem"):
        text = value.get(name)
        if not isinstance(text, str) or not text.isascii():
            raise invalid(f"{field_path}.{name}", "expected PEM text")
        texts[name] = text.encode("ascii")
    for name, text in texts.items():
        if not text and name == "chain_pem":
            continue
        try:
            x509.load_pem_x509_certificates(text)
        except ValueError:
            raise invalid(f"{field_path}.{name}", "expected PEM certificates") from None
    return CaCertificates(**texts)


# --- transitions -----------------------------------------------------------------------------


def start(state: RotationState, new_ca: CertificateAuthority) -> RotationState:
    """Begin rotating to ``new_ca``: publish old + new roots, keep signing with the old CA.

    Refuses (:class:`Conflict`) while another rotation is in progress, and
    (:class:`InvalidInput`) a CA of another trust domain or the current CA itself.
    """
    if state.phase is not RotationPhase.IDLE:
        raise Conflict(
            f"a CA rotation is already in progress (phase {state.phase.value}); "
            "finish or abort it first"
        )
    if new_ca.trust_domain != state.trust_domain:
        raise invalid(
            "new_ca",
            f"the new CA is for trust domain {new_ca.trust_domain!r}, not {state.trust_domain!r}",
        )
    if new_ca.key_id == state.current.key_id:
        raise invalid("new_ca", "the new CA has the current CA's key; rotation needs a new key")
    return replace(
        state,
        phase=RotationPhase.BUNDLE_PUBLISHED,
        incoming=new_ca.certificates(),
        step=state.step + 1,
    )


def advance(state: RotationState, *, acked_everywhere: bool) -> RotationState:
    """The next step of the rotation, once every proxy ACKed the current one.

    ``acked_everywhere`` says every proxy ACKed what this phase published: the two-root bundle
    (in ``bundle-published``) or an SVID of the new CA (in ``signing-with-new``). Refuses with
    :class:`Conflict` when it is false, or when no rotation is in progress.
    """
    if state.phase is RotationPhase.IDLE:
        raise Conflict("no CA rotation is in progress")
    if not acked_everywhere:
        waiting_for = (
            "the bundle with the old and the new root"
            if state.phase is RotationPhase.BUNDLE_PUBLISHED
            else "a certificate signed by the new CA"
        )
        raise Conflict(
            f"the CA rotation cannot leave phase {state.phase.value}: "
            f"not every proxy has ACKed {waiting_for} yet"
        )
    if state.phase is RotationPhase.BUNDLE_PUBLISHED:
        return replace(state, phase=RotationPhase.SIGNING_WITH_NEW, step=state.step + 1)
    assert state.incoming is not None
    return RotationState(
        trust_domain=state.trust_domain,
        phase=RotationPhase.IDLE,
        current=state.incoming,
        incoming=None,
        step=state.step + 1,
    )


def abort(state: RotationState) -> RotationState:
    """Abandon a rotation that has only published the new root (nothing is signed by it yet).

    Refuses with :class:`Conflict` in any other phase: once the new CA signs, the only way out
    is forward (or a new rotation back to the old CA).
    """
    if state.phase is not RotationPhase.BUNDLE_PUBLISHED:
        raise Conflict(
            f"a CA rotation can be aborted only in phase bundle-published "
            f"(this one is {state.phase.value})"
        )
    return replace(state, phase=RotationPhase.IDLE, incoming=None, step=state.step + 1)
