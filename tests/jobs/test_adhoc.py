"""``routecast forecast``: an analyst's counts file in, per-route forecasts after --as-of out (no Spark)."""

import datetime as dt
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jobs.analysis.adhoc import ADHOC_COLUMNS, adhoc_forecast, last_ended_period, to_coarser
from tests.conftest import SHARED_DATA

WEEK = [10, 20, 30, 40, 50, 60, 70]


def _generic(tmp_path, rows, name="counts.csv"):
    path = tmp_path / name
    path.write_text("date,route,count\n" + "".join(f"{d},{r},{c}\n" for d, r, c in rows))
    return path


def _weekly_pattern(route, start, days):
    first = dt.date.fromisoformat(start)
    return [((first + dt.timedelta(days=i)).isoformat(), route, WEEK[i % 7]) for i in range(days)]


def test_last_ended_period_per_freq():
    assert last_ended_period(dt.date(2025, 6, 29), "W") == pd.Timestamp("2025-06-23")  # a Sunday ends its week
    assert last_ended_period(dt.date(2025, 6, 28), "W") == pd.Timestamp("2025-06-16")
    assert last_ended_period(dt.date(2025, 6, 30), "M") == pd.Timestamp("2025-06-01")
    assert last_ended_period(dt.date(2025, 6, 29), "M") == pd.Timestamp("2025-05-01")
    assert last_ended_period(dt.date(2025, 6, 29), "D") == pd.Timestamp("2025-06-29")


def test_only_data_up_to_as_of_is_used_and_the_next_periods_are_forecast(tmp_path):
    # A pure weekly pattern from Monday 6 Jan 2025 for 120 days; later rows would break the pattern if used.
    rows = _weekly_pattern("channel", "2025-01-06", 120)
    rows += [("2025-05-06", "channel", 9999)]  # after --as-of: must be ignored
    result = adhoc_forecast(_generic(tmp_path, rows), "generic", dt.date(2025, 4, 27), horizon=7)
    table = result.table
    assert list(table.columns) == ADHOC_COLUMNS
    # 27 April 2025 is a Sunday: the forecast is the next Monday..Sunday, the pattern again.
    assert table["ds"].tolist() == [dt.date(2025, 4, 28) + dt.timedelta(days=i) for i in range(7)]
    assert table["yhat"].tolist() == pytest.approx(WEEK)
    assert (table["route"] == "channel").all()
    assert (
        (table["lo80"] <= table["yhat"]) & (table["yhat"] <= table["hi80"]) & (table["hi80"] <= table["hi95"])
    ).all()


def test_a_series_ending_before_as_of_is_forecast_from_its_end_and_noted(tmp_path):
    rows = _weekly_pattern("channel", "2025-01-06", 70)  # to Sunday 16 March
    result = adhoc_forecast(_generic(tmp_path, rows), "generic", dt.date(2025, 3, 23), horizon=3)
    assert result.table["ds"].tolist() == [dt.date(2025, 3, 24), dt.date(2025, 3, 25), dt.date(2025, 3, 26)]
    assert result.table["yhat"].tolist() == pytest.approx(WEEK[:3])
    assert any("data end 2025-03-16, 7 day(s) before 2025-03-23" in note for note in result.notes)


def test_daily_counts_sum_into_complete_weeks_only():
    days = pd.date_range("2025-01-06", periods=17)  # Monday 6 Jan .. Wednesday 22 Jan
    series = pd.DataFrame({"series_id": "s", "ds": days, "y": np.ones(17)})
    weekly = to_coarser(series, "W")
    assert weekly["ds"].tolist() == [pd.Timestamp("2025-01-06"), pd.Timestamp("2025-01-13")]
    assert weekly["y"].tolist() == [7.0, 7.0]  # the third week has 3 of its 7 days: left out


def test_a_short_route_is_noted_and_the_others_forecast(tmp_path):
    rows = _weekly_pattern("channel", "2025-01-06", 70) + _weekly_pattern("central_mediterranean", "2025-03-10", 7)
    result = adhoc_forecast(_generic(tmp_path, rows), "generic", dt.date(2025, 3, 16), horizon=2)
    assert set(result.table["route"]) == {"channel"}
    assert any(note.startswith("central_mediterranean: not forecast:") and "too short" in note for note in result.notes)


def test_bad_requests_are_refused_clearly(tmp_path):
    path = _generic(tmp_path, _weekly_pattern("channel", "2025-01-06", 70))
    with pytest.raises(ValueError, match="horizon 0 must be a positive"):
        adhoc_forecast(path, "generic", dt.date(2025, 3, 16), horizon=0)
    with pytest.raises(ValueError, match="no route of counts.csv could be forecast as of 2025-01-10"):
        adhoc_forecast(path, "generic", dt.date(2025, 1, 10), horizon=2)


def test_the_cli_prints_csv_and_json_and_refuses_a_finer_freq(tmp_path):
    path = _generic(tmp_path, _weekly_pattern("channel", "2025-01-06", 70))
    base = [
        sys.executable,
        "-m",
        "routecast.cli",
        "forecast",
        str(path),
        "--source",
        "generic",
        "--as-of",
        "2025-03-16",
    ]
    out = subprocess.run([*base, "--horizon", "2"], capture_output=True, text=True, check=True)
    frame = pd.read_csv(io.StringIO(out.stdout))
    assert list(frame.columns) == ADHOC_COLUMNS and frame["yhat"].tolist() == [10.0, 20.0]
    out = subprocess.run([*base, "--horizon", "1", "--format", "json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)[0]["ds"] == "2025-03-17"
    if not (SHARED_DATA / "frontex_ibc_monthly_by_route.csv").is_file():
        pytest.skip(f"real data absent: {SHARED_DATA} (the shared folder beside the repository)")
    bad = subprocess.run(
        [sys.executable, "-m", "routecast.cli", "forecast", str(SHARED_DATA / "frontex_ibc_monthly_by_route.csv"),
         "--source", "frontex", "--as-of", "2024-03-31", "--horizon", "1", "--freq", "D"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "frontex counts are per month; they can be forecast per month only" in bad.stderr


def test_real_uk_channel_weekly_forecast_after_an_earlier_date():
    path = SHARED_DATA / "uk_small_boats_daily.csv"
    if not path.is_file():
        pytest.skip(f"real data absent: {path} (the shared folder beside the repository)")
    result = adhoc_forecast(path, "uk-channel", dt.date(2024, 6, 30), horizon=4, freq="W")
    table = result.table
    assert table["ds"].tolist() == [dt.date(2024, 7, 1) + dt.timedelta(weeks=i) for i in range(4)]
    assert (table["route"] == "channel").all() and (table[["lo95", "lo80", "yhat"]] >= 0).all().all()
