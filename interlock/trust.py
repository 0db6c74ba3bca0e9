"""How a client trusts the control plane: the mesh's CA bundle, from a file or pinned by a
root's SHA-256 fingerprint.

The control plane serves its REST API and xDS over TLS with a certificate from the mesh's own
CA (URI SAN :func:`control_plane_identity`, plus DNS/IP SANs for its names and addresses). A
client holds the CA bundle (PEM) and verifies the server's chain and host name against it:

- ``--ca-file FILE``: the bundle as the server wrote it (``<db>.ca.pem``) or as fetched before;
- ``--ca-fingerprint sha256:HEX`` (the kubeadm discovery-hash model): fetch the bundle once
  without verification, take from it the root with that fingerprint, connect again trusting
  only that root (so the server must prove it holds a certificate under it), and use the
  bundle served over that verified connection. A bundle that holds no such root, or a server
  whose certificate does not chain to it, is refused.

The bundle is public (``GET /v1/ca/bundle`` needs no token); what matters is where it comes
from. This module is client code: it imports nothing of the server.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BUNDLE_PATH = "/v1/ca/bundle"
CONTROL_PLANE_SERVICE = "interlock"
"""The service account part of the control plane's SPIFFE ID (in the root namespace)."""

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\s.+?\s-----END CERTIFICATE-----", re.DOTALL)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class TrustError(Exception):
    """The control plane cannot be trusted as asked; the message says why and what to do."""


class BundleUnreachable(TrustError):
    """The bundle could not be fetched at all (the server is down or not there yet)."""


def control_plane_identity(trust_domain: str, root_namespace: str) -> str:
    """The SPIFFE ID in the control plane's certificate: like a workload's, in the root
    namespace, with the service account ``interlock`` (reserved: no service may take it)."""
    return f"spiffe://{trust_domain}/ns/{root_namespace}/sa/{CONTROL_PLANE_SERVICE}"


def parse_fingerprint(text: str) -> str:
    """``sha256:HEX`` (colons between bytes allowed, any case) → 64 lower-case hex digits;
    ValueError saying what is expected otherwise."""
    algorithm, sep, digest = text.strip().partition(":")
    digest = digest.replace(":", "").lower()
    if not sep or algorithm.lower() != "sha256" or not _HEX64.match(digest):
        raise ValueError(
            f"expected sha256:<64 hex digits> (the root fingerprint the server prints), "
            f"got {text!r}"
        )
    return digest


def certificates(pem: bytes) -> list[bytes]:
    """The PEM certificates in ``pem``, each as its own PEM block."""
    return [m.group(0) + b"\n" for m in _PEM_CERT.finditer(pem)]


def fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint (hex) of one PEM certificate's DER encoding."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    return hashlib.sha256(der).hexdigest()


def fingerprints(pem: bytes) -> list[str]:
    return [fingerprint(c) for c in certificates(pem)]


def client_context(bundle_pem: bytes) -> ssl.SSLContext:
    """A client TLS context that trusts exactly ``bundle_pem`` and checks host names."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.load_verify_locations(cadata=bundle_pem.decode("ascii"))
    return context


@dataclass(frozen=True)
class Trust:
    """How to trust the control plane: a bundle file, a pinned root fingerprint, or a bundle
    already in memory. Empty: the system's trust store (which will not know the mesh's CA)."""

    ca_file: Path | None = None
    fingerprint: str | None = None
    bundle_pem: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, ca_file: Path | None, ca_fingerprint: str | None) -> Trust:
        """From the CLI options; ValueError for a malformed fingerprint. ``--ca-file`` wins
        when both are given (a file is what a fingerprint bootstraps to)."""
        pinned = parse_fingerprint(ca_fingerprint) if ca_fingerprint else None
        return cls(ca_file=ca_file, fingerprint=pinned)

    @property
    def given(self) -> bool:
        return bool(self.ca_file or self.fingerprint or self.bundle_pem)

    def bundle(self, base_url: str, timeout: float = 5.0) -> bytes | None:
        """The bundle to verify ``base_url`` with (fetched and checked for a fingerprint);
        None for the system trust store. Raises :class:`TrustError`."""
        if self.bundle_pem is not None:
            return self.bundle_pem
        if self.ca_file is not None:
            return read_bundle(self.ca_file)
        if self.fingerprint is not None:
            return pinned_bundle(base_url, self.fingerprint, timeout)
        return None


def read_bundle(path: Path, what: str = "--ca-file") -> bytes:
    """The certificates of a PEM bundle file; TrustError naming ``what`` otherwise."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise TrustError(f"{what} {path}: {exc.strerror or exc}") from None
    if not certificates(pem):
        raise TrustError(f"{what} {path}: no PEM certificate in it")
    return pem


def fetch_bundle(
    base_url: str, verify: ssl.SSLContext | bool, timeout: float = 5.0, **params: Any
) -> dict[str, Any]:
    """``GET /v1/ca/bundle`` (JSON: ``pem``, ``version``, ``trust_domain``,
    ``control_plane_identity``, ``roots``). Raises httpx errors as they are."""
    wait = float(params.get("wait", 0) or 0)
    with httpx.Client(base_url=base_url, verify=verify, timeout=timeout + wait) as http:
        response = http.get(BUNDLE_PATH, params=params or None)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
    return body


def pinned_bundle(base_url: str, pinned: str, timeout: float = 5.0) -> bytes:
    """The bundle served by ``base_url``, accepted only if a root in it has the fingerprint
    ``pinned`` and the server's certificate chains to that root (see the module docstring)."""
    if not base_url.startswith("https://"):
        raise TrustError("--ca-fingerprint is for an https:// control plane")
    shown = f"sha256:{pinned}"
    try:
        offered = fetch_bundle(base_url, False, timeout)
    except httpx.TransportError as exc:
        raise BundleUnreachable(f"cannot fetch the CA bundle from {base_url}: {exc}") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise TrustError(f"cannot fetch the CA bundle from {base_url}: {exc}") from None
    roots = {fingerprint(c): c for c in certificates(str(offered.get("pem", "")).encode())}
    if pinned not in roots:
        held = ", ".join(f"sha256:{f}" for f in roots) or "none"
        raise TrustError(
            f"the control plane at {base_url} offers no root with fingerprint {shown} "
            f"(its bundle holds {held}); check the fingerprint, or give --ca-file"
        )
    try:
        verified = fetch_bundle(base_url, client_context(roots[pinned]), timeout)
    except httpx.ConnectError as exc:
        raise TrustError(
            f"the control plane at {base_url} does not prove a certificate under the root "
            f"{shown} ({_reason(exc)}); during a root rotation its certificate may come "
            "from the new root: use that root's fingerprint or --ca-file"
        ) from None
    except (httpx.HTTPError, ValueError) as exc:
        raise TrustError(f"cannot fetch the CA bundle from {base_url}: {exc}") from None
    pem = str(verified.get("pem", "")).encode()
    if pinned not in fingerprints(pem):
        raise TrustError(f"the control plane's bundle no longer holds the root {shown}")
    return pem


def _reason(exc: BaseException) -> str:
    """The innermost cause of a TLS failure, short (e.g. CERTIFICATE_VERIFY_FAILED...)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return cause.verify_message or str(cause)
    return str(cause or exc)


def verification_failure(exc: BaseException) -> str | None:
    """If ``exc`` (an httpx error) failed on the server's certificate, why; else None."""
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or str(cause)
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


__all__ = [
    "BUNDLE_PATH",
    "CONTROL_PLANE_SERVICE",
    "BundleUnreachable",
    "Trust",
    "TrustError",
    "certificates",
    "client_context",
    "control_plane_identity",
    "fetch_bundle",
    "fingerprint",
    "fingerprints",
    "parse_fingerprint",
    "pinned_bundle",
    "read_bundle",
    "verification_failure",
]
