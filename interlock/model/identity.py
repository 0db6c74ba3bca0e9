"""Workload identity: SPIFFE IDs of services, and the tokens that prove a proxy speaks for one.

Each service's identity is ``spiffe://<trust-domain>/ns/<namespace>/sa/<service>``. A proxy
proves which identity (and which instance) it speaks for with a *proxy token*: a random
bearer secret the API issues for one registered instance. The control plane stores only the
token's SHA-256, so the store never holds anything that could be replayed.

This module is pure (stdlib only); the CA library (:mod:`interlock.ca`) validates SPIFFE IDs in
full, the store keeps tokens, the API issues them and the xDS glue checks them.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass

DEFAULT_TRUST_DOMAIN = "interlock.local"
DEFAULT_ROOT_NAMESPACE = "interlock-system"
"""Where mesh-wide policies live (Istio's root namespace, ``istio-system`` there)."""

#: The secret (SDS) names every proxy may ask for: its own X.509-SVID and the trust bundle, as
#: Istio names them. Any other name gets nothing.
SVID_SECRET = "default"
TRUST_BUNDLE_SECRET = "ROOTCA"
PROXY_SECRETS = frozenset({SVID_SECRET, TRUST_BUNDLE_SECRET})

TOKEN_BYTES = 32
"""A token carries 256 random bits."""


def service_spiffe_id(trust_domain: str, namespace: str, service: str) -> str:
    """``spiffe://<trust-domain>/ns/<namespace>/sa/<service>`` (the parts are validated where
    they enter: trust domain at start-up, names at the API)."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service}"


@dataclass(frozen=True)
class MeshIdentity:
    """What the translator needs to know about identities: the mesh's trust domain, and the
    root namespace whose selector-less policies apply to the whole mesh.

    Translating with one turns on mutual TLS between sidecars (per PeerAuthentication);
    translating without one (``None``) gives plain-text configuration.
    """

    trust_domain: str = DEFAULT_TRUST_DOMAIN
    root_namespace: str = DEFAULT_ROOT_NAMESPACE

    def spiffe_id(self, namespace: str, service: str) -> str:
        return service_spiffe_id(self.trust_domain, namespace, service)

    @property
    def prefix(self) -> str:
        """``spiffe://<trust-domain>/``: what every identity of this mesh starts with."""
        return f"spiffe://{self.trust_domain}/"


class TokenRole(enum.StrEnum):
    """What a token may do. ``admin``: the REST API, reads and writes. ``proxy``: open xDS
    streams as one instance of one service, nothing else. ``registration``: register, read and
    remove the instances of one service, and fetch their proxy tokens (what a sidecar needs)."""

    ADMIN = "admin"
    PROXY = "proxy"
    REGISTRATION = "registration"


@dataclass(frozen=True)
class Token:
    """A stored token's public record (never the token itself).

    ``token_id`` is a public handle (shown, revoked by); ``service``, ``namespace`` and
    ``instance_id`` bind a proxy token to one instance (empty for an admin token).
    ``revoked_at`` is set once the token is revoked (epoch seconds).
    """

    token_id: str
    role: TokenRole
    service: str = ""
    namespace: str = ""
    instance_id: str = ""
    created_at: float = 0.0
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


TOKEN_PREFIXES = {TokenRole.ADMIN: "ila_", TokenRole.PROXY: "ilp_", TokenRole.REGISTRATION: "ilr_"}


def new_token(role: TokenRole) -> tuple[str, str, str]:
    """A fresh token: ``(token_id, token, token_hash)``. The token starts with ``ila_`` (admin),
    ``ilp_`` (proxy) or ``ilr_`` (registration), so a leaked one is recognisable; only its hash
    is stored."""
    token = TOKEN_PREFIXES[role] + secrets.token_urlsafe(TOKEN_BYTES)
    return secrets.token_hex(6), token, token_hash(token)


def token_hash(token: str) -> str:
    """The SHA-256 of ``token`` in hex: what the store keeps and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
