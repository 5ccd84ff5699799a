"""What the API holds in memory: the route catalogue and the current release, loaded in ``lifespan``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from geo.catalogue import Catalogue
from serving.store import Release


@dataclass
class AppState:
    catalogue: Catalogue
    release: Release | None
    release_error: str | None = None


def get_state(request: Request) -> AppState:
    return request.app.state.routecast


StateDep = Annotated[AppState, Depends(get_state)]


def require_release(state: StateDep) -> Release:
    """The current release, or 503 when none could be loaded."""
    if state.release is None:
        raise HTTPException(status_code=503, detail=f"no forecasts available: {state.release_error}")
    return state.release


ReleaseDep = Annotated[Release, Depends(require_release)]
