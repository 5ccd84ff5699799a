"""Releases and reload. Admin role."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from serving.deps import Admin
from serving.models import ReleaseOut, ReleasesOut, ReloadOut
from serving.respond import CSV, JSON, ROLE_GUARDED, csv_bytes, model_bytes, send, table_responses, wants_csv
from serving.state import StateDep
from serving.store import list_releases

router = APIRouter(tags=["admin"], responses=ROLE_GUARDED)


@router.get(
    "/v1/releases",
    response_model=ReleasesOut,
    summary="Every release in the store, newest first",
    responses=table_responses(ReleasesOut),
)
async def releases(request: Request, state: StateDep, principal: Admin) -> Response:
    # A route-scoped admin is told the rows of its own routes only.
    listed = await asyncio.to_thread(list_releases, state.settings.store_dir, principal.routes)
    entries = [ReleaseOut(**e) for e in listed]
    if wants_csv(request):
        return send(
            request, csv_bytes((e.model_dump() for e in entries), list(ReleaseOut.model_fields)), CSV, len(entries)
        )
    serving = state.release.release_id if state.release else None
    return send(request, model_bytes(ReleasesOut(serving=serving, releases=entries)), JSON, len(entries))


@router.post(
    "/v1/admin/reload",
    response_model=ReloadOut,
    summary="Load the release store/CURRENT points at now (the API also looks by itself every few seconds)",
)
async def reload(request: Request, state: StateDep, principal: Admin) -> Response:
    changed = await asyncio.to_thread(state.reload)
    out = ReloadOut(
        release_id=state.release.release_id if state.release else None, changed=changed, detail=state.release_error
    )
    return send(request, model_bytes(out), JSON, 1)
