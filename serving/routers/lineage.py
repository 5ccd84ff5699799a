"""Lineage: for any published forecast, the release, MLflow run, model version and input data dates, and for a people
series the measurement model and the route's parameters that made it. Analyst role."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from contracts.series import PEOPLE_SOURCE
from serving.auth import Principal
from serving.deps import Analyst, ReleaseId
from serving.models import ErrorOut, InputDates, LineageOut, PeopleModelOut
from serving.respond import GUARDED, JSON, model_bytes, send
from serving.state import StateDep, chosen_release
from serving.store import PEOPLE_SOURCES, Release, Series, unit_of

router = APIRouter(tags=["lineage"], responses=GUARDED)


@router.get(
    "/v1/lineage",
    response_model=LineageOut,
    summary="Where a forecast comes from: release, MLflow run, model version, input data dates, measurement model",
    responses={404: {"model": ErrorOut, "description": "Unknown series, or one outside the token's scope."}},
)
async def lineage(
    request: Request,
    state: StateDep,
    principal: Analyst,
    series_id: Annotated[
        str, Query(max_length=200, examples=["route:example_route"], description="A series_id from a forecast.")
    ],
    release: ReleaseId = None,
) -> Response:
    chosen = await chosen_release(state, release)
    s = chosen.series.get(series_id)
    # A series of no route (the all-routes total) belongs to every route: only an unscoped token sees it.
    if s is None or not (principal.sees(s.route_id) if s.route_id else principal.routes is None):
        raise HTTPException(status_code=404, detail=f"unknown series {series_id!r} in release {chosen.release_id}")
    inputs = (chosen.manifest.get("inputs") or {}).get(s.source)
    out = LineageOut(
        series_id=s.series_id,
        route_id=s.route_id,
        source=s.source,
        unit=unit_of(s.source),
        model=s.model,
        release_id=chosen.release_id,
        run_id=s.run_id,
        model_version=s.model_version,
        as_of=chosen.manifest.get("as_of"),
        release_created_at=chosen.manifest.get("created_at"),
        forecast_first=s.ds[0],
        forecast_last=s.ds[-1],
        last_observed=s.history_ds[-1] if s.history_ds else None,
        # Dates only: the source's series count would tell a scoped token how many other routes there are.
        inputs=InputDates(first=_date(inputs.get("first")), last=_date(inputs.get("last"))) if inputs else None,
        min_devices=chosen.manifest["privacy"]["min_devices"],
        people_model=people_model_out(chosen, s, principal),
    )
    return send(request, model_bytes(out), JSON, 1)


def people_model_out(release: Release, s: Series, principal: Principal) -> PeopleModelOut | None:
    """The measurement model of a people series with its route's parameters only; None for other sources or when the
    release records no model.

    A token limited to some routes does not read the span of an official source the release publishes for none of
    its routes: a source of another route alone (uk-channel) would tell it that route is served.
    """
    model = release.people_model
    if s.source != PEOPLE_SOURCE or model is None or s.route_id is None:
        return None
    fitted_on = model.fitted_on
    if principal.routes is not None:
        seen = {
            src for route, sources in release.sources_by_route().items() if principal.sees(route) for src in sources
        }
        fitted_on = {key: days for key, days in fitted_on.items() if key not in PEOPLE_SOURCES or key in seen}
    return PeopleModelOut(
        model_id=model.model_id,
        unit=model.unit,
        fitted_on=fitted_on,
        route_id=s.route_id,
        params=model.routes.get(s.route_id),
    )


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None
