"""``GET /v1/ca`` and ``POST /v1/ca/rotation``: the mesh's CA and its three-step root rotation.

A rotation moves through the phases of :mod:`interlock.ca.rotation`; each step is one mesh
revision, and the next step is refused (409) until every connected proxy has ACKed the revision
of the current one (``?wait=SECONDS`` waits for that first):

1. ``start``: publish a bundle with the old and the new root (the old CA still signs). The new
   CA is a fresh self-signed root, or the operator's (``ca_cert``/``ca_key``/``ca_chain`` in
   the body: PEM text; the key is sealed at once and never shown).
2. ``advance`` (from bundle-published): sign with the new CA; every proxy gets a new SVID.
3. ``advance`` (from signing-with-new): drop the old root.

``abort`` abandons a rotation that has only published the bundle. "Every proxy" means the
proxies connected to the replica that answers; see docs/security.md for several replicas.

``GET /v1/ca/bundle`` (open: a bundle holds no secret) is what clients trust the control
plane's own certificate with; ``?wait=S&known=VERSION`` holds the answer until the bundle is
another than ``VERSION`` (a root rotation moved it) or ``S`` seconds pass, which is how
sidecars keep the bundle their Envoy reads current.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from fastapi import Query, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from interlock.api.context import ApiContext, ContextDep
from interlock.api.routers.proxies import current_views
from interlock.api.routing import RootNamespaceDep, StoreDep, api_router, errors_at
from interlock.api.status_views import RevisionRollout, rollout
from interlock.ca import CaCertificates, CertificateAuthority, Clock, RotationState
from interlock.ca import rotation as steps
from interlock.ca.profile import to_pem as profile_pem
from interlock.ca.storage import seal_ca_key
from interlock.model.errors import Conflict, FieldError, InvalidInput, Unavailable
from interlock.store import Store
from interlock.trust import control_plane_identity

router = api_router(tags=["ca"])

MAX_WAIT = 300.0
MAX_BUNDLE_WAIT = 60.0


class ServedBundle(Protocol):
    """One state of the trust bundle (see :class:`BundleSource`)."""

    @property
    def pem(self) -> bytes: ...
    @property
    def version(self) -> str: ...


class BundleSource(Protocol):
    """Where the API reads the bundle the server's certificate verifies with, and waits for
    it to change (the server's TLS identity)."""

    @property
    def bundle(self) -> ServedBundle: ...

    async def bundle_changed(self, known: str, hold: float) -> ServedBundle: ...


@dataclass(frozen=True)
class CaAdmin:
    """What the CA endpoints need besides the store: the KEK (to seal a new CA's key), the
    trust domain, a clock and the leaf lifetime (shown)."""

    kek: bytes = field(repr=False)
    trust_domain: str
    clock: Clock
    leaf_lifetime_seconds: float


class CertificateView(BaseModel):
    model_config = ConfigDict(frozen=True)
    subject: str
    serial: str
    not_before: str
    not_after: str
    sha256: str


class CaPart(BaseModel):
    """One CA of the rotation: its signing certificate and the roots it brings."""

    model_config = ConfigDict(frozen=True)
    key_id: str
    certificate: CertificateView
    roots: list[CertificateView]


class CaView(BaseModel):
    model_config = ConfigDict(frozen=True)
    trust_domain: str
    phase: str
    step: int
    revision: int
    signing_key_id: str
    current: CaPart
    incoming: CaPart | None
    bundle: list[CertificateView]
    leaf_lifetime_seconds: float
    rollout: RevisionRollout
    next: str


class BundleView(BaseModel):
    """The trust bundle: what clients verify the control plane (and peers) with."""

    model_config = ConfigDict(frozen=True)
    trust_domain: str
    control_plane_identity: str
    version: str
    roots: list[CertificateView]
    pem: str


class RotationRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    action: Literal["start", "advance", "abort"]
    ca_cert: str | None = None
    ca_key: str | None = None
    ca_chain: str | None = None

    def __repr__(self) -> str:  # never show a key, even in a debugger
        return f"RotationRequest(action={self.action!r})"


def _cert(cert: x509.Certificate) -> CertificateView:
    return CertificateView(
        subject=cert.subject.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _part(ca: CaCertificates) -> CaPart:
    return CaPart(
        key_id=ca.key_id,
        certificate=_cert(x509.load_pem_x509_certificate(ca.cert_pem)),
        roots=[_cert(c) for c in ca.roots()],
    )


_NEXT = {
    steps.RotationPhase.IDLE: "start: publish a bundle with the current and a new root",
    steps.RotationPhase.BUNDLE_PUBLISHED: "advance: sign with the new CA (or abort)",
    steps.RotationPhase.SIGNING_WITH_NEW: "advance: drop the old root",
}


def _admin(context: ApiContext) -> CaAdmin:
    admin = context.ca_admin
    if admin is None:
        raise Unavailable("this server has no CA")
    return admin


def _load(store: Store) -> tuple[RotationState, int]:
    stored = store.security.ca()
    if stored is None:
        raise Unavailable("the CA is not created yet; is the server starting?")
    return RotationState.from_json(stored.state), stored.revision


async def _view(context: ApiContext, admin: CaAdmin) -> CaView:
    state, revision = await run_in_threadpool(_load, context.store)
    return CaView(
        trust_domain=state.trust_domain,
        phase=state.phase.value,
        step=state.step,
        revision=revision,
        signing_key_id=state.signing.key_id,
        current=_part(state.current),
        incoming=None if state.incoming is None else _part(state.incoming),
        bundle=[_cert(c) for c in state.bundle()],
        leaf_lifetime_seconds=admin.leaf_lifetime_seconds,
        rollout=rollout(await current_views(context), revision),
        next=_NEXT[state.phase],
    )


@router.get("/v1/ca")
async def get_ca(context: ContextDep) -> CaView:
    """The CA: rotation phase and step, the signing CA, the trust bundle, and how far the
    revision that published the current step has rolled out."""
    return await _view(context, _admin(context))


@router.get("/v1/ca/bundle")
async def get_bundle(
    context: ContextDep,
    store: StoreDep,
    root_namespace: RootNamespaceDep,
    response: Response,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_BUNDLE_WAIT, description="seconds to hold the answer (with known)"),
    ] = 0.0,
    known: Annotated[
        str,
        Query(max_length=64, pattern="^[0-9a-f]*$", description="a bundle version seen before"),
    ] = "",
) -> BundleView:
    """The CA bundle (PEM and its roots) and the control plane's SPIFFE ID. Open to anyone:
    where a client gets it from is what makes it trustworthy (docs/security.md)."""
    source = context.bundle
    if source is not None:
        served = await source.bundle_changed(known, wait) if known else source.bundle
        pem, version = served.pem, served.version
    state, _ = await run_in_threadpool(_load, store)
    if source is None:
        pem = profile_pem(state.bundle())
        version = hashlib.sha256(pem).hexdigest()
    response.headers["ETag"] = f'"{version}"'
    response.headers["Cache-Control"] = "no-cache"
    return BundleView(
        trust_domain=state.trust_domain,
        control_plane_identity=control_plane_identity(state.trust_domain, root_namespace),
        version=version,
        roots=[_cert(c) for c in x509.load_pem_x509_certificates(pem)] if pem else [],
        pem=pem.decode("ascii"),
    )


def _new_ca(body: RotationRequest, admin: CaAdmin) -> CertificateAuthority:
    if body.ca_cert is None and body.ca_key is None:
        return CertificateAuthority.create_root(admin.trust_domain, admin.clock)
    if body.ca_cert is None or body.ca_key is None:
        raise InvalidInput(
            "give both ca_cert and ca_key (or neither, for a new self-signed root)",
            errors=(FieldError("ca_key" if body.ca_key is None else "ca_cert", "required"),),
        )
    return CertificateAuthority.from_pem(
        body.ca_cert.encode(),
        body.ca_key.encode(),
        body.ca_chain.encode() if body.ca_chain else None,
        clock=admin.clock,
        trust_domain=admin.trust_domain,
    )


# The CA's fields as the request carries them.
_BODY_FIELDS = {
    "ca.cert": "ca_cert",
    "ca.key": "ca_key",
    "ca.chain": "ca_chain",
    "new_ca": "ca_cert",
}


@contextlib.contextmanager
def _blame_action() -> Iterator[None]:
    """A step refused in this phase (409) names ``action``: the request's one field at fault."""
    try:
        yield
    except Conflict as exc:
        if exc.errors:
            raise
        raise Conflict(exc.message, errors=(FieldError("action", exc.message),)) from None


@router.post("/v1/ca/rotation")
async def rotate(
    context: ContextDep,
    store: StoreDep,
    body: RotationRequest,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT, description="seconds to wait for the current step's ACKs"),
    ] = 0.0,
) -> CaView:
    """Take one rotation step (see the module docstring); answers the CA after it."""
    admin = _admin(context)
    state, revision = await run_in_threadpool(_load, store)
    keys: dict[str, bytes] = {}
    if body.action == "start":
        with errors_at(**_BODY_FIELDS):
            new_ca = await run_in_threadpool(_new_ca, body, admin)
        with errors_at(**_BODY_FIELDS), _blame_action():
            after = steps.start(state, new_ca)
        key_id, sealed = seal_ca_key(new_ca, admin.kek)
        keys[key_id] = sealed
    elif body.action == "abort":
        with _blame_action():
            after = steps.abort(state)
    else:
        lagging = await _lagging(context, revision, wait)
        try:
            after = steps.advance(state, acked_everywhere=not lagging)
        except Conflict as exc:
            if lagging:
                shown = ", ".join(sorted(lagging)[:10])
                raise Conflict(
                    f"{exc.message} (revision {revision}); waiting for: {shown}",
                    errors=(FieldError("action", "the current step is not ACKed everywhere"),),
                ) from None
            raise Conflict(exc.message, errors=(FieldError("action", exc.message),)) from None
    with _blame_action():
        await run_in_threadpool(
            lambda: store.security.advance_ca(
                expected_step=state.step, state=after.to_json(), step=after.step, keys=keys
            )
        )
    return await _view(context, admin)


async def _lagging(context: ApiContext, revision: int, wait: float) -> set[str]:
    """Node ids of the connected proxies that have not ACKed ``revision`` (after waiting up
    to ``wait`` seconds for them)."""
    status = context.status
    if status is None:
        return set()
    if wait > 0:
        try:
            async with asyncio.timeout(wait):
                await status.wait_for_revision(revision)
        except TimeoutError:
            pass
    return {p.node_id for p in status.lagging(revision)}
