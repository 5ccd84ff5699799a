"""What-if scenarios: run one on the served release (``POST /v1/scenarios``), list those kept
(``GET /v1/scenarios``) and read one back (``GET /v1/scenarios/{scenario_id}``). Planner role.

A scenario runs on the routes the token may see and nothing else (``serving.scenarios``): a target or diversion on a
route outside the scope is refused exactly like a route that does not exist, and a stored scenario that touches a
route outside the scope answers exactly like an id that does not exist (and is not listed).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import ValidationError

from forecasting.scenario import ScenarioError, ScenarioSpec
from serving.audit import record_param, record_rows
from serving.auth import Principal
from serving.deps import Planner
from serving.models import ErrorOut, ScenarioCreatedOut, ScenarioListItem, ScenarioMeta, ScenarioOut, ScenariosOut
from serving.respond import JSON, ROLE_GUARDED, model_bytes
from serving.scenarios import (
    ID_PATTERN,
    MAX_SPEC_BYTES,
    BadParameters,
    NoScenarioNetwork,
    ScenarioStore,
    configured_parameters,
    new_scenario_id,
    run_on_release,
    scenario_meta,
    table_rows,
)
from serving.state import StateDep, require_release
from serving.store import StoreError

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"], responses=ROLE_GUARDED)

# The body's example names no real route (the OpenAPI document is open).
EXAMPLE = {
    "name": "Example departures closed two weeks",
    "interventions": [
        {
            "kind": "closure",
            "target": "point:example_route/example_departure",
            "start": "2025-03-05",
            "end": "2025-03-18",
            "assumptions": {
                "divert": [{"to": "route:other_example_route", "share": 0.3}],
                "divert_lag_days": {"mean": 10, "sd": 3},
                "release_days": {"mean": 3},
            },
        }
    ],
}
TARGET_TEXT = {
    "type": "string",
    "description": "point:<route>/<point>, segment:<route>/<segment>, route:<route>, or a point id",
    "examples": ["point:example_route/example_point"],
}
TARGET_DESCRIPTION = (
    "Where an intervention acts (or blocked people divert to): a crossing point, a segment or a whole route, as text "
    "or as a table with route and at most one of segment and point."
)
DELAY_NUMBER = {"type": "number", "minimum": 0, "description": "The mean delay in days."}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """A JSON schema with its ``$ref``s to ``defs`` replaced by what they name (the spec's models do not nest
    themselves), targets also as text and delays also as a number, as the spec reads them."""
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        found = _inline(copy.deepcopy(defs[name]), defs)
        if name == "Target":
            # Its own description gives a real place as an example; the document is open and names none.
            found.pop("description", None)
            return {"anyOf": [TARGET_TEXT, found], "description": TARGET_DESCRIPTION}
        if name == "DelayAssumption":
            return {"anyOf": [DELAY_NUMBER, found]}
        return found
    return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}


def spec_schema() -> dict[str, Any]:
    """The request body's JSON schema: ``forecasting.scenario.ScenarioSpec``'s, self-contained."""
    schema = ScenarioSpec.model_json_schema()
    return _inline(schema, schema.get("$defs", {}))


ScenarioId = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        description="A scenario id, as POST /v1/scenarios answered it.",
        examples=["3f0c2b9a6d4e4f1a8b7c5d2e1f0a9b8c"],
    ),
]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


@router.post(
    "",
    status_code=201,
    response_model=ScenarioCreatedOut,
    summary="Run a what-if scenario (closures, capacity cuts, surges) on the served release and keep it",
    responses={
        201: {
            "description": "The scenario ran and is kept; Location names it (GET it for the daily rows, the ledger "
            "and the assumptions).",
            "headers": {"Location": {"description": "/v1/scenarios/{scenario_id}", "schema": {"type": "string"}}},
        },
        409: _error("The served release carries no route network, so no scenario can run on it."),
        413: _error(f"The body is larger than {MAX_SPEC_BYTES // 1024} KiB."),
        422: _error(
            "The body is not a scenario that can run: malformed JSON, a missing or invalid field, an unknown target "
            "(or one outside the token's scope), a date outside the forecast horizon, overlapping interventions. "
            "The detail says which, in one sentence; nothing is kept."
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": spec_schema(), "example": EXAMPLE}},
        }
    },
)
async def create_scenario(request: Request, state: StateDep, principal: Planner) -> Response:
    """The body is the scenario (JSON): interventions (closure, capacity_cut or surge) on a point, segment or route
    from a start to an end day (inclusive), with the planner's assumptions (where blocked people divert, after how
    long, how fast the backlog leaves after reopening) and an optional seed. It runs on the served release's people
    forecasts with ``ROUTECAST_SCENARIO_DRAWS`` Monte Carlo draws, on the routes the token may see; the answer holds
    the summary per series (people) and the scenario's id."""
    release = require_release(state)
    body = await request.body()
    if len(body) > MAX_SPEC_BYTES:
        raise HTTPException(status_code=413, detail=f"the scenario is larger than {MAX_SPEC_BYTES // 1024} KiB")
    settings = state.settings
    try:
        parameters = configured_parameters(settings.scenario_parameters)
        run = await asyncio.to_thread(
            run_on_release, body, release, principal.routes, n_draws=settings.scenario_draws, parameters=parameters
        )
    except ScenarioError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except NoScenarioNetwork as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except BadParameters as exc:
        raise HTTPException(status_code=503, detail=f"scenarios cannot run: {exc}") from None
    scenario_id = new_scenario_id()
    meta = scenario_meta(scenario_id, run, release, principal.subject, dt.datetime.now(dt.UTC))
    await asyncio.to_thread(ScenarioStore(settings.scenarios_path).save, scenario_id, body, meta, run.result)
    record_param(request, "scenario_id", scenario_id)
    summary = table_rows(run.result.summary)
    record_rows(request, len(summary))
    out = ScenarioCreatedOut(scenario_id=scenario_id, meta=ScenarioMeta.model_validate(meta), summary=summary)
    return Response(
        content=model_bytes(out),
        media_type=JSON,
        status_code=201,
        headers={"Location": f"/v1/scenarios/{scenario_id}"},
    )


def _visible(principal: Principal, routes: Any) -> bool:
    """Whether the token sees every route a scenario touches; one that does not list them is shown to nobody."""
    return isinstance(routes, list) and bool(routes) and all(principal.sees(r) for r in routes)


@router.get(
    "",
    response_model=ScenariosOut,
    summary="The scenarios kept that the token may see, newest first",
)
async def list_scenarios(
    request: Request,
    state: StateDep,
    principal: Planner,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many scenarios, the newest.")] = 50,
) -> Response:
    """Every scenario kept whose routes the token all sees (the rule of GET /v1/scenarios/{scenario_id}: one it may
    not read is not listed), newest first, whichever release it ran on."""
    kept = await asyncio.to_thread(ScenarioStore(state.settings.scenarios_path).listing)
    visible = [m for m in kept if _visible(principal, m.get("routes"))][:limit]
    try:
        items = [ScenarioListItem.model_validate(m) for m in visible]
    except ValidationError as exc:
        raise StoreError(f"a scenario kept is malformed: {exc.error_count()} problems") from None
    record_rows(request, len(items))
    return Response(content=model_bytes(ScenariosOut(scenarios=items)), media_type=JSON)


@router.get(
    "/{scenario_id}",
    response_model=ScenarioOut,
    summary="A scenario kept: its spec, how it ran, and its summary, daily rows, ledger and assumptions",
    responses={404: _error("Unknown scenario, or one touching a route outside the token's scope.")},
)
async def get_scenario(request: Request, state: StateDep, principal: Planner, scenario_id: ScenarioId) -> Response:
    """A scenario anyone with the planner role may read when their token sees every route it touches."""
    stored = await asyncio.to_thread(ScenarioStore(state.settings.scenarios_path).load, scenario_id)
    if stored is None or not _visible(principal, stored.meta.get("routes")):
        raise HTTPException(status_code=404, detail=f"unknown scenario {scenario_id!r}")
    try:
        out = ScenarioOut(
            scenario_id=scenario_id, spec=stored.spec, meta=ScenarioMeta.model_validate(stored.meta), **stored.tables
        )
    except ValidationError as exc:
        raise StoreError(f"scenario {scenario_id} is malformed: {exc.error_count()} problems") from None
    record_rows(request, len(out.daily))
    return Response(content=model_bytes(out), media_type=JSON)
