"""``GET /ui``: the web dashboard — static HTML, CSS and ES modules from :mod:`interlock.ui`
that read the same public API as everyone else (``/v1/graph``, ``/v1/services``,
``/v1/proxies``, ``/v1/resources``). Nothing here computes data; the page polls the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from fastapi.responses import FileResponse, RedirectResponse

from interlock import ui
from interlock.api.routing import api_router
from interlock.model.errors import FieldError, NotFound

router = api_router(tags=["ui"], responses={}, include_in_schema=False)

#: Only the shipped files, by name: a request can name nothing else (no path traversal).
ASSETS = ui.assets()

#: The page loads its own modules, styles and the API of the same origin, and nothing else.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time: a new control-plane version ships new assets under the same names.
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise NotFound(
            f"the dashboard has no asset {name!r}",
            errors=(FieldError("path.asset", "no such asset"),),
        )
    return FileResponse(path, media_type=ui.media_type(name), headers=SECURITY_HEADERS)


@router.api_route("/ui", methods=["GET", "HEAD"])
def ui_redirect() -> RedirectResponse:
    """``/ui`` → ``/ui/``, so the page's relative links resolve under ``/ui/``."""
    return RedirectResponse("ui/", status_code=308)


@router.api_route("/ui/", methods=["GET", "HEAD"])
def ui_index() -> FileResponse:
    """The dashboard page."""
    return _asset(ui.INDEX)


@router.api_route("/ui/{asset}", methods=["GET", "HEAD"])
def ui_asset(asset: Annotated[str, Path(description="an asset's file name")]) -> FileResponse:
    """One of the page's modules, styles or icons."""
    return _asset(asset)
