"""The map page (``GET /map``), the API docs (``GET /docs``, Swagger UI) and their assets, all served from the
package: they work with no network at all, and no third party learns who reads them (ReDoc, CDN-only, is not served).

The page holds no data. It asks for a token and then reads the same ``/v1`` endpoints as any client, with that
token, so it shows exactly what the token may see. Its assets are vendored in ``serving/static/vendor`` from the npm
packages pinned in ``package-lock.json`` there (``make web-vendor`` refreshes them). The Content-Security-Policy lets
the page load and fetch from this server only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_PATH = "/map/static"
VENDOR_PATH = f"{STATIC_PATH}/vendor"

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


@router.get("/docs")
async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="routecast API",
        swagger_js_url=f"{VENDOR_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR_PATH}/favicon-32x32.png",
    )


def static_files() -> ASGIApp:
    """The page's own script and style and the vendored libraries, mounted at ``STATIC_PATH``; gzipped for clients
    that take it (the country outlines shrink from 756 kB to about a third)."""
    return GZipMiddleware(StaticFiles(directory=STATIC_DIR), minimum_size=1024)
