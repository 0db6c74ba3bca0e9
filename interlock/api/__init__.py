"""REST API v1: a FastAPI app over the store, with problem+json errors.

:func:`create_app` builds it; routers live in :mod:`interlock.api.routers`.
"""

from interlock.api.factory import create_app

__all__ = ["create_app"]
