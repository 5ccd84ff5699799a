"""H3 cells of a route for one day: observed density and excess, or the forecast spread over cells. Planner role.

Only what the release stores is served: suppressed cell counts (the store refuses a cell table holding any count at
or below the release's threshold), so a cell that was suppressed is simply absent.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, HTTPException, Query, Request, Response

from geo.cells import cell_to_int, cells_to_geojson
from serving.deps import NOT_FOUND, Planner, ReleaseId, RouteId, visible_route
from serving.models import HexesGeoJSON
from serving.respond import CSV, GEOJSON, ROLE_GUARDED, csv_bytes, model_bytes, send, table_responses, wants_csv
from serving.state import StateDep, chosen_release
from serving.store import Release

router = APIRouter(prefix="/v1/routes", tags=["hexes"], responses=ROLE_GUARDED)

CSV_COLUMNS = ["cell", "res", "date", "segment_ids", "devices", "excess", "zscore", "forecast", "lo80", "hi80"]


def _hexes(release: Release, route_id: str, day: dt.date | None, res: int | None, segment: str | None, csv: bool):
    cells = release.cells
    if cells is None:
        raise HTTPException(status_code=404, detail=f"release {release.release_id} holds no cell table")
    as_of = release.as_of
    day = day or as_of
    resolutions = release.cell_resolutions
    res = max(resolutions) if res is None and resolutions else res
    if res not in resolutions:
        raise HTTPException(status_code=422, detail=f"res {res} is not published; this release has {resolutions}")
    rows = cells[(cells["route_id"] == route_id) & (cells["res"] == res)]
    if segment is not None:
        rows = rows[rows["segment_id"] == segment]
    if rows.empty:
        what = f"segment {segment!r} of route {route_id!r}" if segment else f"route {route_id!r}"
        raise HTTPException(status_code=404, detail=f"no published cells for {what} in release {release.release_id}")
    # The last day is the one GET /v1/routes announces (as_of plus the density horizon); the first is this selection's.
    first, last = min(rows["date"]), release.cell_days[route_id][1]
    if day is None or not first <= day <= last:
        raise HTTPException(
            status_code=404,
            detail=f"date {day} is outside release {release.release_id}: cells from {first} to {as_of} observed, "
            f"forecast to {last}",
        )
    observed = day <= as_of
    if observed:
        per_cell = (
            rows[rows["date"] == day]
            .groupby("cell", sort=True)
            .agg(
                segment_ids=("segment_id", lambda s: sorted(set(s))),
                devices=("devices", "first"),
                excess=("excess", "first"),
                zscore=("zscore", "first"),
            )
        )
        per_cell[["forecast", "lo80", "hi80"]] = None
    else:
        shares = rows.drop_duplicates(["segment_id", "cell"])[["segment_id", "cell", "share"]]
        parts = []
        for seg_id, group in shares.groupby("segment_id"):
            series = release.segment_series(route_id, str(seg_id))
            if series is None or day not in series.ds:
                continue
            i = series.ds.index(day)
            parts.append(
                group.assign(
                    forecast=group["share"] * series.bounds["yhat"][i],
                    lo80=group["share"] * series.bounds["lo80"][i],
                    hi80=group["share"] * series.bounds["hi80"][i],
                )
            )
        table = pd.concat(parts) if parts else shares.assign(forecast=0.0, lo80=0.0, hi80=0.0).iloc[:0]
        per_cell = table.groupby("cell", sort=True).agg(
            segment_ids=("segment_id", lambda s: sorted(set(s))),
            forecast=("forecast", "sum"),
            lo80=("lo80", "sum"),
            hi80=("hi80", "sum"),
        )
        per_cell[["devices", "excess", "zscore"]] = None
    records = {
        cell: {k: _clean(v) for k, v in props.items()} | {"res": res, "date": str(day)}
        for cell, props in per_cell.to_dict("index").items()
    }
    if csv:
        rows_out = [{"cell": c, **p, "segment_ids": ";".join(p["segment_ids"])} for c, p in records.items()]
        return csv_bytes(rows_out, CSV_COLUMNS), CSV, len(rows_out)
    collection = cells_to_geojson([cell_to_int(c) for c in records], {cell_to_int(c): p for c, p in records.items()})
    out = HexesGeoJSON.model_validate(
        {
            **collection,
            "route_id": route_id,
            "date": day,
            "res": res,
            "release_id": release.release_id,
            "observed": observed,
        }
    )
    return model_bytes(out), GEOJSON, len(records)


def _clean(value):
    """NaN and numpy scalars → JSON-friendly values."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


@router.get(
    "/{route_id}/hexes",
    response_model=HexesGeoJSON,
    summary="H3 cells of a route for a day: density, excess and forecast (GeoJSON)",
    responses={**table_responses(HexesGeoJSON, GEOJSON), **NOT_FOUND},
)
async def route_hexes(
    request: Request,
    state: StateDep,
    principal: Planner,
    route_id: RouteId,
    date: Annotated[
        dt.date | None, Query(description="A day of the last 28 observed or of the forecast; default as_of.")
    ] = None,
    res: Annotated[
        int | None, Query(ge=0, le=15, description="H3 resolution; default the finest the release publishes.")
    ] = None,
    segment: Annotated[str | None, Query(max_length=100, description="Only the cells of this segment.")] = None,
    release: ReleaseId = None,
) -> Response:
    visible_route(state, principal, route_id)
    chosen = await chosen_release(state, release)
    csv = wants_csv(request)
    body, media, rows = _hexes(chosen, route_id, date, res, segment, csv)
    return send(request, body, media, rows)
