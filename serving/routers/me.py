"""Who a token names: subject, role, route scope and expiry. Any role; never cached (the answer names the caller)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serving.deps import Analyst
from serving.models import MeOut
from serving.respond import GUARDED, JSON, model_bytes, send

router = APIRouter(prefix="/v1", tags=["me"], responses=GUARDED)


@router.get("/me", response_model=MeOut, summary="The caller: subject, role, route scope, expiry")
async def me(request: Request, principal: Analyst) -> Response:
    """What the token may see, so that a client (the map page) asks only for that: the routes themselves come from
    ``GET /v1/routes``; a planner or admin may also ask for hexes, arrivals and alerts."""
    out = MeOut(
        subject=principal.subject,
        role=principal.role,
        routes=sorted(principal.routes) if principal.routes is not None else None,
        expires=principal.expires,
    )
    return send(request, model_bytes(out), JSON, 1)
