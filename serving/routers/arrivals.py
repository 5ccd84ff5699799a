"""Arrivals — where, when, how many: expected arrivals per crossing point per day for the next N days. Planner role.

A crossing point's expected arrivals are, when the release holds one, the forecast of its people series
(``people/point:<route>/<point>``): the measurement model's estimate of people crossing there per day, unit people.
Otherwise (older releases, deployments without official counts) they are the density forecast of the segment it
belongs to: distinct phones on the segment's corridor per day, unit devices, a proxy and never a count of people.
Every point says its unit and basis; the answer says the unit they share. A point's total over the days asked is
the published total of its series when the release has one for that many days (7 and 28 for people series), with
the interval of the total itself; otherwise the sums of the daily values and bounds, and ``interval`` says which.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from contracts.series import DENSITY_SOURCE, PEOPLE_SOURCE
from geo.catalogue import CrossingPoint, Route
from serving.deps import Planner
from serving.models import ArrivalDay, ArrivalsOut, ArrivalTotal, CrossingArrivals, ErrorOut, Unit
from serving.respond import CSV, JSON, ROLE_GUARDED, csv_bytes, model_bytes, send, table_responses, wants_csv
from serving.state import StateDep, require_release
from serving.store import BOUNDS, Release, Series, unit_of

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
CSV_COLUMNS = ["crossing_point_id", "name", "role", "route_id", "segment_id", "series_id", "unit", "ds", *BOUNDS]

Basis = tuple[Route, CrossingPoint, Series]


def arrivals_series(release: Release, route: Route, cp: CrossingPoint) -> Series | None:
    """What a crossing point's arrivals are read from: its people series if published, else its segment's density
    series (devices), else nothing."""
    return release.point_series(route.id, cp.id) or release.segment_series(route.id, cp.segment_id, DENSITY_SOURCE)


def _basis_text(release: Release, cp: CrossingPoint, series: Series) -> str:
    if series.source == PEOPLE_SOURCE:
        model = release.people_model
        named = f"measurement model {model.model_id}" if model else "a measurement model the release does not name"
        return f"people crossing at {cp.name} per day, estimated by {named} (series {series.series_id})"
    return f"density forecast of segment {cp.segment_id} (distinct phones on its corridor per day, not people)"


def _crossing_arrivals(
    release: Release, route: Route, cp: CrossingPoint, series: Series, days: int
) -> CrossingArrivals:
    b = series.bounds
    daily = [ArrivalDay(ds=series.ds[i], **{k: max(b[k][i], 0.0) for k in BOUNDS}) for i in range(days)]
    published = release.series_total(series.series_id, days, series.ds[0]) if days else None
    if published is not None:  # the interval of the total itself, calibrated on past totals of the same forecast
        total = ArrivalTotal(days=days, interval="total", **{k: getattr(published, k) for k in BOUNDS})
    else:
        total = ArrivalTotal(
            days=days, interval="sum_of_daily_bounds", **{k: sum(getattr(d, k) for d in daily) for k in BOUNDS}
        )
    return CrossingArrivals(
        crossing_point_id=cp.id,
        name=cp.name,
        role=cp.role,
        route_id=route.id,
        segment_id=cp.segment_id,
        lat=cp.lat,
        lon=cp.lon,
        unit=unit_of(series.source),
        basis=_basis_text(release, cp, series),
        series_id=series.series_id,
        days=daily,
        total=total,
    )


def _answer_unit(release: Release, found: list[CrossingArrivals]) -> Unit | None:
    """The unit every point shares (None when they differ); for no point, people if the release holds people series."""
    units = {c.unit for c in found}
    if not units:
        return "people" if release.horizon(PEOPLE_SOURCE) else "devices"
    return units.pop() if len(units) == 1 else None


def _answer(request: Request, release: Release, points, days: int, *, single: str | None = None) -> Response:
    based: list[Basis] = [(r, cp, s) for r, cp in points if (s := arrivals_series(release, r, cp)) is not None]
    # What the release holds of every source answered, as the Days parameter documents.
    sources = {s.source for _, _, s in based} or {DENSITY_SOURCE}
    days = min([days, *(release.horizon(source) for source in sources)])
    found = [_crossing_arrivals(release, r, cp, s, days) for r, cp, s in based] if days else []
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
        unit=_answer_unit(release, found),
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
