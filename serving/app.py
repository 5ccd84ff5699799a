"""The FastAPI application. Nothing is loaded at import: ``create_app`` builds it, ``lifespan`` loads state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from geo.catalogue import load_catalogue
from serving.routers import health, routes
from serving.settings import ServingSettings, get_settings
from serving.state import AppState
from serving.store import StoreError, load_release

log = logging.getLogger("routecast.serving")


def load_state(settings: ServingSettings) -> AppState:
    """Catalogue and current release; a missing or refused release leaves the API up but not ready."""
    catalogue = load_catalogue(settings.routes_dir)
    try:
        return AppState(catalogue=catalogue, release=load_release(settings.store_dir))
    except StoreError as exc:
        log.warning("no release loaded: %s", exc)
        return AppState(catalogue=catalogue, release=None, release_error=str(exc))


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: from the environment)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.routecast = load_state(settings or get_settings())
        yield

    app = FastAPI(
        title="routecast",
        version="0.1.0",
        description="Forecasts of migration flows along the routes toward Europe, from suppressed aggregates only.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(routes.router)
    return app
