"""Behaviour parameters estimated from a past closure: ``routecast scenario estimate`` writes them, ``routecast scenario
run --parameters`` and the API (``ROUTECAST_SCENARIO_PARAMETERS``) run with them.

The store is the scenario tests' release (Zuwara and Sfax depart to Lampedusa; Calais to Dover). The history is a
CSV of people passing each point per day in which Zuwara was closed for a week: 60 % of those held back left from
Sfax about five days later, the rest left Zuwara over the days after it reopened. Parameters that send people to a
route outside a planner's scope must not name it, nor change what that planner sees of the routes in scope.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from forecasting.scenario import DEFAULT_PARAMETERS, BlockParameters, Diversion, DiversionShare, Target
from routecast.cli import app
from serving.app import create_app
from serving.scenarios import ScenarioStore
from serving.settings import ServingSettings
from tests.serving import test_scenario_cli
from tests.serving.conftest import CENTRAL_MED, CHANNEL, bearer
from tests.serving.test_scenarios import publish_scenario_release

runner = CliRunner()
var_dir = test_scenario_cli.var_dir  # the fixture: a var folder whose store holds the scenario tests' release
CLOSED = f"point:{CENTRAL_MED}/zuwara"
TO = f"point:{CENTRAL_MED}/sfax"
START, END = dt.date(2025, 1, 20), dt.date(2025, 1, 26)
SHARE = 0.6

SCENARIO = """
name = "Zuwara closed a week, as it was in January"
seed = 5

[[interventions]]
kind = "closure"
target = "zuwara"
start = 2025-03-05
end = 2025-03-11
"""


def history() -> pd.DataFrame:
    """People passing each point per day, 2024-12-01 to 2025-02-28, with Zuwara's closure of January."""
    rng = np.random.default_rng(2)
    days = pd.date_range("2024-12-01", "2025-02-28", freq="D")
    zuwara = rng.poisson(100.0, days.size).astype(float)
    sfax = rng.poisson(50.0, days.size).astype(float)
    i0, i1 = days.get_loc(pd.Timestamp(START)), days.get_loc(pd.Timestamp(END))
    blocked = zuwara[i0 : i1 + 1].copy()
    zuwara[i0 : i1 + 1] = 0
    diverted = rng.binomial(blocked.astype(int), SHARE)
    for k, n in enumerate(diverted):
        np.add.at(sfax, i0 + k + rng.integers(3, 8, n), 1)
    np.add.at(zuwara, i1 + 1 + rng.integers(0, 5, int((blocked - diverted).sum())), 1)
    rows = [(d.date(), CENTRAL_MED, "zuwara", z) for d, z in zip(days, zuwara, strict=True)]
    rows += [(d.date(), CENTRAL_MED, "sfax", s) for d, s in zip(days, sfax, strict=True)]
    return pd.DataFrame(rows, columns=["date", "route_id", "crossing_point_id", "people"])


def estimate(*args: str):
    return runner.invoke(app, ["scenario", "estimate", *args], env={"COLUMNS": "200"})


def test_a_past_closure_is_estimated_written_and_runs_the_next_scenario(var_dir, tmp_path):
    counts = tmp_path / "counts.csv"
    history().to_csv(counts, index=False)
    r = estimate(
        str(counts), "--closed", "zuwara", "--start", str(START), "--end", str(END), "--to", TO, "--divert-days", "21"
    )
    assert r.exit_code == 0, r.output
    assert f"divert share to {TO}" in r.stdout and "blocked (shortfall while closed)" in r.stdout
    written = var_dir / "scenario-parameters.json"
    assert "scenario-parameters.json" in r.stderr
    kept = json.loads(written.read_text())
    block = kept["by_target"][CLOSED]  # a bare point id is kept under its full name, as the engine looks it up
    (share,) = block["diversion"]["to"]
    assert share["to"] == {"route": CENTRAL_MED, "segment": None, "point": "sfax"}
    # Within three of its sds (0.09 here; how well it holds the truth: test_scenario_estimate.py).
    assert share["share"] == pytest.approx(SHARE, abs=0.27)
    assert 0 < block["release"]["mean"] < 5
    # The lag is Sfax's excess dated, where that excess is about the people who did not come back; else the default.
    if "keeps its default" in " ".join(r.stderr.split()):
        assert block["divert_lag"]["source"].startswith("default")
    else:
        assert 3 <= block["divert_lag"]["mean"] <= 8
    assert block["diversion"]["source"] == f"estimated from counts in counts.csv, closure {START} to {END}"
    assert kept["default"] == json.loads(DEFAULT_PARAMETERS.model_dump_json())["default"]  # only Zuwara's

    spec = tmp_path / "march.toml"
    spec.write_text(SCENARIO)
    ran = runner.invoke(app, ["scenario", "run", str(spec), "--parameters", str(written)], env={"COLUMNS": "200"})
    assert ran.exit_code == 0, ran.output
    settings = ServingSettings(var_dir=var_dir)
    (sid,) = ScenarioStore(settings.scenarios_path).ids()
    stored = ScenarioStore(settings.scenarios_path).load(sid)
    sources = {row["parameter"]: row["source"] for row in stored.tables["assumptions"]}
    assert sources["divert_share"].startswith("estimated from counts in counts.csv")
    ledger = {row["quantity"]: row["yhat"] for row in stored.tables["ledger"]}
    assert ledger[f"diverted:{TO}"] == pytest.approx(SHARE * ledger["blocked"], rel=0.3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--closed", "atlantis"], "unknown crossing point 'atlantis'"),
        (["--closed", "zuwara", "--to", "route:atlantis"], "unknown route 'atlantis'"),
        (["--closed", "zuwara", "--start", "2025-01-27", "--end", "2025-01-20"], "before it starts"),
        (["--closed", "zuwara", "--start", "2024-12-10"], "no count for"),
        (["--closed", "sfax"], "no shortfall"),
    ],
)
def test_a_bad_estimate_is_refused_with_the_reason_and_writes_nothing(var_dir, tmp_path, args, message):
    counts = tmp_path / "counts.csv"
    history().to_csv(counts, index=False)
    defaults = ["--start", str(START), "--end", str(END)]
    given = dict(zip(args[::2], args[1::2], strict=True))
    merged = [*args, *(x for k, v in zip(defaults[::2], defaults[1::2], strict=True) if k not in given for x in (k, v))]
    r = estimate(str(counts), *merged)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.stderr.split())
    assert not (var_dir / "scenario-parameters.json").exists()


def test_counts_without_the_columns_are_refused(var_dir, tmp_path):
    counts = tmp_path / "counts.csv"
    history().rename(columns={"people": "n"}).to_csv(counts, index=False)
    r = estimate(str(counts), "--closed", "zuwara", "--start", str(START), "--end", str(END))
    assert r.exit_code == 2 and "missing column(s) people" in r.stderr


# ------------------------------------------------------------------------------------------------------- the API


def to_channel() -> str:
    """Parameters for any closure: half of the people held back go to the Channel."""
    block = BlockParameters(
        diversion=Diversion(to=(DiversionShare(to=Target(route=CHANNEL), share=0.5),), source="estimated from tests")
    )
    return DEFAULT_PARAMETERS.model_copy(update={"default": block}).model_dump_json()


def body(seed: int = 9) -> str:
    closure = {"kind": "closure", "target": CLOSED, "start": "2025-03-05", "end": "2025-03-11"}
    return json.dumps({"name": "no assumptions", "seed": seed, "interventions": [closure]})


def post(api, settings, routes):
    headers = {**bearer(settings, "planner", routes), "Content-Type": "application/json"}
    return api.post("/v1/scenarios", content=body(), headers=headers)


def test_parameters_sending_people_outside_the_scope_never_name_it_nor_change_what_is_in_scope(tmp_path, catalogue):
    var = tmp_path / "var"
    publish_scenario_release(ServingSettings(var_dir=var), catalogue)
    parameters = tmp_path / "parameters.json"
    parameters.write_text(to_channel())
    settings = ServingSettings(var_dir=var, reload_interval_s=0, scenario_draws=200, scenario_parameters=parameters)
    with TestClient(create_app(settings)) as api:
        both = post(api, settings, [CENTRAL_MED, CHANNEL])
        central = post(api, settings, [CENTRAL_MED])
    assert both.status_code == central.status_code == 201, central.text
    assert both.json()["meta"]["routes"] == [CENTRAL_MED, CHANNEL]
    assert central.json()["meta"]["routes"] == [CENTRAL_MED]
    # Nothing the central planner gets or is kept for it names the other route.
    sid = central.json()["scenario_id"]
    kept = " ".join(p.read_text() for p in (settings.scenarios_path / sid).iterdir())
    assert CHANNEL not in central.text and CHANNEL not in kept
    stored = ScenarioStore(settings.scenarios_path).load(sid)
    ledger = {row["quantity"]: row["yhat"] for row in stored.tables["ledger"]}
    assert ledger["diverted:elsewhere"] == pytest.approx(0.5 * ledger["blocked"], rel=0.2)
    # The routes in scope read the same whoever asks, up to the Monte Carlo noise (a caller who sees the Channel draws
    # its series too, so the central series' draws come in another order): the people leave Zuwara either way.
    seen = {
        (s["route_id"], s["point_id"], s["kind"]): s for s in both.json()["summary"] if s["route_id"] == CENTRAL_MED
    }
    assert len(seen) == len(central.json()["summary"]) == 5
    for s in central.json()["summary"]:
        other = seen[(s["route_id"], s["point_id"], s["kind"])]
        assert s["scenario_yhat"] == pytest.approx(other["scenario_yhat"], rel=0.02), s


def test_a_broken_parameters_file_answers_503_and_keeps_nothing(tmp_path, catalogue):
    var = tmp_path / "var"
    publish_scenario_release(ServingSettings(var_dir=var), catalogue)
    parameters = tmp_path / "parameters.json"
    parameters.write_text('{"default": {"diversion": {"to": [], "sd": -1}}}')
    settings = ServingSettings(var_dir=var, reload_interval_s=0, scenario_draws=200, scenario_parameters=parameters)
    with TestClient(create_app(settings)) as api:
        r = post(api, settings, [CENTRAL_MED])
        parameters.unlink()
        gone = post(api, settings, [CENTRAL_MED])
    assert r.status_code == gone.status_code == 503
    assert r.json()["detail"].startswith(f"scenarios cannot run: scenario parameters {parameters}:")
    assert "No such file" in gone.json()["detail"]
    assert not settings.scenarios_path.exists() or not any(settings.scenarios_path.iterdir())
