"""Routes and their forecasts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from geo.catalogue import Route, RouteNotFound
from serving.models import (
    CrossingPointOut,
    ForecastPoint,
    Level,
    RouteForecastOut,
    RouteOut,
    RoutesOut,
    SegmentOut,
    SeriesForecast,
)
from serving.state import ReleaseDep, StateDep

router = APIRouter(prefix="/v1/routes", tags=["routes"])

# The request bound; the release's own horizon (usually 28 days) is checked per request.
MAX_HORIZON = 365
DENSITY = "density"


def _route_out(route: Route, sources: list[str]) -> RouteOut:
    return RouteOut(
        id=route.id,
        name=route.name,
        segments=[SegmentOut(id=s.id, name=s.name, order=s.order, mode=s.mode) for s in route.segments],
        crossing_points=[
            CrossingPointOut(id=c.id, name=c.name, role=c.role, segment_id=c.segment_id, lat=c.lat, lon=c.lon)
            for c in route.crossing_points
        ],
        has_forecast=DENSITY in sources,
        sources=sources,
    )


@router.get("", response_model=RoutesOut, summary="The route catalogue")
async def list_routes(state: StateDep) -> RoutesOut:
    sources = state.release.sources_by_route() if state.release else {}
    return RoutesOut(
        release_id=state.release.release_id if state.release else None,
        routes=[_route_out(r, sources.get(r.id, [])) for r in state.catalogue],
    )


@router.get("/{route_id}/forecast", response_model=RouteForecastOut, summary="Daily forecast for a route")
async def route_forecast(
    state: StateDep,
    release: ReleaseDep,
    route_id: Annotated[str, Path(examples=["central_mediterranean"])],
    horizon: Annotated[int, Query(ge=1, le=MAX_HORIZON, description="Days ahead.")] = 14,
    level: Annotated[Level, Query(description="route: one series; segment: one per segment.")] = "route",
    source: Annotated[
        str, Query(description="density (default), or an official source such as frontex, uk-channel, iom-dtm.")
    ] = DENSITY,
) -> RouteForecastOut:
    try:
        state.catalogue.route(route_id)
    except RouteNotFound:
        raise HTTPException(status_code=404, detail=f"unknown route {route_id!r}; see GET /v1/routes") from None
    rows = release.forecasts
    rows = rows[(rows["route_id"] == route_id) & (rows["level"] == level) & (rows["source"] == source)]
    if rows.empty:
        raise HTTPException(
            status_code=404,
            detail=f"no {level}-level {source} forecast for route {route_id!r} in release {release.release_id}",
        )
    available = release.horizon(source)
    if horizon > available:
        raise HTTPException(
            status_code=422,
            detail=f"horizon {horizon} is beyond release {release.release_id}'s {available} periods for {source}",
        )
    series = []
    for sid, group in rows.groupby("series_id", sort=True):
        head = group.sort_values("ds").head(horizon)
        first = head.iloc[0]
        series.append(
            SeriesForecast(
                series_id=str(sid),
                level=level,
                source=source,
                freq=first["freq"],
                route_id=route_id,
                segment_id=first["segment_id"] if isinstance(first["segment_id"], str) else None,
                model=first["model"],
                run_id=first["run_id"],
                model_version=first["model_version"],
                release_id=first["release_id"],
                forecast=[ForecastPoint(**r) for r in head[list(ForecastPoint.model_fields)].to_dict("records")],
            )
        )
    return RouteForecastOut(
        route_id=route_id,
        level=level,
        source=source,
        horizon=horizon,
        release_id=release.release_id,
        as_of=release.manifest.get("as_of"),
        series=series,
    )
