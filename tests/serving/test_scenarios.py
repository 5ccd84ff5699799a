"""What-if scenarios through the API: POST /v1/scenarios runs and keeps one, GET /v1/scenarios/{id} reads it back.

The store is a release written by the real publish step with a small route network in its manifest and people
forecasts for every point of it; the app and its HTTP client are real. A token scoped to some routes must learn
nothing of the others: a target or diversion on a route outside its scope, and a scenario touching one, answer
exactly as if that route or scenario did not exist.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from contracts.published import SCENARIO_NETWORK
from contracts.series import PEOPLE_SOURCE, series_id
from forecasting.scenario import Link, Network, NetworkPoint
from forecasting.tracking import RunInfo
from jobs.stages import publish
from serving.app import create_app
from serving.audit import read_records
from serving.scenarios import ScenarioStore
from serving.settings import ServingSettings
from tests.serving.conftest import (
    AS_OF,
    CENTRAL_MED,
    CHANNEL,
    KEY_COLUMNS,
    MIN_DEVICES,
    SERVED,
    bearer,
    density_keys,
    forecast_rows,
    publish_release,
)

HORIZON = 28  # days of people forecasts, from the day after AS_OF
FIRST = AS_OF + dt.timedelta(days=1)
# The network: on the Central Mediterranean, Zuwara and Sfax depart to Lampedusa; on the Channel, Calais to Dover.
NETWORK = Network(
    points=(
        NetworkPoint(CENTRAL_MED, "zuwara", "departure", "zuwara_lampedusa"),
        NetworkPoint(CENTRAL_MED, "sfax", "departure", "sfax_lampedusa"),
        NetworkPoint(CENTRAL_MED, "lampedusa", "landing", "zuwara_lampedusa"),
        NetworkPoint(CHANNEL, "calais", "departure", "calais_dover"),
        NetworkPoint(CHANNEL, "dover", "landing", "calais_dover"),
    ),
    links=(
        Link(CENTRAL_MED, "zuwara", "lampedusa", 0.9, 2.0),
        Link(CENTRAL_MED, "sfax", "lampedusa", 0.8, 1.0),
        Link(CHANNEL, "calais", "dover", 0.7, 1.0),
    ),
    notes=("made by hand for the tests",),
)
# People per day at each point (flat over the horizon; intervals ±10 % and ±20 %), and people present on each route.
POINT_PEOPLE = {
    (CENTRAL_MED, "zuwara"): 100.0,
    (CENTRAL_MED, "sfax"): 50.0,
    (CENTRAL_MED, "lampedusa"): 130.0,  # 0.9 x 100 + 0.8 x 50
    (CHANNEL, "calais"): 40.0,
    (CHANNEL, "dover"): 28.0,  # 0.7 x 40
}
ROUTE_PEOPLE = {CENTRAL_MED: 1000.0, CHANNEL: 200.0}
SEGMENT_OF = {p.key: p.segment_id for p in NETWORK.points}
DRAWS = 200


def people_forecasts() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The people series of the network's points and routes, and their keys."""
    keys = [
        (
            series_id("point", r, SEGMENT_OF[(r, p)], source=PEOPLE_SOURCE, crossing_point=p),
            "point",
            r,
            SEGMENT_OF[(r, p)],
            y,
        )
        for (r, p), y in POINT_PEOPLE.items()
    ]
    keys += [(series_id("route", r, source=PEOPLE_SOURCE), "route", r, None, y) for r, y in ROUTE_PEOPLE.items()]
    days = pd.date_range(FIRST, periods=HORIZON)
    rows = [(sid, d, y, y * 0.9, y * 1.1, y * 0.8, y * 1.2, "ets") for sid, *_, y in keys for d in days]
    forecasts = pd.DataFrame(rows, columns=["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])
    key = pd.DataFrame([(*k[:4], "D", PEOPLE_SOURCE) for k in keys], columns=list(KEY_COLUMNS))
    return forecasts, key


def publish_scenario_release(settings: ServingSettings, catalogue, network: Network | None = NETWORK):
    """A release with density forecasts, the people series of ``network``'s points and routes, and the network in
    its manifest (none: a release published without one)."""
    density = forecast_rows(catalogue, SERVED)
    people, people_key = people_forecasts()
    extra = {"inputs": {"density": {"first": "2024-01-01", "last": str(AS_OF), "series": 99}}}
    if network is not None:
        extra[SCENARIO_NETWORK] = network.to_dict()
    return publish.publish(
        settings.store_dir,
        pd.concat([density, people], ignore_index=True),
        pd.concat([density_keys(catalogue), people_key], ignore_index=True),
        as_of=AS_OF,
        run=RunInfo(run_id="run-s", model_version="9", experiment_id="1", tracking_uri="sqlite:///m.db"),
        min_devices=MIN_DEVICES,
        manifest_extra=extra,
    )


@pytest.fixture(scope="session")
def scenario_template(tmp_path_factory, catalogue) -> Path:
    var = tmp_path_factory.mktemp("scenarios") / "var"
    publish_scenario_release(ServingSettings(var_dir=var, reload_interval_s=0), catalogue)
    return var


@pytest.fixture
def settings(tmp_path, scenario_template) -> ServingSettings:
    shutil.copytree(scenario_template, tmp_path / "var")
    return ServingSettings(var_dir=tmp_path / "var", reload_interval_s=0, scenario_draws=DRAWS)


@pytest.fixture
def api(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def auth(settings, role="planner", routes=None) -> dict[str, str]:
    return bearer(settings, role, routes)


def closure(target="point:central_mediterranean/zuwara", start="2025-03-05", end="2025-03-11", **assumptions):
    """A closure of ``target`` from ``start`` to ``end``; nobody diverts unless ``assumptions`` say where."""
    return {
        "kind": "closure",
        "target": target,
        "start": start,
        "end": end,
        "assumptions": {"divert": [], "release_days": {"mean": 3}, **assumptions},
    }


def post(api, headers, *interventions, seed=7, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps({"name": "test", "seed": seed, "interventions": list(interventions)})
    return api.post("/v1/scenarios", content=body, headers={**headers, "Content-Type": "application/json"})


def stored(settings) -> list[str]:
    """Everything under the scenarios folder (a refused scenario must leave nothing, not even a temporary folder)."""
    root = settings.scenarios_path
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def one_sentence(detail: str) -> bool:
    return bool(detail) and "\n" not in detail and re.search(r"[.!?]\s+\S", detail) is None


# ---------------------------------------------------------------------------------------------- a closure end to end


def test_a_closure_is_answered_201_and_kept_with_its_inputs(api, settings):
    body = json.dumps({"name": "Zuwara closed a week", "seed": 7, "interventions": [closure()]}).encode()
    r = post(api, auth(settings, "planner", [CENTRAL_MED]), raw=body)
    assert r.status_code == 201, r.text
    out = r.json()
    sid = out["scenario_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", sid) and r.headers["location"] == f"/v1/scenarios/{sid}"
    meta = out["meta"]
    current = (settings.store_dir / "CURRENT").read_text().strip()
    assert (meta["subject"], meta["routes"], meta["n_draws"], meta["seed"]) == ("tester", [CENTRAL_MED], DRAWS, 7)
    assert (meta["model_version"], meta["run_id"], meta["first_day"]) == ("9", "run-s", FIRST.isoformat())
    assert meta["last_day"] == (FIRST + dt.timedelta(days=HORIZON - 1)).isoformat()
    # Seven days closed at 100 people a day: the peak of people waiting at Zuwara is about 700.
    waiting = next(s for s in out["summary"] if s["kind"] == "waiting")
    assert (waiting["route_id"], waiting["point_id"], waiting["measure"]) == (CENTRAL_MED, "zuwara", "peak")
    assert 600 < waiting["scenario_yhat"] < 800
    # Kept: the body exactly as sent, the meta, and the tables.
    folder = settings.scenarios_path / sid
    assert (folder / "spec.json").read_bytes() == body
    kept = json.loads((folder / "meta.json").read_text())
    assert kept == {**meta, "created_at": kept["created_at"]} and kept["release_id"] == current
    assert sorted(p.name for p in folder.iterdir()) == [
        "assumptions.json",
        "daily.json",
        "ledger.json",
        "meta.json",
        "spec.json",
        "summary.json",
    ]


def test_get_answers_the_scenario_kept(api, settings):
    headers = auth(settings, "planner", [CENTRAL_MED])
    created = post(api, headers, closure()).json()
    r = api.get(f"/v1/scenarios/{created['scenario_id']}", headers=headers)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["meta"] == created["meta"] and got["summary"] == created["summary"]
    assert got["spec"]["interventions"][0]["target"] == "point:central_mediterranean/zuwara"
    # Zuwara is closed from the 5th to the 11th: nobody crosses there on the 6th; the baseline says 100.
    zuwara = {d["ds"]: d for d in got["daily"] if d["kind"] == "point" and d["point_id"] == "zuwara"}
    assert zuwara["2025-03-06"]["scenario_hi95"] == 0.0
    assert 85 < zuwara["2025-03-06"]["baseline_yhat"] < 115
    # The ledger adds up: blocked = released + diverted + still waiting (medians, so within a few people).
    ledger = {row["quantity"]: row["yhat"] for row in got["ledger"]}
    assert 600 < ledger["blocked"] < 800 and ledger["diverted"] == 0.0
    assert abs(ledger["blocked"] - ledger["released"] - ledger["waiting_at_end"]) < 0.05 * ledger["blocked"]
    assert {a["parameter"] for a in got["assumptions"]} >= {"release_days", "divert_lag_days", "transit_lag_factor"}


def test_the_same_spec_and_seed_give_the_same_answer(api, settings):
    headers = auth(settings)
    first, second = (post(api, headers, closure(), seed=3).json() for _ in range(2))
    assert first["scenario_id"] != second["scenario_id"]
    assert first["summary"] == second["summary"]


# --------------------------------------------------------------------------------------------- refused, nothing kept

BAD = {
    "unknown target": (
        [closure("point:atlantis/zuwara")],
        "interventions[0].target: unknown route 'atlantis'; known routes: central_mediterranean, channel",
    ),
    "end before start": ([closure(start="2025-03-10", end="2025-03-04")], "is before start"),
    "contradictory overlap": (
        [
            closure(),
            {
                "kind": "capacity_cut",
                "target": "point:central_mediterranean/zuwara",
                "share": 0.5,
                "start": "2025-03-08",
                "end": "2025-03-20",
            },
        ],
        "both act on point:central_mediterranean/zuwara from 2025-03-08 to 2025-03-11",
    ),
    "outside the horizon": (
        [closure(start="2025-03-20", end="2025-04-30")],
        "interventions[0].end 2025-04-30 is outside the forecast horizon 2025-03-02 to 2025-03-29",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_scenario_that_cannot_run_is_422_in_one_sentence_and_nothing_is_kept(api, settings, case):
    interventions, expected = BAD[case]
    r = post(api, auth(settings), *interventions)
    assert r.status_code == 422, r.text
    assert expected in r.json()["detail"] and one_sentence(r.json()["detail"])
    assert stored(settings) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "the scenario is not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"[1, 2]", "a scenario must be a table of fields, got list"),
        (b"\xff\xfe", "the scenario is not valid JSON: it is not UTF-8 text"),
        (b'{"interventions": []}', "the scenario has no interventions; add at least one [[interventions]]"),
    ],
)
def test_a_malformed_body_is_422_in_one_sentence(api, settings, raw, expected):
    r = post(api, auth(settings), raw=raw)
    assert (r.status_code, r.json()) == (422, {"detail": expected})
    assert stored(settings) == []


def test_a_release_without_a_network_is_409_not_500(tmp_path, catalogue):
    settings = ServingSettings(var_dir=tmp_path / "var", reload_interval_s=0, scenario_draws=DRAWS)
    publish_release(settings, catalogue, AS_OF, "run-1")  # the usual test release: no scenario_network
    with TestClient(create_app(settings)) as api:
        r = post(api, auth(settings), closure())
    assert r.status_code == 409
    assert r.json()["detail"].endswith(
        "has no route network for scenarios; scenarios need a release published "
        "with one (scenario_network in its manifest)"
    )
    assert stored(settings) == []


# ---------------------------------------------------------------------------------------------------- the attacker

CENTRAL_ONLY = [CENTRAL_MED]


@pytest.mark.parametrize("scope", [CENTRAL_ONLY, ["western_african"]], ids=["central", "no_route_of_the_network"])
@pytest.mark.parametrize(
    ("outside", "unknown"),
    [
        ("point:channel/calais", "point:atlantis/calais"),
        ("route:channel", "route:atlantis"),
        ("segment:channel/calais_dover", "segment:atlantis/calais_dover"),
    ],
)
def test_a_target_outside_the_scope_answers_like_an_unknown_route(api, settings, scope, outside, unknown):
    headers = auth(settings, "planner", scope)
    refused = post(api, headers, closure(outside))
    missing = post(api, headers, closure(unknown))
    assert refused.status_code == missing.status_code == 422
    assert refused.json() == json.loads(missing.text.replace("atlantis", CHANNEL))
    assert CHANNEL not in missing.text  # the known routes listed are the scope's only
    assert stored(settings) == []


def test_a_bare_point_outside_the_scope_answers_like_an_unknown_point(api, settings):
    headers = auth(settings, "planner", CENTRAL_ONLY)
    refused, missing = post(api, headers, closure("calais")), post(api, headers, closure("nowhere"))
    assert refused.status_code == missing.status_code == 422
    assert refused.json() == json.loads(missing.text.replace("nowhere", "calais"))


def test_a_diversion_outside_the_scope_answers_like_an_unknown_route(api, settings):
    headers = auth(settings, "planner", CENTRAL_ONLY)
    refused = post(api, headers, closure(divert=[{"to": "route:channel", "share": 0.3}]))
    missing = post(api, headers, closure(divert=[{"to": "route:atlantis", "share": 0.3}]))
    assert refused.status_code == missing.status_code == 422
    assert refused.json() == json.loads(missing.text.replace("atlantis", CHANNEL))
    assert refused.json()["detail"] == (
        "interventions[0].assumptions.divert[0].to: unknown route 'channel'; known routes: central_mediterranean"
    )
    # The same diversion from a token of both routes runs, and touches both.
    both = post(
        api, auth(settings, "planner", [CENTRAL_MED, CHANNEL]), closure(divert=[{"to": "route:channel", "share": 0.3}])
    )
    assert both.status_code == 201 and both.json()["meta"]["routes"] == [CENTRAL_MED, CHANNEL]


def test_a_scenario_of_another_scope_answers_like_an_unknown_id(api, settings):
    diverted = closure(divert=[{"to": "route:channel", "share": 0.3}])
    sid = post(api, auth(settings, "planner", None), diverted).json()["scenario_id"]
    both = auth(settings, "planner", [CENTRAL_MED, CHANNEL])
    assert api.get(f"/v1/scenarios/{sid}", headers=both).status_code == 200  # now in the answer cache
    assert api.get(f"/v1/scenarios/{sid}", headers=both).status_code == 200  # served from it
    unknown = "0" * 32
    for scope in ([CENTRAL_MED], [CHANNEL]):
        headers = auth(settings, "planner", scope)
        hidden = api.get(f"/v1/scenarios/{sid}", headers=headers)
        missing = api.get(f"/v1/scenarios/{unknown}", headers=headers)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == json.loads(missing.text.replace(unknown, sid))


def test_a_scenario_that_does_not_list_its_routes_is_shown_to_nobody(api, settings):
    sid = post(api, auth(settings), closure()).json()["scenario_id"]
    meta_file = settings.scenarios_path / sid / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "routes"}))
    r = api.get(f"/v1/scenarios/{sid}", headers=auth(settings, "admin"))
    assert (r.status_code, r.json()) == (404, {"detail": f"unknown scenario {sid!r}"})


@pytest.mark.parametrize("bad_id", ["..", "..%2F..%2Fdecoy", "%2e%2e%2fdecoy", "decoy", "ABCDEF" + "0" * 26, "0" * 33])
def test_an_id_that_is_no_scenario_id_never_reaches_the_filesystem(api, settings, bad_id):
    # A decoy that a path joined from the id would find: a scenario folder beside the scenarios folder.
    decoy = settings.scenarios_path.parent / "decoy"
    decoy.mkdir(parents=True)
    (decoy / "meta.json").write_text(json.dumps({"routes": [], "secret": "decoy"}))
    r = api.get(f"/v1/scenarios/{bad_id}", headers=auth(settings))
    assert r.status_code in (404, 422)
    assert "secret" not in r.text
    assert ScenarioStore(settings.scenarios_path).load("../decoy") is None


def test_the_analyst_role_may_not_ask_for_scenarios(api, settings):
    sid = post(api, auth(settings), closure()).json()["scenario_id"]
    analyst = auth(settings, "analyst")
    assert post(api, analyst, closure()).status_code == 403
    assert api.get(f"/v1/scenarios/{sid}", headers=analyst).status_code == 403
    assert len(ScenarioStore(settings.scenarios_path).ids()) == 1


def test_a_created_scenario_and_its_reads_are_audited_with_its_id(api, settings):
    headers = auth(settings, "planner", CENTRAL_ONLY)
    sid = post(api, headers, closure()).json()["scenario_id"]
    api.get(f"/v1/scenarios/{sid}", headers=headers)
    post(api, headers, closure("point:atlantis/x"))
    records = list(read_records(settings.audit_path, path_prefix="/v1/scenarios"))
    created, read, refused = records
    assert (created["method"], created["status"], created["params"], created["subject"]) == (
        "POST",
        201,
        {"scenario_id": [sid]},
        "tester",
    )
    assert created["rows"] == len(api.get(f"/v1/scenarios/{sid}", headers=headers).json()["summary"])
    assert (read["method"], read["status"], read["endpoint"], read["params"]) == (
        "GET",
        200,
        "/v1/scenarios/{scenario_id}",
        {"scenario_id": [sid]},
    )
    assert (refused["status"], refused["params"]) == (422, {})


def test_posts_are_never_answered_from_the_cache(api, settings):
    headers = auth(settings)
    ids = {post(api, headers, closure()).json()["scenario_id"] for _ in range(3)}
    assert len(ids) == 3 and len(ScenarioStore(settings.scenarios_path).ids()) == 3


# ------------------------------------------------------------------------------------------------------ the list


def named(api, settings, name, created_at, *interventions) -> str:
    """A scenario kept under ``name`` whose ``created_at`` is then set to ``created_at`` (the clock ticks in seconds:
    the tests set the order rather than wait for it)."""
    body = json.dumps({"name": name, "seed": 1, "interventions": list(interventions)}).encode()
    r = post(api, auth(settings), raw=body)
    assert r.status_code == 201, r.text
    sid = r.json()["scenario_id"]
    (settings.scenarios_path / sid / "meta.json").write_text(json.dumps({**r.json()["meta"], "created_at": created_at}))
    return sid


@pytest.fixture
def three(api, settings) -> dict[str, str]:
    """Three scenarios: one on the Central Mediterranean, one on the Channel, one touching both (newest)."""
    return {
        "central": named(api, settings, "Zuwara closed", "2025-03-01T10:00:00+00:00", closure()),
        "channel": named(api, settings, "Calais closed", "2025-03-01T11:00:00+00:00", closure("point:channel/calais")),
        "both": named(
            api,
            settings,
            "Zuwara closed, some to the Channel",
            "2025-03-01T12:00:00+00:00",
            closure(divert=[{"to": "route:channel", "share": 0.3}]),
        ),
    }


def listed(api, headers, **params) -> list[dict]:
    r = api.get("/v1/scenarios", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()["scenarios"]


def test_the_list_holds_every_scenario_the_token_may_read_newest_first(api, settings, three):
    got = listed(api, auth(settings, "planner", [CENTRAL_MED, CHANNEL]))
    assert [s["scenario_id"] for s in got] == [three["both"], three["channel"], three["central"]]
    current = (settings.store_dir / "CURRENT").read_text().strip()
    assert got[0] == {
        "scenario_id": three["both"],
        "name": "Zuwara closed, some to the Channel",
        "created_at": "2025-03-01T12:00:00Z",
        "subject": "tester",
        "release_id": current,
        "routes": [CENTRAL_MED, CHANNEL],
        "first_day": FIRST.isoformat(),
        "last_day": (FIRST + dt.timedelta(days=HORIZON - 1)).isoformat(),
    }
    assert [s["name"] for s in got[1:]] == ["Calais closed", "Zuwara closed"]


@pytest.mark.parametrize(("scope", "expected"), [([CENTRAL_MED], "central"), ([CHANNEL], "channel")])
def test_a_scenario_touching_a_route_outside_the_scope_is_not_listed(api, settings, three, scope, expected):
    headers = auth(settings, "planner", scope)
    assert [s["scenario_id"] for s in listed(api, headers)] == [three[expected]]
    assert listed(api, auth(settings, "planner", ["western_african"])) == []
    # What is listed is what the scenario's GET answers; the others answer as unknown ids.
    for name, sid in three.items():
        assert api.get(f"/v1/scenarios/{sid}", headers=headers).status_code == (200 if name == expected else 404)


def test_the_list_is_never_served_to_another_scope_and_is_never_stale(api, settings, three):
    from tests.serving.test_fastpath import answer_cache

    cache = answer_cache(api.app)
    central, channel = auth(settings, "planner", [CENTRAL_MED]), auth(settings, "planner", [CHANNEL])
    assert [s["scenario_id"] for s in listed(api, central)] == [three["central"]]
    assert [s["scenario_id"] for s in listed(api, channel)] == [three["channel"]]
    hits = cache.hits
    # A new scenario is listed at once, to the scope that may see it only.
    new = post(api, central, closure("point:central_mediterranean/sfax")).json()["scenario_id"]
    assert [s["scenario_id"] for s in listed(api, central)] == [new, three["central"]]
    assert [s["scenario_id"] for s in listed(api, channel)] == [three["channel"]]
    assert cache.hits == hits


def test_the_list_holds_at_most_limit_scenarios_the_newest(api, settings, three):
    headers = auth(settings)
    assert [s["scenario_id"] for s in listed(api, headers, limit=2)] == [three["both"], three["channel"]]
    for bad in (0, 501, "many"):
        assert api.get("/v1/scenarios", headers=headers, params={"limit": bad}).status_code == 422


def test_the_list_is_empty_before_any_scenario_and_skips_one_that_lists_no_routes(api, settings):
    headers = auth(settings, "admin")
    assert listed(api, headers) == []
    sid = post(api, headers, closure()).json()["scenario_id"]
    meta_file = settings.scenarios_path / sid / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "routes"}))
    assert listed(api, headers) == []


def test_the_analyst_role_may_not_list_scenarios(api, settings, three):
    r = api.get("/v1/scenarios", headers=auth(settings, "analyst"))
    assert r.status_code == 403 and "needs the planner role" in r.json()["detail"]
