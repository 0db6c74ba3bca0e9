"""The JWT-shaped form of a proxy token, for gRPC's xDS clients.

gRPC's ``jwt_token_file`` call credentials (gRFC A97) send a file's contents as
``authorization: Bearer <contents>``, but first read it as a JWT: three base64url parts, the
second a JSON object with an ``exp`` claim (gRPC caches the token until then, re-reads the
file after, and never sends an expired one). A proxy token (``ilp_…``) is opaque, so a gRPC
client sends it wrapped in an *envelope*:

- header ``{"alg": "none", "typ": "JWT"}``, an empty signature;
- payload ``{"iss": "interlock", "sub": "<namespace>/<service>/<instance>", "iat": …,
  "exp": …, "token": "ilp_…"}``.

The envelope is not a signed credential: its only secret is the proxy token inside, which the
server authenticates exactly as it does a bare one (its hash, its instance, its revocation).
``exp`` is when gRPC re-reads the file; the server refuses an envelope past it, so a file is
good until then and no longer. The envelope is as secret as the token: never log either.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

ISSUER = "interlock"
_HEADER = {"alg": "none", "typ": "JWT"}


def _b64(data: Mapping[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(part: str) -> object:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


@dataclass(frozen=True)
class Envelope:
    """What an envelope says (``token`` is secret: kept out of ``repr``)."""

    subject: str
    issued_at: int
    expires_at: int
    token: str = field(repr=False)


class EnvelopeError(ValueError):
    """The value has the shape of a JWT but is not a valid proxy-token envelope (the message
    never contains the value)."""


def wrap(token: str, subject: str, issued_at: int, lifetime: int) -> str:
    """The envelope of proxy ``token`` for ``subject``, valid ``lifetime`` seconds from
    ``issued_at`` (epoch seconds)."""
    if lifetime <= 0:
        raise ValueError("the envelope's lifetime must be positive")
    payload = {
        "iss": ISSUER,
        "sub": subject,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "token": token,
    }
    return f"{_b64(_HEADER)}.{_b64(payload)}."


def looks_wrapped(value: str) -> bool:
    """Whether a bearer value has the shape of a JWT (and so must be an envelope)."""
    return value.count(".") == 2 and value.startswith("eyJ")


def unwrap(value: str, now: float) -> Envelope:
    """The envelope ``value`` read at ``now`` (epoch seconds); :class:`EnvelopeError` when it
    is malformed, not Interlock's, or expired."""
    header, payload, _signature = value.split(".", 2)
    try:
        head = _unb64(header)
        body = _unb64(payload)
    except (binascii.Error, UnicodeError, ValueError):
        raise EnvelopeError("the bearer token is not a readable JWT") from None
    if not isinstance(head, dict) or not isinstance(body, dict):
        raise EnvelopeError("the bearer token is not a readable JWT")
    if head.get("alg") != "none" or body.get("iss") != ISSUER:
        raise EnvelopeError("the bearer JWT is not an Interlock proxy-token envelope")
    token, exp, iat = body.get("token"), body.get("exp"), body.get("iat", 0)
    if not isinstance(token, str) or not token or not isinstance(exp, int | float):
        raise EnvelopeError("the proxy-token envelope has no token or no exp claim")
    if now >= exp:
        raise EnvelopeError(
            "the proxy-token envelope expired; write a new one (interlock bootstrap --grpc)"
        )
    subject = body.get("sub")
    return Envelope(
        subject=subject if isinstance(subject, str) else "",
        issued_at=int(iat) if isinstance(iat, int | float) else 0,
        expires_at=int(exp),
        token=token,
    )
