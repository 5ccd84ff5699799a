"""routecast evaluate: the product's procedure rolled over a counts file's last origins, beside the baselines."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from jobs.analysis.evaluate import MLFLOW_EXPERIMENT, EvaluationError, evaluate_file, horizon_groups
from jobs.settings import JobSettings


def _generic(tmp_path, values, start="2022-01-01", freq="D", route="channel"):
    index = pd.date_range(start, periods=len(values), freq={"D": "D", "M": "MS"}[freq])
    path = tmp_path / f"counts-{freq}.csv"
    path.write_text(
        "date,route,count\n" + "".join(f"{d.date()},{route},{int(v)}\n" for d, v in zip(index, values, strict=True))
    )
    return path


def test_totals_are_scored_against_the_last_k_days_and_the_same_days_a_year_before(tmp_path, settings):
    # y = day number: the last 7 days' total misses the next 7 days' by 7 x 7 = 49, last year's by 364 x 7.
    path = _generic(tmp_path, np.arange(800))
    result = evaluate_file(path, "generic", origins=3, settings=settings, log=False)
    week = result.totals.set_index("window").loc[7]
    assert week["n"] == 3
    assert week["mae.naive_total"] == pytest.approx(49.0)
    assert week["mae.seasonal_naive_total"] == pytest.approx(364 * 7)
    assert week["ratio"] == pytest.approx(week["mae.champion"] / 49.0)
    assert list(result.totals["window"]) == [7, 28]
    # Per day: naive (yesterday), last week's weekday and last year's day are all scored on the same forecasts.
    assert {"mae.naive", "mae.seasonal_naive", "mae.seasonal_naive_year"} <= set(result.steps.columns)
    assert result.steps["horizon"].tolist() == ["1", "1-7", "8-28", "1-28"]
    assert (result.steps["n"] == [3, 21, 63, 84]).all()
    # Origins: weekly, the last one 28 days before the end, so every horizon is scored on the same origins.
    assert result.origins == ["2024-01-28", "2024-02-04", "2024-02-11"]  # the file ends on 10 March


def test_an_earlier_window_uses_only_periods_ended_by_until(tmp_path, settings):
    path = _generic(tmp_path, np.arange(800))
    result = evaluate_file(path, "generic", origins=2, until=dt.date(2023, 12, 31), settings=settings, log=False)
    # The last origin's 28 days end on 31 December: it saw up to 3 December.
    assert result.origins[-1] == "2023-12-03"
    assert pd.to_datetime(result.rows["ds"]).max() <= pd.Timestamp("2023-12-31")


def test_a_monthly_file_is_scored_per_month_ahead_and_logged_to_mlflow(tmp_path):
    rng = np.random.default_rng(1)
    months = np.arange(120)
    values = 1000 + 400 * np.sin(2 * np.pi * months / 12) + rng.normal(0, 60, 120)
    path = _generic(tmp_path, values, start="2014-01-01", freq="M")
    # The product's monthly procedure with cheap candidates (statsforecast would only make the test slower).
    settings = JobSettings(var_dir=tmp_path / "var", coarse_candidates=("naive", "seasonal_naive", "window_mean"))
    result = evaluate_file(path, "generic", freq="M", origins=6, settings=settings)
    assert result.procedure == "counts:M"
    assert result.config.candidates == ("naive", "seasonal_naive", "window_mean", "pooled_lgbm")  # learns from the file
    assert result.steps["horizon"].tolist() == ["1", "2", "3"] and (result.steps["n"] == 6).all()
    assert result.totals["window"].tolist() == [1, 3]
    assert np.isfinite(result.steps["ratio"]).all()
    assert (result.output_dir / "summary.md").read_text().startswith("## counts-M.csv (generic), per month")
    run = MlflowClient(settings.tracking_uri).get_run(result.run_id)
    assert run.data.params["procedure"] == "counts:M" and run.data.params["origins"] == "6"
    assert run.data.metrics["ratio.step1"] == pytest.approx(result.steps.iloc[0]["ratio"])
    assert run.data.metrics["coverage80.total3"] == pytest.approx(result.totals.iloc[-1]["coverage80"])
    experiment = MlflowClient(settings.tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.name == MLFLOW_EXPERIMENT


def test_what_cannot_be_evaluated_is_refused_in_a_sentence(tmp_path, settings):
    path = _generic(tmp_path, np.arange(800))
    with pytest.raises(EvaluationError, match="is long enough to evaluate: .*too short for any origin"):
        evaluate_file(path, "generic", origins=2, until=dt.date(2022, 2, 1), settings=settings, log=False)
    with pytest.raises(EvaluationError, match="not found"):
        evaluate_file(tmp_path / "missing.csv", "generic", settings=settings, log=False)
    with pytest.raises(EvaluationError, match="origins, step and horizon must be positive"):
        evaluate_file(path, "generic", origins=0, settings=settings, log=False)


def test_daily_horizons_group_the_first_day_the_first_week_and_the_rest():
    assert horizon_groups("D", 28) == [("1", 1, 1), ("1-7", 1, 7), ("8-28", 8, 28), ("1-28", 1, 28)]
    assert horizon_groups("D", 5) == [("1", 1, 1), ("1-5", 1, 5)]
    assert horizon_groups("M", 3) == [("1", 1, 1), ("2", 2, 2), ("3", 3, 3)]


def test_the_cli_prints_the_tables_and_refuses_bad_input_with_exit_code_2(tmp_path):
    path = _generic(tmp_path, np.arange(800))
    env = {**os.environ, "ROUTECAST_VAR_DIR": str(tmp_path / "var"), "COLUMNS": "200"}
    base = [sys.executable, "-m", "routecast.cli", "evaluate", str(path), "--source", "generic"]
    out = subprocess.run([*base, "--origins", "2"], capture_output=True, text=True, env=env, check=True)
    assert "| days ahead | n |" in out.stdout and "Totals of the next k days" in out.stdout
    bad = subprocess.run([*base, "--until", "2022-02-01"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "too short for any origin" in bad.stdout + bad.stderr
