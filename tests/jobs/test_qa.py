"""QA checks as data (jobs.orchestration.qa), on hand-made stage results: no Spark."""

import datetime as dt
import io
import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rich.console import Console

from forecasting.selection import FORECAST_COLUMNS, METRICS_COLUMNS
from forecasting.tracking import RunInfo
from jobs.orchestration import qa
from jobs.orchestration.runs import Ledger
from jobs.settings import JobSettings
from jobs.stages.aggregate import AggregateCounts
from jobs.stages.flows import FlowCounts
from jobs.stages.forecast import KEY_COLUMNS, ForecastResult
from jobs.stages.ingest import IngestCounts
from jobs.stages.tiles import TileCounts

DAY = dt.date(2025, 6, 30)
RUN = RunInfo(run_id="mlflow-1", model_version="1", experiment_id="1", tracking_uri="sqlite:///m.db")


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qa.toml"
    path.write_text(text)
    return path


def _ingest(rows_in: int = 1000, quarantined: int = 10, duplicates: int = 30, deferred: int = 20) -> IngestCounts:
    accepted = rows_in - quarantined - duplicates - deferred
    return IngestCounts(
        rows_in=rows_in,
        accepted=accepted,
        deferred=deferred,
        quarantined=quarantined,
        duplicates=duplicates,
        files_in=4,
        rejected_files=(("raw/bad.parquet", "not Parquet"),),
    )


# --- config ---------------------------------------------------------------------------------------------------


def test_the_packaged_config_declares_the_documented_checks():
    config = qa.load_config()
    assert config.path == qa.DEFAULT_CONFIG_PATH
    quarantined = config.get("ingest", "share_quarantined")
    assert (quarantined.min, quarantined.max, quarantined.blocking) == (None, 0.05, True)
    jumping = config.get("forecast", "share_jumping")
    assert (jumping.max, jumping.blocking, jumping.jump_factor, jumping.jump_floor) == (0.2, True, 3.0, 10.0)
    assert (config.get("forecast", "failed_share").max, config.get("forecast", "failed_share").blocking) == (0.1, True)
    series = config.get("series", "rows_vs_previous")
    assert (series.min, series.max, series.window, series.blocking) == (0.9, 1.5, 7, False)
    assert config.get("aggregate", "share_suppressed").blocking is False
    assert config.get("ingest", "rows_in") is None  # informational: no table
    assert all(c.description for c in config.checks)


def test_settings_point_at_another_config(tmp_path, monkeypatch):
    path = _config(tmp_path, '[ingest.share_quarantined]\nmax = 0.01\nblocking = true\ndescription = "strict"\n')
    monkeypatch.setenv("ROUTECAST_QA_CONFIG", str(path))
    settings = JobSettings(var_dir=tmp_path / "var")
    assert settings.qa_config == path
    config = qa.load_config(settings.qa_config)
    assert [(c.dataset, c.check, c.max, c.description) for c in config.checks] == [
        ("ingest", "share_quarantined", 0.01, "strict")
    ]
    monkeypatch.delenv("ROUTECAST_QA_CONFIG")
    assert JobSettings(var_dir=tmp_path).qa_config is None  # None: load_config reads the packaged file


def test_a_check_without_description_gets_the_values_own(tmp_path):
    loaded = qa.load_config(_config(tmp_path, "[forecast.max_jump]\nmax = 50\n"))
    assert loaded.get("forecast", "max_jump").description == qa.VALUES["forecast"]["max_jump"]
    assert (loaded.get("forecast", "max_jump").max, loaded.stage("ingest")) == (50.0, {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[publish.size]\nmax = 1\n", "[publish] not a stage with checks; expected one of ingest, aggregate"),
        ("[ingest.share_lost]\nmax = 1\n", "[ingest.share_lost] not a check of ingest; expected one of rows_in"),
        ("[ingest.share_quarantined]\nmaximum = 0.1\n", "[ingest.share_quarantined] 'maximum' is not a known key"),
        ("[ingest.share_quarantined]\nwindow = 3\n", "[ingest.share_quarantined] 'window' is not a known key"),
        ("[ingest.rows_vs_previous]\nmin = 2.0\nmax = 0.5\n", "[ingest.rows_vs_previous] min = 2 is above max = 0.5"),
        ("[ingest.rows_vs_previous]\nwindow = 0\n", "[ingest.rows_vs_previous] window must be a whole number >= 1"),
        ("[ingest.share_quarantined]\nmax = '5%'\n", "[ingest.share_quarantined] max must be a number, got '5%'"),
        ("[ingest.share_quarantined]\nmax = 0.1\nblocking = 'yes'\n", "blocking must be true or false, got 'yes'"),
        ("[ingest.rows_in]\nblocking = true\n", "[ingest.rows_in] blocking, but has neither min nor max"),
        ("[forecast.share_jumping]\njump_floor = 0\n", "[forecast.share_jumping] jump_floor must be > 0, got 0"),
        ("[forecast.max_jump]\njump_factor = 2\n", "[forecast.max_jump] 'jump_factor' is not a known key"),
        ("ingest = 3\n", "[ingest] must be tables [ingest.<check>], got 3"),
        ("[ingest]\nshare_quarantined = 0.05\n", "[ingest.share_quarantined] must be a table of blocking"),
        ("[ingest.share_quarantined\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_file_and_the_check(tmp_path, text, expected):
    path = _config(tmp_path, text)
    with pytest.raises(qa.QAConfigError) as caught:
        qa.load_config(path)
    assert str(caught.value).startswith(f"QA config {path}: ")
    assert expected in str(caught.value)


def test_a_missing_config_file_says_which_and_what_to_do(tmp_path):
    with pytest.raises(qa.QAConfigError, match="qa.toml not found; set ROUTECAST_QA_CONFIG"):
        qa.load_config(tmp_path / "qa.toml")


# --- values ---------------------------------------------------------------------------------------------------


def test_ingest_values():
    values = qa.stage_values("ingest", _ingest(rows_in=1000, quarantined=50, duplicates=30, deferred=20))
    assert values == {
        "rows_in": 1000.0,
        "rows_accepted": 900.0,
        "files_rejected": 1.0,
        "share_quarantined": 0.05,
        "share_duplicates": 0.03,
    }


def test_tile_values_have_no_files_and_an_empty_input_has_no_shares():
    tiles = TileCounts(rows_in=200, accepted=150, deferred=0, earlier=10, quarantined=40, duplicates=0)
    assert qa.stage_values("ingest", tiles) == {
        "rows_in": 200.0,
        "rows_accepted": 150.0,
        "share_quarantined": 0.2,
        "share_duplicates": 0.0,
    }
    empty = TileCounts(rows_in=0, accepted=0, deferred=0, earlier=0, quarantined=0, duplicates=0)
    assert qa.stage_values("ingest", empty) == {"rows_in": 0.0, "rows_accepted": 0.0}


def test_aggregate_values():
    counts = AggregateCounts(
        pings_in=50_000,
        aggregates=200,
        published=30,
        suppressed=170,
        hourly_aggregates=1000,
        hourly_published=100,
        dp_refused=(DAY,),
    )
    assert qa.stage_values("aggregate", counts) == {
        "cell_days": 200.0,
        "rows_published": 30.0,
        "dp_refused_dates": 1.0,
        "share_suppressed": 0.85,
        "share_hourly_suppressed": 0.9,
    }
    no_hourly = AggregateCounts(pings_in=10, aggregates=4, published=1, suppressed=3)
    assert "share_hourly_suppressed" not in qa.stage_values("aggregate", no_hourly)
    groups = AggregateCounts(
        pings_in=10, aggregates=4, published=1, suppressed=3, group_aggregates=8, group_published=2
    )
    values = qa.stage_values("aggregate", groups)
    assert (values["share_group_suppressed"], values["group_devices_unassigned"]) == (0.75, 0.0)
    assert "share_group_suppressed" not in qa.stage_values("aggregate", no_hourly)  # no groups made


def test_flow_and_series_values():
    counts = FlowCounts(
        device_days=500,
        segment_device_days=40,
        segment_transitions=10,
        segment_published=2,
        segment_suppressed=8,
        cell_device_days=90,
        cell_transitions=30,
        cell_published=6,
        cell_suppressed=24,
        series_rows=120,
    )
    assert qa.stage_values("flows", counts) == {
        "device_days": 500.0,
        "rows_published": 8.0,
        "series_rows": 120.0,
        "share_suppressed": 0.8,
    }
    assert qa.stage_values("series", 3_270) == {"rows": 3270.0}


def test_stages_without_checks_are_refused():
    with pytest.raises(ValueError, match="no QA values for stage 'publish'; the stages with checks are ingest"):
        qa.stage_values("publish", None)


def _forecast_result() -> ForecastResult:
    """Six series read. Last actual → first forecast: a 100 → 110 (jump 0.1), b 100 → 20 (80 / 20 = 4: a collapse
    jumps), c 0 → 5 (5 / floor 10 = 0.5), d 2 → 50 (48 / 10 = 4.8); e failed; f has no history to compare."""
    ids = list("abcdef")
    keys = pd.DataFrame(
        [(s, "segment", "r", s, "D", "density", DAY) for s in ids], columns=[*KEY_COLUMNS, "last_observed"]
    )
    later, first = pd.Timestamp("2025-07-02"), pd.Timestamp("2025-07-01")
    # Unsorted on purpose, with a later step far off: the first step is what is compared.
    points = [("a", later, 1000.0), ("a", first, 110.0), ("b", first, 20.0), ("c", first, 5.0)]
    points += [("d", first, 50.0), ("d", later, 9.0), ("f", first, 7.0)]
    forecasts = pd.DataFrame(
        [(s, ds, y, y, y, y, y, "seasonal_naive") for s, ds, y in points], columns=FORECAST_COLUMNS
    )
    history = pd.DataFrame(
        [
            ("a", pd.Timestamp("2025-06-29"), 5.0),  # earlier: the last value counts
            ("a", pd.Timestamp("2025-06-30"), 100.0),
            ("b", pd.Timestamp("2025-06-30"), 100.0),
            ("c", pd.Timestamp("2025-06-30"), 0.0),
            ("d", pd.Timestamp("2025-06-30"), 2.0),
        ],
        columns=["series_id", "ds", "y"],
    )
    return ForecastResult(
        forecasts=forecasts,
        metrics=pd.DataFrame(columns=METRICS_COLUMNS),
        keys=keys,
        failed={"e": "series too short"},
        run=RUN,
        history=history,
        inputs={},
    )


def test_forecast_jumps_against_the_last_actuals():
    table = qa.jumps(_forecast_result())
    assert table["series_id"].tolist() == ["d", "b", "c", "a"]  # largest jump first; e, f not compared
    assert table["jump"].tolist() == pytest.approx([4.8, 4.0, 0.5, 0.1])
    assert table["jumping"].tolist() == [True, True, False, False]
    assert table.loc[table["series_id"] == "a", ["y_last", "yhat1"]].values.tolist() == [[100.0, 110.0]]

    values = qa.stage_values("forecast", _forecast_result())
    assert values == pytest.approx(
        {"series": 6.0, "failed_share": 1 / 6, "share_jumping": 0.5, "max_jump": 4.8, "jumping": 2.0}
    )


def test_the_jump_parameters_come_from_the_config(tmp_path):
    config = qa.load_config(_config(tmp_path, "[forecast.share_jumping]\nmax = 0.2\njump_factor = 4.5\n"))
    assert qa.stage_values("forecast", _forecast_result(), config)["share_jumping"] == 0.25  # only d (4.8)
    config = qa.load_config(_config(tmp_path, "[forecast.share_jumping]\nmax = 0.2\njump_floor = 100.0\n"))
    # floor 100: b 80 / 100, d 48 / 100; nothing jumps
    assert qa.stage_values("forecast", _forecast_result(), config)["max_jump"] == pytest.approx(0.8)


def test_a_forecast_with_no_history_compares_nothing():
    result = _forecast_result()
    empty = ForecastResult(result.forecasts, result.metrics, result.keys, result.failed, result.run)
    assert qa.stage_values("forecast", empty) == pytest.approx({"series": 6.0, "failed_share": 1 / 6})


# --- store and evaluation -------------------------------------------------------------------------------------


def _result(check: str, value: float, *, run_id: str = "r1", day: dt.date = DAY, **kw) -> qa.CheckResult:
    fields = {"min": None, "max": None, "passed": True, "blocking": False, "description": "d"} | kw
    return qa.CheckResult(day, run_id, "ingest", check, value, **fields)


def test_the_store_lives_in_the_ledger_file_and_round_trips(tmp_path):
    store = qa.QAStore.in_runs_dir(tmp_path / "runs")
    assert store.path == Ledger(tmp_path / "runs").path
    with sqlite3.connect(store.path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"stage_runs", "qa_checks"} <= tables

    first = [
        _result("share_quarantined", 0.07, min=None, max=0.05, passed=False, blocking=True),
        _result("rows_vs_previous", math.inf, min=0.5, max=2.0, passed=False),
        _result("rows_in", 1000.0),
    ]
    store.record(first)
    assert store.results(DAY, "r1") == first
    assert store.results(DAY + dt.timedelta(days=1)) == []

    # A second run for the date redoes one check: by run, each run's own; by date, the latest of each check.
    again = _result("share_quarantined", 0.01, run_id="r2", max=0.05, blocking=True)
    store.record([again])
    assert store.results(DAY, "r2") == [again]
    assert store.results(DAY, "r1") == first
    assert {r.check: r.run_id for r in store.results(DAY)} == {
        "share_quarantined": "r2",
        "rows_vs_previous": "r1",
        "rows_in": "r1",
    }

    # The same run recording a check again replaces it.
    store.record([_result("rows_in", 999.0)])
    assert [r.value for r in store.results(DAY, "r1") if r.check == "rows_in"] == [999.0]


def test_previous_takes_the_latest_attempt_of_each_earlier_date(tmp_path):
    store = qa.QAStore(tmp_path / "ledger.sqlite")
    for i in range(1, 10):  # DAY - 9 .. DAY - 1: values 1 .. 9
        store.record([_result("rows_accepted", float(i), run_id=f"d{i}", day=DAY - dt.timedelta(days=10 - i))])
    store.record([_result("rows_accepted", 90.0, run_id="d9-again", day=DAY - dt.timedelta(days=1))])
    store.record([_result("rows_accepted", 500.0, run_id="today", day=DAY)])  # not before DAY
    assert store.previous("ingest", "rows_accepted", before=DAY, n=3) == [7.0, 8.0, 90.0]
    assert store.previous("ingest", "rows_accepted", before=DAY - dt.timedelta(days=8), n=7) == [1.0]
    assert store.previous("ingest", "rows_in", before=DAY) == []
    assert store.previous("aggregate", "rows_accepted", before=DAY) == []


def test_rows_vs_previous_is_against_the_median_of_earlier_dates(tmp_path):
    store = qa.QAStore(tmp_path / "ledger.sqlite")
    config = qa.load_config()
    first = qa.evaluate("ingest", _ingest(), run_date=DAY, run_id="r0", checks=config, store=store)
    assert "rows_vs_previous" not in {r.check for r in first}  # nothing earlier: not evaluated, not stored
    assert "rows_vs_previous" not in {r.check for r in store.results(DAY)}

    # Accepted rows on the 7 following days: 940, 100, 940, 940, 1880, 940, 940 (median 940).
    for i, rows_in in enumerate([1000, 160, 1000, 1000, 1940, 1000, 1000], start=1):
        day = DAY + dt.timedelta(days=i)
        results = qa.evaluate("ingest", _ingest(rows_in), run_date=day, run_id=f"r{i}", checks=config, store=store)
    today = DAY + dt.timedelta(days=8)
    results = qa.evaluate("ingest", _ingest(1410), run_date=today, run_id="r8", checks=config, store=store)
    ratio = {r.check: r for r in results}["rows_vs_previous"]
    assert ratio.value == pytest.approx(1350 / 940)
    assert (ratio.min, ratio.max, ratio.passed, ratio.blocking) == (0.5, 2.0, True, False)

    small = qa.load_config(_config(tmp_path, "[ingest.rows_vs_previous]\nmin = 0.5\nwindow = 2\n"))
    results = qa.evaluate("ingest", _ingest(1410), run_date=today, run_id="r8b", checks=small, store=store)
    assert {r.check: r.value for r in results}["rows_vs_previous"] == pytest.approx(1350 / 940)  # median(940, 940)
    results = qa.evaluate(
        "ingest", _ingest(1410), run_date=DAY + dt.timedelta(days=3), run_id="x", checks=small, store=store
    )
    assert {r.check: r.value for r in results}["rows_vs_previous"] == pytest.approx(1350 / 520)  # median(940, 100)


def test_a_blocking_failure_stops_the_release_a_non_blocking_one_warns(tmp_path):
    store = qa.QAStore(tmp_path / "ledger.sqlite")
    config = qa.load_config()
    qa.evaluate("ingest", _ingest(), run_date=DAY - dt.timedelta(days=1), run_id="r0", checks=config, store=store)
    bad = _ingest(rows_in=10_000, quarantined=1_000)  # 10 % quarantined; accepted 8,950 vs 940 yesterday
    results = qa.evaluate("ingest", bad, run_date=DAY, run_id="r1", checks=config, store=store)
    by_check = {r.check: r for r in results}
    assert (by_check["share_quarantined"].passed, by_check["share_quarantined"].blocking) == (False, True)
    assert (by_check["rows_vs_previous"].passed, by_check["rows_vs_previous"].blocking) == (False, False)
    assert by_check["rows_in"].passed and by_check["rows_in"].min is None and by_check["rows_in"].max is None
    assert qa.blocking_failures(results) == [by_check["share_quarantined"]]
    assert store.results(DAY, "r1") == results

    with pytest.raises(qa.QAFailed) as caught:
        qa.raise_for_blocking(results)
    assert caught.value.failures == (by_check["share_quarantined"],)
    assert str(caught.value).splitlines() == [
        "1 blocking QA check(s) failed for 2025-06-30 (run r1):",
        "  ingest.share_quarantined = 10.0%, expected ≤ 5.0%: rows read that failed validation (quarantined / rows in)",
    ]
    qa.raise_for_blocking([by_check["rows_vs_previous"], by_check["rows_in"]])  # warnings only: no raise


def test_the_summary_shows_thresholded_checks_failures_first():
    results = [
        _result("rows_in", 1000.0),
        _result("share_duplicates", 0.03),
        _result("rows_vs_previous", 2.5, min=0.5, max=2.0, passed=False),
        _result("share_quarantined", 0.1, max=0.05, passed=False, blocking=True),
    ]
    console = Console(file=io.StringIO(), width=140, record=True)
    console.print(qa.summary(results))
    lines = console.export_text().splitlines()
    assert lines[0].startswith("QA checks for 2025-06-30")
    text = "\n".join(lines)
    assert text.index("ingest.share_quarantined") < text.index("ingest.rows_vs_previous")
    assert "10.0%" in text and "≤ 5.0%" in text and "2.50×" in text and "0.50× – 2.00×" in text
    assert "ingest.rows_in" not in text and "+ 2 informational values" in text
    console = Console(file=io.StringIO(), width=140, record=True)
    console.print(qa.summary(results, everything=True))
    text = console.export_text()
    assert "ingest.rows_in" in text and "1,000" in text and "3.0%" in text


# --- properties -----------------------------------------------------------------------------------------------

bound = st.none() | st.floats(0.0, 1.0)


@given(
    accepted=st.integers(0, 10**9),
    deferred=st.integers(0, 10**6),
    quarantined=st.integers(0, 10**9),
    duplicates=st.integers(0, 10**9),
    lo=bound,
    hi=bound,
)
@hsettings(max_examples=200, deadline=None)
def test_shares_are_shares_and_pass_exactly_within_their_range(accepted, deferred, quarantined, duplicates, lo, hi):
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    rows_in = accepted + deferred + quarantined + duplicates
    counts = IngestCounts(rows_in, accepted, deferred, quarantined, duplicates)
    config = qa.QAConfig(Path("test"), (qa.Check("ingest", "share_quarantined", min=lo, max=hi, blocking=True),))
    results = qa.evaluate("ingest", counts, run_date=DAY, run_id="r", checks=config, store=None)
    shares = [r for r in results if r.check.startswith("share_")]
    assert len(shares) == (2 if rows_in else 0)
    for r in shares:
        assert 0.0 <= r.value <= 1.0
    for r in results:
        expected = (r.min is None or r.min <= r.value) and (r.max is None or r.value <= r.max)
        assert r.passed == expected
        assert r.blocking == (r.check == "share_quarantined")
    assert qa.blocking_failures(results) == [r for r in results if r.check == "share_quarantined" and not r.passed]
