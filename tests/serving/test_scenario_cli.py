"""``routecast scenario run FILE``: the summary printed, the scenario kept like the API keeps one, and audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from routecast.cli import app
from serving.app import create_app
from serving.audit import read_records
from serving.scenarios import ScenarioStore
from serving.settings import ServingSettings
from tests.serving.conftest import bearer
from tests.serving.test_scenarios import publish_scenario_release

runner = CliRunner()

ZUWARA_TOML = """
name = "Zuwara closed a week"
seed = 3

[[interventions]]
kind = "closure"
target = "point:central_mediterranean/zuwara"
start = 2025-03-05
end = 2025-03-11
[interventions.assumptions]
divert = [{ to = "point:central_mediterranean/sfax", share = 0.4 }]
"""


@pytest.fixture
def var_dir(tmp_path, monkeypatch, catalogue) -> Path:
    for name in (
        "AUDIT_DIR", "AUDIT_KEY", "AUDIT_KEY_FILE", "AUDIT_ANCHOR_FILE", "SCENARIOS_DIR", "SCENARIO_DRAWS",
        "SCENARIO_PARAMETERS",
    ):  # fmt: skip
        monkeypatch.delenv(f"ROUTECAST_{name}", raising=False)
    var = tmp_path / "var"
    monkeypatch.setenv("ROUTECAST_VAR_DIR", str(var))
    monkeypatch.setenv("ROUTECAST_SCENARIO_DRAWS", "200")
    publish_scenario_release(ServingSettings(var_dir=var), catalogue)
    return var


def invoke(*args: str):
    return runner.invoke(app, ["scenario", "run", *args], env={"COLUMNS": "200"})


def test_a_toml_scenario_runs_prints_people_and_is_kept_and_audited(var_dir, tmp_path):
    spec = tmp_path / "zuwara.toml"
    spec.write_text(ZUWARA_TOML)
    r = invoke(str(spec), "--by", "planner-on-duty")
    assert r.exit_code == 0, r.output
    assert "people over the scenario's window" in r.stdout
    assert "central_mediterranean/zuwara" in r.stdout and "waiting" in r.stdout
    settings = ServingSettings(var_dir=var_dir)
    (scenario_id,) = ScenarioStore(settings.scenarios_path).ids()
    assert scenario_id in r.stderr
    stored = ScenarioStore(settings.scenarios_path).load(scenario_id)
    assert stored.meta["subject"] == "planner-on-duty"
    assert stored.meta["release_id"] and stored.meta["n_draws"] == 200 and stored.meta["seed"] == 3
    assert stored.spec["interventions"][0]["start"] == "2025-03-05"  # TOML dates kept as the API's JSON has them
    blocked = next(row for row in stored.tables["ledger"] if row["quantity"] == "blocked")
    assert blocked["yhat"] == pytest.approx(7 * 100.0, rel=0.15)  # a week of Zuwara's 100 people a day
    (record,) = [x for x in read_records(settings.audit_path) if x["path"] == "routecast scenario run"]
    assert record["params"]["scenario_id"] == [scenario_id] and record["subject"] == "planner-on-duty"

    # The API reads it back like one of its own, to a planner who sees its routes.
    with TestClient(create_app(ServingSettings(var_dir=var_dir, reload_interval_s=0))) as api:
        got = api.get(f"/v1/scenarios/{scenario_id}", headers=bearer(settings, "planner", None))
        assert got.status_code == 200, got.text
        assert got.json()["meta"]["subject"] == "planner-on-duty"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ZUWARA_TOML.replace("end = 2025-03-11", "end = 2025-03-01"), "before start"),
        (ZUWARA_TOML.replace('zuwara"', 'atlantis"'), "atlantis"),
        (
            ZUWARA_TOML.replace("start = 2025-03-05", "start = 2026-03-05").replace("2025-03-11", "2026-03-11"),
            "horizon",
        ),
        ("name = [", "not valid TOML"),
    ],
)
def test_a_bad_scenario_is_refused_in_one_sentence_and_nothing_is_kept(var_dir, tmp_path, text, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    r = invoke(str(spec))
    assert r.exit_code == 2, r.output
    err = " ".join(r.stderr.split())
    assert message in err and err.startswith("error:")
    assert ScenarioStore(ServingSettings(var_dir=var_dir).scenarios_path).ids() == []


def test_a_missing_file_is_refused(var_dir, tmp_path):
    r = invoke(str(tmp_path / "nope.toml"))
    assert r.exit_code == 2 and "no such file" in r.stderr
