"""Paths from an operator-supplied CA certificate to a root, and the checks they must pass.

Errors are :class:`~interlock.model.errors.InvalidInput` at ``ca.cert`` (the signing
certificate) or ``ca.chain`` (what was given above it), saying which certificate is wrong and
why.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509

from interlock.ca import profile
from interlock.ca._errors import invalid
from interlock.ca.spiffe import SpiffeId

MAX_CHAIN_LENGTH = 8


def check_ca_identity(cert: x509.Certificate, trust_domain: str) -> None:
    """A SPIFFE ID in ``cert``, if any, names ``trust_domain`` and has no path."""
    for uri in profile.uri_sans(cert):
        if not uri.startswith("spiffe:"):
            continue
        spiffe_id = SpiffeId.parse(uri, field="ca.cert")
        if spiffe_id.trust_domain != trust_domain:
            raise invalid(
                "ca.cert",
                f"the CA certificate names trust domain {spiffe_id.trust_domain!r}, "
                f"but the mesh's trust domain is {trust_domain!r}",
            )
        if not spiffe_id.is_trust_domain:
            raise invalid(
                "ca.cert", f"a CA certificate's SPIFFE ID must not have a path ({spiffe_id})"
            )


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def build_path(
    cert: x509.Certificate,
    intermediates: list[x509.Certificate],
    roots: list[x509.Certificate],
) -> list[x509.Certificate]:
    """``[cert, intermediates..., root]``, each signed by the next; raise when there is none."""
    path = [cert]
    while len(path) <= MAX_CHAIN_LENGTH:
        current = path[-1]
        for root in roots:
            if profile.is_issued_by(current, root):
                return [*path, root]
        parents = [c for c in intermediates if c not in path and profile.is_issued_by(current, c)]
        if not parents:
            raise invalid(
                "ca.chain",
                f"the CA certificate does not chain to the given roots: nothing given signed "
                f"{_describe(current)!r} (issuer {current.issuer.rfc4514_string()!r})",
            )
        path.append(parents[0])
    raise invalid("ca.chain", f"the chain is longer than {MAX_CHAIN_LENGTH} certificates")


def check_path(path: list[x509.Certificate], now: datetime, *, tolerance: timedelta) -> None:
    """Every certificate of ``path`` (signing CA first, root last) may sign at ``now``.

    A certificate that starts less than ``tolerance`` after ``now`` is accepted (clock skew).
    """
    for depth, cert in enumerate(path):
        where = "ca.cert" if depth == 0 else "ca.chain"
        what = "the CA certificate" if depth == 0 else f"chain certificate {_describe(cert)!r}"
        if problem := profile.ca_problem(cert):
            raise invalid(where, f"{what} cannot sign certificates: {problem}")
        if cert.not_valid_after_utc <= now:
            raise invalid(where, f"{what} expired at {cert.not_valid_after_utc.isoformat()}")
        if cert.not_valid_before_utc > now + tolerance:
            raise invalid(
                where, f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}"
            )
        limit = profile.path_length(cert)
        # `depth` CA certificates sit below this one on the path (leaves do not count).
        if limit is not None and depth > limit:
            raise invalid(
                where, f"{what} allows {limit} intermediate(s) below it, the path has {depth}"
            )
