"""The FastAPI application. Nothing is loaded at import: ``create_app`` builds it, ``lifespan`` loads state.

Every ``/v1`` endpoint needs a bearer token (``routecast token create``); ``/healthz``, ``/readyz``, the OpenAPI
document and the map page (``/map``, which holds no data and asks for a token) stay open. Every request is written
to the audit log (``routecast audit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from geo.catalogue import load_catalogue
from serving.audit import AnonymousLimiter, AuditLog, AuditMiddleware
from serving.auth import signing_key
from serving.fastpath import AnswerCache
from serving.routers import admin, alerts, arrivals, dashboard, health, hexes, lineage, me, routes, scenarios
from serving.settings import ServingSettings, get_settings
from serving.state import AppState, watch_store
from serving.store import StoreError

log = logging.getLogger("routecast.serving")

DESCRIPTION = """Forecasts of migration flows along the routes toward Europe, from suppressed aggregates only.

Authenticate with `Authorization: Bearer <token>` (issued by `routecast token create --role … --routes …`).
Roles: **analyst** (routes, forecasts by route and segment, lineage), **planner** (adds hexes, arrivals, alerts,
what-if scenarios), **admin** (adds releases and reload). A token limited to some routes sees only those: any other
route answers 404, as if it did not exist. Tables come as CSV with `Accept: text/csv`. Every request is audited.
"""


def load_state(settings: ServingSettings) -> AppState:
    """Catalogue and current release; a missing or refused release leaves the API up but not ready."""
    state = AppState(settings=settings, catalogue=load_catalogue(settings.routes_dir))
    state.reload()
    return state


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: from the environment)."""
    # Files the API writes (audit log, anchor, keys) 0640 at most, folders 0750, also when it is started without the
    # routecast CLI (uvicorn serving.app:create_app --factory); a tighter umask is kept.
    os.umask(os.umask(0o027) | 0o027)
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A bad signing key (a secret shorter than 32 bytes) stops the start here, with its message.
        await asyncio.to_thread(signing_key, settings)
        state = await asyncio.to_thread(load_state, settings)
        app.state.routecast = state
        watcher = (
            asyncio.create_task(watch_store(state, settings.reload_interval_s)) if settings.reload_interval_s else None
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await asyncio.to_thread(audit_log.close)  # the anchor then holds every record written

    # /docs is served from the package's own assets (serving.routers.dashboard); FastAPI's would load a CDN.
    app = FastAPI(
        title="routecast",
        version="0.2.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    for module in (health, me, routes, hexes, arrivals, alerts, scenarios, lineage, admin, dashboard):
        app.include_router(module.router)
    app.mount(dashboard.STATIC_PATH, dashboard.static_files(), name="map-static")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "input": _short(e.get("input"))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{' '.join(e['loc'])}: {e['msg']} (got {e['input']!r})" for e in errors)
        return JSONResponse(status_code=422, content={"detail": detail or "invalid request", "errors": errors})

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        # A store that breaks under a running API (a file removed, a corrupt table) is a 503 that says so.
        return JSONResponse(status_code=503, content={"detail": f"store unavailable: {exc}"})

    # Starlette runs the last middleware added first: the audit log sees every request, the cache sits inside it.
    app.add_middleware(AnswerCache)
    audit_log = AuditLog.from_settings(settings)  # a weak or exposed audit key stops the start here, with its message
    anonymous_limit = AnonymousLimiter.from_settings(settings)
    app.add_middleware(
        AuditMiddleware, log=audit_log, fail_open=settings.audit_fail_open, anonymous_limit=anonymous_limit
    )
    return app


def _short(value: object, limit: int = 100) -> str | None:
    """An invalid input as text, cut short: error bodies echo what was sent, never a wall of it."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"
