"""Liveness and readiness: open, no token needed."""

from __future__ import annotations

from fastapi import APIRouter, Response

from serving.models import Health, Ready
from serving.state import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready, "description": "No release loaded."}})
async def readyz(state: StateDep, response: Response) -> Ready:
    """Ready when a release is served; ``detail`` says why not, or why a newer release was refused."""
    release = state.release
    if release is None:
        response.status_code = 503
        return Ready(ready=False, release_id=None, detail=state.release_error)
    return Ready(ready=True, release_id=release.release_id, detail=state.release_error)
