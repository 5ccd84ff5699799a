"""The route catalogue (JSON, GeoJSON), forecasts by route and segment with history for charts, and forecast totals
over the next windows with how likely a total above a threshold is. Analyst role.

A route outside the token's scope answers exactly like a route that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from contracts.published import exceedance
from geo.catalogue import Route, route_to_geojson
from serving.deps import NOT_FOUND, Analyst, ReleaseId, RouteId, visible_route
from serving.models import (
    CellDays,
    CrossingPointOut,
    Exceedance,
    ForecastPoint,
    HistoryPoint,
    IntervalLevel,
    Level,
    RouteForecastOut,
    RouteGeoJSON,
    RouteOut,
    RoutesOut,
    RouteTotalsOut,
    SegmentOut,
    SeriesForecast,
    WindowTotal,
)
from serving.respond import (
    CSV,
    GEOJSON,
    GUARDED,
    JSON,
    csv_bytes,
    model_bytes,
    send,
    table_responses,
    wants_csv,
)
from serving.state import StateDep, chosen_release
from serving.store import Release, Series, SeriesTotals, unit_of

router = APIRouter(prefix="/v1/routes", tags=["routes"], responses=GUARDED)

MAX_HISTORY = 1830  # five years of days; weekly and monthly series hold fewer periods
DENSITY = "density"


def _route_out(route: Route, sources: list[str], cell_days: CellDays | None) -> RouteOut:
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
        cell_days=cell_days,
    )


@router.get("", response_model=RoutesOut, summary="The route catalogue", responses=table_responses(RoutesOut))
async def list_routes(request: Request, state: StateDep, principal: Analyst) -> Response:
    """The routes the token may see, with their segments, crossing points and the sources forecast for them."""
    release = state.release
    sources = release.sources_by_route() if release else {}
    days = release.cell_days if release else {}
    as_of = release.as_of if release else None
    routes = [
        _route_out(
            r,
            sources.get(r.id, []),
            CellDays(first=days[r.id][0], as_of=as_of, last=days[r.id][1]) if r.id in days and as_of else None,
        )
        for r in state.catalogue
        if principal.sees(r.id)
    ]
    if wants_csv(request):
        rows = [
            {
                "route_id": r.id,
                "name": r.name,
                "segments": len(r.segments),
                "crossing_points": len(r.crossing_points),
                "has_forecast": r.has_forecast,
                "sources": ";".join(r.sources),
            }
            for r in routes
        ]
        body = csv_bytes(rows, ["route_id", "name", "segments", "crossing_points", "has_forecast", "sources"])
        return send(request, body, CSV, len(rows))
    out = RoutesOut(
        release_id=release.release_id if release else None,
        as_of=as_of.isoformat() if as_of else None,
        cell_resolutions=release.cell_resolutions if release else [],
        routes=routes,
    )
    return send(request, model_bytes(out), JSON, len(routes))


@router.get(
    "/{route_id}",
    response_model=RouteGeoJSON,
    summary="One route as GeoJSON: segment lines and crossing points",
    responses={**NOT_FOUND, 200: {"content": {GEOJSON: {"schema": {"$ref": "#/components/schemas/RouteGeoJSON"}}}}},
)
async def route_geojson(request: Request, state: StateDep, principal: Analyst, route_id: RouteId) -> Response:
    route = visible_route(state, principal, route_id)
    body = model_bytes(RouteGeoJSON.model_validate(route_to_geojson(route)))
    return send(request, body, GEOJSON, len(route.segments) + len(route.crossing_points))


FORECAST_CSV_COLUMNS = [
    "series_id",
    "level",
    "source",
    "unit",
    "route_id",
    "segment_id",
    "kind",
    "ds",
    "y",
    "yhat",
    "lo80",
    "hi80",
    "lo95",
    "hi95",
    "model",
    "run_id",
    "model_version",
    "release_id",
]


def series_out(
    s: Series, horizon: int, intervals: tuple[int, ...], history: int, point: str = "mean"
) -> SeriesForecast:
    b = s.bounds
    points = [
        ForecastPoint(
            ds=s.ds[i],
            yhat=b["yhat"][i],
            lo80=b["lo80"][i] if 80 in intervals else None,
            hi80=b["hi80"][i] if 80 in intervals else None,
            lo95=b["lo95"][i] if 95 in intervals else None,
            hi95=b["hi95"][i] if 95 in intervals else None,
        )
        for i in range(min(horizon, len(s.ds)))
    ]
    past = [HistoryPoint(ds=d, y=y) for d, y in zip(s.history_ds[-history:], s.history_y[-history:], strict=True)]
    return SeriesForecast(
        series_id=s.series_id,
        level=s.level,  # type: ignore[arg-type]
        source=s.source,
        unit=unit_of(s.source),
        freq=s.freq,  # type: ignore[arg-type]
        route_id=s.route_id or "",
        segment_id=s.segment_id,
        model=s.model,
        point=point,  # type: ignore[arg-type]
        run_id=s.run_id,
        model_version=s.model_version,
        release_id=s.release_id,
        history=past if history else [],
        forecast=points,
    )


def forecast_csv_rows(series: list[SeriesForecast]) -> list[dict]:
    rows = []
    for s in series:
        head = s.model_dump(exclude={"history", "forecast"})
        rows.extend({**head, "kind": "history", **p.model_dump()} for p in s.history)
        rows.extend({**head, "kind": "forecast", **p.model_dump()} for p in s.forecast)
    return rows


def _forecast(
    release: Release,
    route_id: str,
    level: str,
    source: str | None,
    segment: str | None,
    horizon: int | None,
    intervals: tuple[int, ...],
    history: int,
    csv: bool,
) -> tuple[bytes, str, int]:
    source = source or release.default_source(route_id, level, segment)
    chosen = release.by_route.get((route_id, level, source), [])
    if segment is not None:
        chosen = [s for s in chosen if s.segment_id == segment]
    if not chosen:
        what = f"segment {segment!r} of route {route_id!r}" if segment else f"route {route_id!r}"
        raise HTTPException(
            status_code=404, detail=f"no {level}-level {source} forecast for {what} in release {release.release_id}"
        )
    available = release.horizon(source)
    steps = available if horizon is None else min(horizon, available)  # as the horizon parameter documents
    series = [series_out(s, steps, intervals, history, release.point_of(s.source, s.freq)) for s in chosen]
    if csv:
        rows = forecast_csv_rows(series)
        return csv_bytes(rows, FORECAST_CSV_COLUMNS), CSV, len(rows)
    out = RouteForecastOut(
        route_id=route_id,
        level=level,  # type: ignore[arg-type]
        source=source,
        unit=unit_of(source),
        horizon=steps,
        intervals=list(intervals),  # type: ignore[arg-type]
        release_id=release.release_id,
        as_of=release.manifest.get("as_of"),
        series=series,
    )
    return model_bytes(out), JSON, sum(len(s.forecast) + len(s.history) for s in series)


@router.get(
    "/{route_id}/forecast",
    response_model=RouteForecastOut,
    summary="Forecast for a route or its segments, with history for charts",
    responses={**table_responses(RouteForecastOut), **NOT_FOUND},
)
async def route_forecast(
    request: Request,
    state: StateDep,
    principal: Analyst,
    route_id: RouteId,
    horizon: Annotated[
        int | None,
        Query(
            ge=1,
            le=365,
            description=(
                "Periods ahead in the series' frequency; default, or more than the release holds: all it holds "
                "(`horizon` in the answer says how many)."
            ),
        ),
    ] = None,
    level: Annotated[Level, Query(description="route: one series; segment: one per segment.")] = "route",
    segment: Annotated[
        str | None, Query(max_length=100, description="Only this segment (implies level=segment).")
    ] = None,
    source: Annotated[
        str | None,
        Query(
            max_length=40,
            description=(
                "Default: people (the measurement model's estimate, unit people) when the release holds people "
                "series for this route at this level (and segment), else density. density: the phone signal (unit "
                "devices, a diagnostic); or an official source such as frontex, uk-channel, iom-dtm (unit people). "
                "The answer says its source and unit."
            ),
        ),
    ] = None,
    intervals: Annotated[
        list[IntervalLevel], Query(description="Interval levels to return (repeat the parameter); default both.")
    ] = [IntervalLevel.p80, IntervalLevel.p95],  # noqa: B006 - FastAPI copies query defaults
    history: Annotated[
        int, Query(ge=0, le=MAX_HISTORY, description="Observed periods to return before the forecast.")
    ] = 0,
    release: ReleaseId = None,
) -> Response:
    visible_route(state, principal, route_id)
    chosen = await chosen_release(state, release)
    if segment is not None:
        level = "segment"
    levels = tuple(sorted({int(i) for i in intervals}))
    csv = wants_csv(request)
    body, media, rows = _forecast(chosen, route_id, level, source, segment, horizon, levels, history, csv)
    return send(request, body, media, rows)


TOTALS_CSV_COLUMNS = [
    "series_id",
    "route_id",
    "segment_id",
    "source",
    "unit",
    "release_id",
    "window",
    "freq",
    "start",
    "end",
    "yhat",
    "lo80",
    "hi80",
    "lo95",
    "hi95",
    "n_scores",
    "model",
    "threshold",
    "probability",
    "bound",
]


def totals_out(found: SeriesTotals, exceeds: float | None) -> list[WindowTotal]:
    """The windows of one series' totals, each with the probability of exceeding ``exceeds`` when it is given."""
    out = []
    for t in found.totals:
        above = None
        if exceeds is not None:
            probability, bound = exceedance(t.quantiles, exceeds)
            above = Exceedance(threshold=exceeds, probability=probability, bound=bound)  # type: ignore[arg-type]
        out.append(
            WindowTotal(
                window=t.window,
                freq=found.freq,  # type: ignore[arg-type]
                start=t.start,
                end=t.end,
                yhat=t.yhat,
                lo80=t.lo80,
                hi80=t.hi80,
                lo95=t.lo95,
                hi95=t.hi95,
                n_scores=t.n_scores,
                model=t.model,
                exceedance=above,
            )
        )
    return out


def _totals(
    release: Release, route_id: str, source: str | None, segment_id: str | None, exceeds: float | None, csv: bool
) -> tuple[bytes, str, int]:
    level = "route" if segment_id is None else "segment"
    source = source or release.default_source(route_id, level, segment_id)
    found = release.route_totals(route_id, source, segment_id)
    if found is None:
        # Worded as the forecast's 404, and the same for a segment of another route as for one that does not exist.
        what = f"segment {segment_id!r} of route {route_id!r}" if segment_id else f"route {route_id!r}"
        raise HTTPException(
            status_code=404, detail=f"no {level}-level {source} totals for {what} in release {release.release_id}"
        )
    windows = totals_out(found, exceeds)
    if csv:
        head = {
            "series_id": found.series_id,
            "route_id": route_id,
            "segment_id": found.segment_id,
            "source": source,
            "unit": unit_of(source),
            "release_id": release.release_id,
        }
        rows = [
            {**head, **w.model_dump(exclude={"exceedance"}), **(w.exceedance.model_dump() if w.exceedance else {})}
            for w in windows
        ]
        return csv_bytes(rows, TOTALS_CSV_COLUMNS), CSV, len(rows)
    out = RouteTotalsOut(
        route_id=route_id,
        segment_id=found.segment_id,
        series_id=found.series_id,
        source=source,
        unit=unit_of(source),
        release_id=release.release_id,
        as_of=release.manifest.get("as_of"),
        totals=windows,
    )
    return model_bytes(out), JSON, len(windows)


@router.get(
    "/{route_id}/totals",
    response_model=RouteTotalsOut,
    summary="Forecast totals of a route or segment over the next windows (e.g. 7 and 28 days), with their intervals",
    responses={**table_responses(RouteTotalsOut), **NOT_FOUND},
)
async def route_totals(
    request: Request,
    state: StateDep,
    principal: Analyst,
    route_id: RouteId,
    source: Annotated[
        str | None,
        Query(
            max_length=40,
            description=(
                "Default: as for the forecast, people when the release holds people series for this route (and "
                "segment), else density (unit devices, a diagnostic); or an official source such as frontex. The "
                "answer says its source and unit."
            ),
        ),
    ] = None,
    segment_id: Annotated[
        str | None, Query(max_length=100, description="The totals of this segment's series instead of the route's.")
    ] = None,
    exceeds: Annotated[
        float | None,
        Query(
            ge=0,
            allow_inf_nan=False,
            description=(
                "A threshold (a number >= 0, in the answer's unit): each window then says how likely its total is to "
                "be above it (`exceedance`)."
            ),
        ),
    ] = None,
    release: ReleaseId = None,
) -> Response:
    """The sum of the series' next periods for each window the release publishes: the expected total, the 80 % and
    95 % intervals of the total itself (not sums of the periods' bounds), and with ``exceeds`` the probability that
    the total is above it. A route outside the token's scope answers exactly like a route that does not exist."""
    visible_route(state, principal, route_id)
    chosen = await chosen_release(state, release)
    body, media, rows = _totals(chosen, route_id, source, segment_id, exceeds, wants_csv(request))
    return send(request, body, media, rows)
