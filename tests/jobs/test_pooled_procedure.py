"""The monthly procedure for official counts anchors on the pooled model, and every path gives it the series it
learns from: the nightly run every monthly official series, `routecast forecast` and `routecast evaluate` the file's
own and those of the files they pool with (``--pool SOURCE=FILE``)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from forecasting.models.pooled import POOLED
from jobs.analysis.adhoc import adhoc_forecast
from jobs.analysis.evaluate import evaluate_file
from jobs.settings import JobSettings
from jobs.stages.forecast import selection_configs

MONTHS = pd.date_range("2013-01-01", periods=100, freq="MS")


def test_the_monthly_procedure_anchors_on_the_pooled_model_and_weekly_does_not():
    configs = selection_configs(JobSettings())
    monthly, weekly = configs["counts:M"], configs["counts:W"]
    assert monthly.candidates[-1] == POOLED and monthly.anchor == POOLED
    assert monthly.ensemble_top == len(monthly.candidates)
    assert POOLED not in weekly.candidates and weekly.anchor is None
    off = selection_configs(JobSettings(monthly_pooled=False))["counts:M"]
    assert POOLED not in off.candidates and off.anchor is None
    assert replace(off, candidates=monthly.candidates, anchor=POOLED, ensemble_top=5) == monthly


def _file(tmp_path, name: str, routes: dict[str, float], seed: int):
    """A generic monthly counts file: per route a season around its level."""
    rng = np.random.default_rng(seed)
    t = np.arange(MONTHS.size)
    lines = ["date,route,count"]
    for route, level in routes.items():
        y = rng.poisson(level * (1 + 0.5 * np.sin(2 * np.pi * t / 12)))
        lines += [f"{d.date()},{route},{v}" for d, v in zip(MONTHS, y, strict=True)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cheap(tmp_path) -> JobSettings:
    # The product's monthly procedure with cheap single-series members (statsforecast would only slow the test).
    return JobSettings(var_dir=tmp_path / "var", coarse_candidates=("naive", "seasonal_naive", "window_mean"))


def test_evaluate_and_forecast_give_the_pooled_model_the_files_series_and_the_pooled_files(tmp_path, cheap):
    main = _file(tmp_path, "main.csv", {"central_mediterranean": 900.0, "channel": 300.0}, seed=1)
    other = _file(tmp_path, "other.csv", {"eastern_mediterranean": 2000.0}, seed=2)
    alone = evaluate_file(main, "generic", freq="M", origins=3, settings=cheap, log=False)
    pooled = evaluate_file(main, "generic", freq="M", origins=3, settings=cheap, log=False, pool=[(other, "generic")])
    for result in (alone, pooled):
        assert result.config.anchor == POOLED
        champion = result.rows[result.rows["method"] == "champion"]
        assert champion["error"].isna().all() and set(champion["model"]) == {"ensemble"}
    # Another route to learn from changes the forecasts (and nothing else: the same origins, rows and baselines).
    a, b = (r.rows.set_index(["series_id", "method", "cutoff", "step"]).sort_index() for r in (alone, pooled))
    assert a.index.equals(b.index)
    assert not np.allclose(a.xs("champion", level="method")["mean"], b.xs("champion", level="method")["mean"])
    np.testing.assert_allclose(a.xs("naive", level="method")["mean"], b.xs("naive", level="method")["mean"])

    as_of = MONTHS[-1].date()
    forecast = adhoc_forecast(main, "generic", as_of, 3, "M", settings=cheap, pool=[(other, "generic")])
    assert set(forecast.table["model"]) == {"ensemble"} and len(forecast.table) == 6


def test_the_cli_takes_pool_as_source_equals_file_and_refuses_anything_else(tmp_path):
    main = _file(tmp_path, "main.csv", {"central_mediterranean": 900.0}, seed=3)
    env = {**os.environ, "ROUTECAST_VAR_DIR": str(tmp_path / "var"), "COLUMNS": "200",
           "ROUTECAST_COARSE_CANDIDATES": '["naive", "seasonal_naive"]'}  # fmt: skip
    base = [sys.executable, "-m", "routecast.cli", "forecast", str(main), "--source", "generic", "--freq", "M"]
    base += ["--as-of", str(MONTHS[-1].date()), "--horizon", "2"]
    ok = subprocess.run([*base, "--pool", f"generic={main}"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].startswith("route,ds,yhat") and "ensemble" in ok.stdout
    for bad in ("frontex", f"atlantis={main}", f"generic={tmp_path / 'nope.csv'}"):
        out = subprocess.run([*base, "--pool", bad], capture_output=True, text=True, env=env)
        assert out.returncode == 2 and "write SOURCE=FILE" in out.stderr, out.stderr
