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

# Daily official counts are forecast from their recent level and last year's same weeks (no weekday rhythm): a
# constant level is forecast as itself.
LEVEL = 40


def _generic(tmp_path, rows, name="counts.csv"):
    path = tmp_path / name
    path.write_text("date,route,count\n" + "".join(f"{d},{r},{c}\n" for d, r, c in rows))
    return path


def _level(route, start, days):
    first = dt.date.fromisoformat(start)
    return [((first + dt.timedelta(days=i)).isoformat(), route, LEVEL) for i in range(days)]


def test_last_ended_period_per_freq():
    assert last_ended_period(dt.date(2025, 6, 29), "W") == pd.Timestamp("2025-06-23")  # a Sunday ends its week
    assert last_ended_period(dt.date(2025, 6, 28), "W") == pd.Timestamp("2025-06-16")
    assert last_ended_period(dt.date(2025, 6, 30), "M") == pd.Timestamp("2025-06-01")
    assert last_ended_period(dt.date(2025, 6, 29), "M") == pd.Timestamp("2025-05-01")
    assert last_ended_period(dt.date(2025, 6, 29), "D") == pd.Timestamp("2025-06-29")


def test_only_data_up_to_as_of_is_used_and_the_next_periods_are_forecast(tmp_path):
    # A constant level from Monday 6 Jan 2025 for 120 days; a later row would move the forecast if used.
    rows = _level("channel", "2025-01-06", 120)
    rows += [("2025-05-06", "channel", 9999)]  # after --as-of: must be ignored
    result = adhoc_forecast(_generic(tmp_path, rows), "generic", dt.date(2025, 4, 27), horizon=7)
    table = result.table
    assert list(table.columns) == ADHOC_COLUMNS
    # 27 April 2025 is a Sunday: the forecast is the next Monday..Sunday, the level again.
    assert table["ds"].tolist() == [dt.date(2025, 4, 28) + dt.timedelta(days=i) for i in range(7)]
    assert table["yhat"].tolist() == pytest.approx([LEVEL] * 7)
    assert (table["route"] == "channel").all()
    assert (
        (table["lo80"] <= table["yhat"]) & (table["yhat"] <= table["hi80"]) & (table["hi80"] <= table["hi95"])
    ).all()


def test_a_series_ending_before_as_of_is_forecast_from_its_end_and_noted(tmp_path):
    rows = _level("channel", "2025-01-06", 70)  # to Sunday 16 March
    result = adhoc_forecast(_generic(tmp_path, rows), "generic", dt.date(2025, 3, 23), horizon=3)
    assert result.table["ds"].tolist() == [dt.date(2025, 3, 24), dt.date(2025, 3, 25), dt.date(2025, 3, 26)]
    assert result.table["yhat"].tolist() == pytest.approx([LEVEL] * 3)
    assert any("data end 2025-03-16, 7 day(s) before 2025-03-23" in note for note in result.notes)


def test_totals_of_the_next_days_come_with_intervals_of_the_total_and_exceedance(tmp_path):
    rng = np.random.default_rng(7)
    first = dt.date(2025, 1, 6)
    rows = [((first + dt.timedelta(days=i)).isoformat(), "channel", int(rng.poisson(40))) for i in range(200)]
    as_of = first + dt.timedelta(days=199)
    result = adhoc_forecast(_generic(tmp_path, rows), "generic", as_of, horizon=28, exceeds=300)
    totals = result.totals.set_index("window")
    assert list(totals.index) == [7, 28]
    week = totals.loc[7]
    assert week["start"] == as_of + dt.timedelta(days=1) and week["end"] == as_of + dt.timedelta(days=7)
    assert week["lo95"] <= week["lo80"] <= week["yhat"] <= week["hi80"] <= week["hi95"]
    assert 200 < week["yhat"] < 360 and week["n_scores"] >= 9  # about 7 x 40
    # More than 300 in a week whose expected total is about 280: likely but far from certain.
    assert 0.05 < week["p_exceeds"] < 0.95 and week["p_bound"] == ""
    # The total's interval is narrower than the sum of the daily bounds (daily misses partly cancel).
    days = result.table.head(7)
    assert week["hi80"] - week["lo80"] < (days["hi80"] - days["lo80"]).sum()
    with pytest.raises(ValueError, match="exceeds -1.0 must be a number of people"):
        adhoc_forecast(_generic(tmp_path, rows), "generic", as_of, horizon=28, exceeds=-1.0)


def test_daily_counts_sum_into_complete_weeks_only():
    days = pd.date_range("2025-01-06", periods=17)  # Monday 6 Jan .. Wednesday 22 Jan
    series = pd.DataFrame({"series_id": "s", "ds": days, "y": np.ones(17)})
    weekly = to_coarser(series, "W")
    assert weekly["ds"].tolist() == [pd.Timestamp("2025-01-06"), pd.Timestamp("2025-01-13")]
    assert weekly["y"].tolist() == [7.0, 7.0]  # the third week has 3 of its 7 days: left out


def test_a_short_route_is_noted_and_the_others_forecast(tmp_path):
    rows = _level("channel", "2025-01-06", 70) + _level("central_mediterranean", "2025-03-10", 7)
    result = adhoc_forecast(_generic(tmp_path, rows), "generic", dt.date(2025, 3, 16), horizon=2)
    assert set(result.table["route"]) == {"channel"}
    assert any(note.startswith("central_mediterranean: not forecast:") and "too short" in note for note in result.notes)


def test_landings_are_forecast_per_landing_place_and_named_so(tmp_path):
    months = pd.date_range("2022-01-01", periods=40, freq="MS")
    path = tmp_path / "landings.csv"
    path.write_text(
        "date,route,crossing_point,count\n"
        + "".join(f"{m:%Y-%m-%d},channel,{p},{n}\n" for m in months for p, n in (("dover", 300), ("dungeness", 100)))
    )
    result = adhoc_forecast(path, "landings", dt.date(2025, 4, 30), horizon=2)
    assert set(result.table["route"]) == {"channel/dover", "channel/dungeness"}
    dover = result.table[result.table["route"] == "channel/dover"]
    assert dover["ds"].tolist() == [dt.date(2025, 5, 1), dt.date(2025, 6, 1)]
    assert dover["yhat"].tolist() == pytest.approx([300, 300], rel=0.05)


def test_bad_requests_are_refused_clearly(tmp_path):
    path = _generic(tmp_path, _level("channel", "2025-01-06", 70))
    with pytest.raises(ValueError, match="horizon 0 must be a positive"):
        adhoc_forecast(path, "generic", dt.date(2025, 3, 16), horizon=0)
    with pytest.raises(ValueError, match="no route of counts.csv could be forecast as of 2025-01-10"):
        adhoc_forecast(path, "generic", dt.date(2025, 1, 10), horizon=2)


def test_the_cli_prints_csv_and_json_and_refuses_a_finer_freq(tmp_path):
    path = _generic(tmp_path, _level("channel", "2025-01-06", 70))
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
    assert list(frame.columns) == ADHOC_COLUMNS and frame["yhat"].tolist() == [40.0, 40.0]
    out = subprocess.run([*base, "--horizon", "1", "--format", "json"], capture_output=True, text=True, check=True)
    answer = json.loads(out.stdout)
    assert answer["forecasts"][0]["ds"] == "2025-03-17" and answer["totals"] == []  # 1 day: no total that long
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
