"""The web dashboard's static assets: hand-written HTML, CSS and ES modules, shipped as package
data and served by the control plane at ``/ui`` (no build step, nothing fetched from elsewhere).

This module only says where the assets are and what they are; it imports nothing from
``interlock``.
"""

from __future__ import annotations

from pathlib import Path

#: The directory holding every asset (``index.html`` is the page).
ASSETS_DIR = Path(__file__).resolve().parent / "static"
INDEX = "index.html"

#: Media types by file extension; a file with another extension is not an asset.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def assets() -> dict[str, Path]:
    """Every servable asset by file name (the directory is flat; nothing else is served)."""
    return {
        path.name: path
        for path in sorted(ASSETS_DIR.iterdir())
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def media_type(name: str) -> str:
    """The ``Content-Type`` of asset ``name``."""
    return MEDIA_TYPES[Path(name).suffix]
