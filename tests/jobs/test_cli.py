"""The ``routecast`` command line: argument errors before any Spark starts, and one real run in a subprocess.

The commands that run Spark build and stop their own session, so they run here as a user would run them
(a subprocess), never inside the test process whose session-scoped SparkSession they would stop.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from jobs.stages.counts import SOURCES
from routecast.cli import CountsSource, app
from tests.cli_env import short_lived_jvm

# Rich wraps error boxes to the terminal's width, which depends on the machine and, with a temporary path in the
# message, on how long that path is: a fixed, wide terminal, and checks on the words (plain) rather than the lines.
runner = CliRunner(env={"COLUMNS": "1000"})


def plain(output: str) -> str:
    """CLI output as one line of words, box drawing removed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def test_the_source_choices_are_the_sources_counts_reads():
    assert tuple(s.value for s in CountsSource) == SOURCES


def test_ingest_counts_refuses_a_missing_file_and_an_unknown_source(tmp_path):
    missing = runner.invoke(app, ["ingest-counts", str(tmp_path / "nope.csv"), "--source", "frontex"])
    assert missing.exit_code == 2
    assert "does not exist" in plain(missing.output)

    f = tmp_path / "c.csv"
    f.write_text("date,route,count\n2025-01-01,channel,3\n")
    bogus = runner.invoke(app, ["ingest-counts", str(f), "--source", "bogus"])
    assert bogus.exit_code == 2
    assert "'bogus' is not one of" in plain(bogus.output)


@pytest.mark.slow
def test_ingest_counts_writes_gold_and_quarantine_and_prints_the_accounting(tmp_path):
    f = tmp_path / "weekly.csv"
    f.write_text(
        "date,route,count\n"
        "2025-01-06,channel,10\n"
        "2025-01-13,channel,12\n"
        "2025-01-13,channel,12\n"  # a repeat: kept once, counted as a duplicate
        "2025-01-20,nowhere,5\n"  # unknown route: quarantined
        "2025-01-27,channel,-1\n"  # negative: quarantined
    )
    var = tmp_path / "var"
    env = {
        **os.environ,
        "ROUTECAST_VAR_DIR": str(var),
        "ROUTECAST_SPARK_PROFILE": "test",
        "JDK_JAVA_OPTIONS": short_lived_jvm(dict(os.environ)),
    }
    cmd = [sys.executable, "-m", "routecast.cli", "ingest-counts", str(f), "--source", "generic", "--freq", "W"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stderr.split())
    assert "5 rows in = 2 accepted + 2 quarantined + 1 duplicates" in out

    gold = pd.read_parquet(var / "lake" / "gold" / "series")
    assert sorted(gold["y"].tolist()) == [10.0, 12.0]
    assert set(gold["freq"]) == {"W"}
    quarantine = pd.read_parquet(var / "lake" / "quarantine" / "counts")
    assert sorted(quarantine["reason"]) == ["negative_count", "unknown_route"]


def test_simulate_refuses_a_bad_config_before_starting_spark(tmp_path):
    bad = tmp_path / "sim.toml"
    bad.write_text("seed = 1\nsede = 2\n")
    result = runner.invoke(app, ["simulate", "--config", str(bad)])
    assert result.exit_code == 2
    assert "sim.toml" in plain(result.output) and "sede" in plain(result.output)
    missing_scale = runner.invoke(app, ["simulate", "--scale", "huge"])
    assert missing_scale.exit_code == 2


def test_truth_without_a_simulation_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTECAST_VAR_DIR", str(tmp_path / "var"))
    result = runner.invoke(app, ["truth", "--date", "2026-07-30"])
    assert result.exit_code == 2
    assert "routecast simulate" in plain(result.output)


def test_privacy_ledger_lists_what_each_month_spent(tmp_path, monkeypatch):
    import datetime as dt

    from jobs.privacy.ledger import PrivacyLedger
    from jobs.settings import JobSettings

    monkeypatch.setenv("ROUTECAST_VAR_DIR", str(tmp_path))
    assert "no privacy charges" in runner.invoke(app, ["privacy-ledger"]).output
    dp = JobSettings(dp_mechanism="laplace", dp_secret="a-long-test-secret-0123456789", dp_budget=5.0)
    ledger = PrivacyLedger(dp)
    ledger.charge("density/2025-03-10", dt.date(2025, 3, 10), "fp-a")
    ledger.charge("density/2025-03-11", dt.date(2025, 3, 11), "fp-b")
    ledger.charge("density/2025-04-01", dt.date(2025, 4, 1), "fp-c")
    summary = runner.invoke(app, ["privacy-ledger"], env={"ROUTECAST_DP_BUDGET": "5"})
    assert summary.exit_code == 0
    lines = summary.output.splitlines()
    assert lines[0].split()[:4] == ["period", "releases", "charges", "epsilon_spent"]
    assert lines[1].split()[:4] == ["2025-03", "2", "2", "2.0"] and lines[1].split()[-1] == "3.0"
    month = runner.invoke(app, ["privacy-ledger", "--period", "2025-04"])
    assert "density/2025-04-01" in month.output and "density/2025-03-10" not in month.output


def test_models_lists_the_champion_history(tmp_path, monkeypatch):
    from forecasting.selection import SelectionConfig, select_and_forecast
    from forecasting.tracking import log_forecast_run
    from jobs.settings import JobSettings
    from tests.forecasting.fakes import series_frame

    monkeypatch.setenv("ROUTECAST_VAR_DIR", str(tmp_path))
    empty = runner.invoke(app, ["models"])
    assert empty.exit_code == 1 and "run the pipeline first" in plain(empty.output)

    settings = JobSettings()
    cfg = SelectionConfig(holdout=7, horizon=7, candidates=("naive", "seasonal_naive"), ensemble_top=0)
    week = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
    forecasts, metrics = select_and_forecast(series_frame("route:a", week * 4), cfg)
    for night in ("nightly-2026-11-21", "nightly-2026-11-22"):
        log_forecast_run(
            tracking_uri=settings.tracking_uri,
            experiment=settings.mlflow_experiment,
            run_name=night,
            params={},
            forecasts=forecasts,
            metrics=metrics,
            registered_model=settings.registered_model,
            plots=0,
        )
    listed = runner.invoke(app, ["models"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert "nightly-2026-11-21" in listed.output and "nightly-2026-11-22" in listed.output
    assert "◀ champion" in listed.output
    # The newest version is listed first and is the champion (same scores on the same backtest: promoted).
    assert listed.output.index("nightly-2026-11-22") < listed.output.index("nightly-2026-11-21")


def test_bad_settings_end_the_command_with_one_clear_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    from routecast.cli import main

    secret = "change-me-please-0123"
    monkeypatch.setenv("ROUTECAST_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ROUTECAST_DP_MECHANISM", "laplace")
    monkeypatch.setenv("ROUTECAST_DP_SECRET", secret)
    monkeypatch.setenv("COLUMNS", "1000")
    monkeypatch.setattr(sys, "argv", ["routecast", "privacy-ledger"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    err = plain(capsys.readouterr().err)
    assert err.startswith("error: invalid settings: ROUTECAST_DP_SECRET contains the placeholder")
    assert "Traceback" not in err
    assert secret not in err
    monkeypatch.setenv("ROUTECAST_MIN_DEVICES", "14")
    with pytest.raises(SystemExit):
        main()
    assert "ROUTECAST_MIN_DEVICES: " in plain(capsys.readouterr().err)
