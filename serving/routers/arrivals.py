"""Arrivals — where, when, how many: expected arrivals per crossing point per day for the next N days. Planner role.

A crossing point's expected arrivals are the density forecast of the segment it belongs to: distinct phones on the
segment's corridor per day. For a landing on a sea segment (a crossing takes less than a day) that is the number of
phones crossing toward it that day. Phones stand in for people: the unit is said in every answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from geo.catalogue import CrossingPoint, Route
from serving.deps import Planner
from serving.models import ArrivalDay, ArrivalsOut, ArrivalTotal, CrossingArrivals, ErrorOut
from serving.respond import CSV, JSON, ROLE_GUARDED, csv_bytes, model_bytes, send, table_responses, wants_csv
from serving.state import StateDep, require_release
from serving.store import BOUNDS, Release

router = APIRouter(tags=["arrivals"], responses=ROLE_GUARDED)

Days = Annotated[
    int,
    Query(
        ge=1,
        le=365,
        description=(
            "Days ahead, from the day after the release's as_of. A release that forecasts fewer days answers the days "
            "it has: `days` in the answer says how many."
        ),
    ),
]
Role = Annotated[
    str | None, Query(pattern="^(departure|border|landing|hub)$", description="Only crossing points of this role.")
]
CSV_COLUMNS = ["crossing_point_id", "name", "role", "route_id", "segment_id", "series_id", "ds", *BOUNDS]


def _arrivals(release: Release, points: list[tuple[Route, CrossingPoint]], days: int) -> list[CrossingArrivals]:
    out = []
    for route, cp in points:
        series = release.segment_series(route.id, cp.segment_id)
        if series is None:
            continue
        b = series.bounds
        daily = [ArrivalDay(ds=series.ds[i], **{k: max(b[k][i], 0.0) for k in BOUNDS}) for i in range(days)]
        total = ArrivalTotal(days=days, **{k: sum(getattr(d, k) for d in daily) for k in BOUNDS})
        out.append(
            CrossingArrivals(
                crossing_point_id=cp.id,
                name=cp.name,
                role=cp.role,
                route_id=route.id,
                segment_id=cp.segment_id,
                lat=cp.lat,
                lon=cp.lon,
                basis=f"density forecast of segment {cp.segment_id} (distinct phones on its corridor per day)",
                series_id=series.series_id,
                days=daily,
                total=total,
            )
        )
    return out


def _answer(request: Request, release: Release, points, days: int, *, single: str | None = None) -> Response:
    days = min(days, release.horizon("density"))  # what the release holds, as the Days parameter documents
    found = _arrivals(release, points, days) if days else []
    if single and not found:
        raise HTTPException(
            status_code=404, detail=f"no forecast for crossing point {single!r} in release {release.release_id}"
        )
    if wants_csv(request):
        rows = [{**c.model_dump(exclude={"days", "total"}), **d.model_dump()} for c in found for d in c.days]
        return send(request, csv_bytes(rows, CSV_COLUMNS), CSV, len(rows))
    out = ArrivalsOut(
        release_id=release.release_id,
        as_of=release.manifest.get("as_of"),
        days=days,
        unit="devices",
        crossing_points=found,
    )
    return send(request, model_bytes(out), JSON, sum(len(c.days) for c in found))


@router.get(
    "/v1/arrivals",
    response_model=ArrivalsOut,
    summary="Expected arrivals per crossing point per day, for every crossing point the token may see",
    responses={
        **table_responses(ArrivalsOut),
        404: {"model": ErrorOut, "description": "Unknown route, or one outside the token's scope."},
    },
)
async def arrivals(
    request: Request,
    state: StateDep,
    principal: Planner,
    days: Days = 7,
    route: Annotated[str | None, Query(max_length=100, description="Only this route's crossing points.")] = None,
    role: Role = "landing",
) -> Response:
    release = require_release(state)
    points = [
        (r, cp)
        for r in state.catalogue
        if principal.sees(r.id) and (route is None or r.id == route)
        for cp in r.crossing_points
        if role is None or cp.role == role
    ]
    if route is not None and not points and not any(r.id == route and principal.sees(r.id) for r in state.catalogue):
        raise HTTPException(status_code=404, detail=f"unknown route {route!r}; see GET /v1/routes")
    return _answer(request, release, points, days)


@router.get(
    "/v1/crossing-points/{crossing_point_id}/arrivals",
    response_model=ArrivalsOut,
    summary="Expected arrivals at one crossing point per day for the next N days",
    responses={
        **table_responses(ArrivalsOut),
        404: {"model": ErrorOut, "description": "Unknown crossing point, or one outside the token's scope."},
    },
)
async def crossing_point_arrivals(
    request: Request,
    state: StateDep,
    principal: Planner,
    crossing_point_id: Annotated[
        str, Path(max_length=100, examples=["example_landing"], description="A crossing point id from GET /v1/routes.")
    ],
    days: Days = 7,
) -> Response:
    points = [
        (r, cp)
        for r in state.catalogue
        if principal.sees(r.id)
        for cp in r.crossing_points
        if cp.id == crossing_point_id
    ]
    if not points:
        raise HTTPException(status_code=404, detail=f"unknown crossing point {crossing_point_id!r}; see GET /v1/routes")
    release = require_release(state)
    return _answer(request, release, points, days, single=crossing_point_id)
