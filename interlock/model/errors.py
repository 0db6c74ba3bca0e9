"""The one exception tree of Interlock.

Every error a user can cause is an :class:`InterlockError`. The API maps each subclass to an
RFC 9457 problem+json response (its ``status`` and ``title``); the CLI prints its message and
exits non-zero. Anything that is not an ``InterlockError`` is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One wrong field: ``field`` is a dotted path into the input (``labels.version``)."""

    field: str
    message: str


class InterlockError(Exception):
    """Base of every error a user can cause."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, message: str, *, errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class InvalidInput(InterlockError):
    """Input that is well-formed but not acceptable; ``errors`` names the fields."""

    status = 422
    title = "Invalid input"
    slug = "invalid-input"


class Forbidden(InterlockError):
    """The caller may not do this, whatever the input: e.g. a registration token acting on a
    service outside its namespace. ``errors`` names what limits it."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(InterlockError):
    """The named thing does not exist."""

    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(InterlockError):
    """The request contradicts what is stored (e.g. deleting a service that has instances)."""

    status = 409
    title = "Conflict"
    slug = "conflict"


class Unavailable(InterlockError):
    """A dependency (the database) cannot be reached; the request changed nothing."""

    status = 503
    title = "Service unavailable"
    slug = "unavailable"
