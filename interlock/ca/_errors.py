"""The one way this package builds its errors: an ``InvalidInput`` naming one field."""

from __future__ import annotations

from interlock.model.errors import FieldError, InvalidInput


def invalid(field_path: str, message: str) -> InvalidInput:
    """``InvalidInput`` whose message is ``"<field>: <message>"`` and whose ``errors`` name it."""
    return InvalidInput(f"{field_path}: {message}", errors=(FieldError(field_path, message),))
