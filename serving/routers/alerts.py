"""Alerts: series whose forecast or latest observation breaks its threshold or interval, most severe first.
Planner role; a token sees the alerts of its routes only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from serving.alerts import release_alerts
from serving.deps import Planner
from serving.models import Alert, AlertKind, AlertsOut
from serving.respond import CSV, JSON, ROLE_GUARDED, csv_bytes, model_bytes, send, table_responses, wants_csv
from serving.state import StateDep, require_release

router = APIRouter(tags=["alerts"], responses=ROLE_GUARDED)

CSV_COLUMNS = list(Alert.model_fields)


@router.get(
    "/v1/alerts",
    response_model=AlertsOut,
    summary="Surge warnings: forecasts or observations past their threshold or interval",
    responses=table_responses(AlertsOut),
)
async def alerts(
    request: Request,
    state: StateDep,
    principal: Planner,
    route: Annotated[str | None, Query(max_length=100, description="Only this route's series.")] = None,
    source: Annotated[str | None, Query(max_length=40, description="Only this source, e.g. density.")] = None,
    kind: Annotated[AlertKind | None, Query(description="Only this kind of alert.")] = None,
    min_severity: Annotated[float, Query(ge=0, le=1e6, description="Only alerts at least this severe.")] = 0.0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    release = require_release(state)
    settings = state.settings
    # Computed once per release and settings (a release never changes), then filtered per token.
    listed: list[Alert] = release.derived(
        ("alerts", settings.alert_quantile, settings.alert_factor),
        lambda: release_alerts(release, settings.alert_quantile, settings.alert_factor),
    )
    chosen = [
        a
        for a in listed
        if principal.sees(a.route_id)
        and (route is None or a.route_id == route)
        and (source is None or a.source == source)
        and (kind is None or a.kind == kind)
        and a.severity >= min_severity
    ][:limit]
    if wants_csv(request):
        return send(request, csv_bytes((a.model_dump() for a in chosen), CSV_COLUMNS), CSV, len(chosen))
    out = AlertsOut(release_id=release.release_id, as_of=release.manifest.get("as_of"), alerts=chosen)
    return send(request, model_bytes(out), JSON, len(chosen))
