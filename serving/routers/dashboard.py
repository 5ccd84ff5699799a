"""The map page (``GET /map``) and its assets, all served from the package: it works with no network at all.

The page holds no data. It asks for a token and then reads the same ``/v1`` endpoints as any client, with that
token, so it shows exactly what the token may see. Its assets are vendored in ``serving/static/vendor`` from the npm
packages pinned in ``package-lock.json`` there (``make web-vendor`` refreshes them). The Content-Security-Policy lets
the page load and fetch from this server only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_PATH = "/map/static"

# Leaflet and Chart.js set element styles from script, hence 'unsafe-inline' for styles only; no inline script.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/map")
async def map_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "map.html", media_type="text/html", headers=PAGE_HEADERS)


def static_files() -> ASGIApp:
    """The page's own script and style and the vendored libraries, mounted at ``STATIC_PATH``; gzipped for clients
    that take it (the country outlines shrink from 756 kB to about a third)."""
    return GZipMiddleware(StaticFiles(directory=STATIC_DIR), minimum_size=1024)
