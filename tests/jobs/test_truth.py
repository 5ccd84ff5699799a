"""Scoring the people estimates and their forecasts against the simulated truth (jobs.analysis.truth).

A small world built by hand over two complete weeks, Monday 2 June to Sunday 15 June 2025, with answers a reader can
check: the Channel estimated exactly (r 1, weekly APE 0, coverage 1), the Central Mediterranean at 1.5 times the
truth with intervals that miss (r 1, APE 0.5, coverage 0), the Eastern Borders blind; and a release as of Sunday
8 June whose next seven days are in the truth.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from contracts import tables
from jobs.analysis.truth import (
    PeopleMissing,
    TruthMissing,
    forecast_scores,
    pearson_r,
    read_people,
    read_release,
    read_truth,
    score_against_truth,
    score_and_log,
    weekly_ape,
)
from jobs.settings import JobSettings

DAYS = pd.date_range("2025-06-02", "2025-06-15", freq="D")  # Monday to Sunday, twice
AS_OF = dt.date(2025, 6, 8)
# Dover's true arrivals: the first week is also the release's published history, the second the days it forecasts.
DOVER = [8, 9, 10, 11, 12, 13, 16, 10, 12, 14, 10, 12, 14, 10]
CALAIS_DEPARTURES = [3, 0, 4, 5, 1, 2, 6, 3, 3, 0, 2, 7, 1, 4]
LAMPEDUSA = [20, 25, 30, 22, 28, 26, 24, 21, 27, 29, 23, 25, 20, 30]
RELEASE = "20250608-abcdef012345"


def _write(table: pa.Schema, frame: pd.DataFrame, path, partition_by: tuple[str, ...] = ()) -> None:
    arrow = pa.Table.from_pandas(frame[list(table.names)], schema=table, preserve_index=False)
    if partition_by:
        pq.write_to_dataset(arrow, path, partition_cols=list(partition_by))
    elif path.suffix == ".parquet":  # one file of a release
        pq.write_table(arrow, path)
    else:  # a truth table: a folder of parts
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow, path / "part-0.parquet")


def _dates(days: pd.DatetimeIndex) -> list[dt.date]:
    return [d.date() for d in days]


def write_truth(settings: JobSettings, days: pd.DatetimeIndex = DAYS) -> None:
    n = len(days)
    i = np.arange(n)
    segments = {
        ("channel", "camps"): 30 + 2 * i,
        ("channel", "crossing"): 5 + i % 3,
        ("central_mediterranean", "libya"): 100 + 10 * (i % 5),
        ("central_mediterranean", "sea"): 15 + i,
        ("eastern_borders", "belarus"): np.full(n, 40),
    }
    people = pd.concat(
        pd.DataFrame({"date": _dates(days), "route_id": r, "segment_id": s, "people": v})
        for (r, s), v in segments.items()
    )
    _write(tables.TRUTH_SEGMENT_PEOPLE.schema, people, settings.lake(tables.TRUTH_SEGMENT_PEOPLE))
    arrivals = pd.concat(
        [
            pd.DataFrame(
                {"date": _dates(days), "route_id": "channel", "crossing_point_id": "dover", "arrivals": DOVER[:n]}
            ),
            # People passing Calais by road as well as by boat: not what a departure point's figure counts.
            pd.DataFrame({"date": _dates(days), "route_id": "channel", "crossing_point_id": "calais", "arrivals": 50}),
            pd.DataFrame(
                {
                    "date": _dates(days),
                    "route_id": "central_mediterranean",
                    "crossing_point_id": "lampedusa",
                    "arrivals": LAMPEDUSA[:n],
                }
            ),
        ]
    )
    _write(tables.TRUTH_ARRIVALS.schema, arrivals, settings.lake(tables.TRUTH_ARRIVALS))
    departures = pd.DataFrame(
        {
            "date": _dates(days),
            "route_id": "channel",
            "crossing_point_id": "calais",
            "departures": CALAIS_DEPARTURES[:n],
        }
    )
    _write(tables.TRUTH_DEPARTURES.schema, departures, settings.lake(tables.TRUTH_DEPARTURES))


def write_people(settings: JobSettings) -> None:
    """Gold people: Channel exact (intervals ±1), Central Mediterranean 1.5 × truth (intervals of zero width, so
    they miss), Eastern Borders blind (null figures)."""
    truth = read_truth(settings)
    route = truth["segment_people"].groupby(["route_id", "date"], as_index=False)["people"].sum()
    scale = {"channel": 1.0, "central_mediterranean": 1.5, "eastern_borders": np.nan}
    width = {"channel": 1.0, "central_mediterranean": 0.0, "eastern_borders": np.nan}
    present = route.assign(
        people=route["people"] * route["route_id"].map(scale),
        lo80=lambda f: f["people"] - f["route_id"].map(width),
        hi80=lambda f: f["people"] + f["route_id"].map(width),
        segment_id=None,
        crossing_point_id=None,
        role=None,
        measure="present",
        feature=route["route_id"].map({"channel": "group:maghreb", "central_mediterranean": "group:west_africa"}),
    )
    arrivals = truth["arrivals"].rename(columns={"arrivals": "people"})
    arrivals = arrivals[arrivals["crossing_point_id"] != "calais"]
    departures = truth["departures"].rename(columns={"departures": "people"})
    crossing = pd.concat([arrivals, departures]).assign(
        role=lambda f: f["crossing_point_id"].map({"dover": "landing", "lampedusa": "landing", "calais": "departure"}),
        people=lambda f: f["people"] * f["route_id"].map(scale),
        lo80=lambda f: f["people"] - 1.0,
        hi80=lambda f: f["people"] + 1.0,
        segment_id=None,
        measure="crossing",
        feature="group:maghreb",
    )
    gold = pd.concat([present, crossing], ignore_index=True).assign(
        date=lambda f: f["date"].dt.date, model_id="test-model"
    )
    _write(tables.PEOPLE.schema, gold, settings.lake(tables.PEOPLE), tables.PEOPLE.partition_by)


def write_release(settings: JobSettings, as_of: dt.date = AS_OF, release_id: str = RELEASE) -> None:
    """A release with three people series, 28 days ahead, with the week up to ``as_of`` as history: Dover's arrivals
    (yhat 12 every day, intervals 11-13 and 9.5-14.5), Calais's departures (yhat 3) and the Channel's people (yhat
    the truth itself)."""
    folder = settings.store_dir / "releases" / release_id
    folder.mkdir(parents=True)
    ahead = pd.date_range(pd.Timestamp(as_of) + pd.Timedelta(days=1), periods=28, freq="D")
    truth = read_truth(settings)
    channel = truth["segment_people"].query("route_id == 'channel'").groupby("date")["people"].sum()
    rows = []
    for series_id, level, yhat in (
        ("people/point:channel/dover", "point", np.full(len(ahead), 12.0)),
        ("people/point:channel/calais", "point", np.full(len(ahead), 3.0)),
        ("people/route:channel", "route", channel.reindex(ahead).fillna(0.0).to_numpy(dtype="float64")),
    ):
        rows.append(
            pd.DataFrame(
                {
                    "series_id": series_id,
                    "level": level,
                    "route_id": "channel",
                    "segment_id": None,
                    "freq": "D",
                    "source": "people",
                    "ds": _dates(ahead),
                    "yhat": yhat,
                    "lo80": yhat - 1.0,
                    "hi80": yhat + 1.0,
                    "lo95": yhat - 2.5,
                    "hi95": yhat + 2.5,
                    "model": "test",
                    "run_id": "run-1",
                    "model_version": "1",
                    "release_id": release_id,
                }
            )
        )
    # A density series in the same release: not a people series, never scored.
    rows.append(rows[-1].assign(series_id="route:channel", source="density"))
    forecasts = pd.concat(rows, ignore_index=True)
    _write(tables.PUBLISHED_FORECAST.schema, forecasts, folder / "forecasts.parquet")
    week = pd.date_range(pd.Timestamp(as_of) - pd.Timedelta(days=6), periods=7, freq="D")
    history = pd.concat(
        [
            pd.DataFrame({"series_id": "people/point:channel/dover", "ds": _dates(week), "y": DOVER[:7]}),
            pd.DataFrame({"series_id": "people/point:channel/calais", "ds": _dates(week), "y": CALAIS_DEPARTURES[:7]}),
            pd.DataFrame({"series_id": "people/route:channel", "ds": _dates(week), "y": channel.reindex(week)}),
        ]
    ).astype({"y": "float64"})
    _write(tables.PUBLISHED_HISTORY.schema, history, folder / "history.parquet")
    # Published 7-day totals: Dover's 80 % interval holds the true 82, Calais's only its 95 % one holds the true 20.
    totals = pd.DataFrame(
        {
            "series_id": ["people/point:channel/dover", "people/point:channel/calais"],
            "window": [7, 7],
            "start": [ahead[0].date()] * 2,
            "lo80": [78.0, 15.0],
            "hi80": [90.0, 19.0],
            "lo95": [70.0, 12.0],
            "hi95": [99.0, 25.0],
        }
    )
    totals.to_parquet(folder / "totals.parquet")
    manifest = {"release_id": release_id, "as_of": str(as_of), "privacy": {"suppressed": True, "min_devices": 15}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (settings.store_dir / "CURRENT").write_text(release_id + "\n")


@pytest.fixture
def world(tmp_path) -> JobSettings:
    settings = JobSettings(var_dir=tmp_path / "var")
    write_truth(settings)
    write_people(settings)
    write_release(settings)
    return settings


def test_the_shared_figures_by_hand():
    x = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert pearson_r(x, 2 * x + 1) == pytest.approx(1.0)
    assert np.isnan(pearson_r(x, pd.Series([5.0] * 4)))  # a constant has no correlation
    days = pd.date_range("2025-06-01", periods=16, freq="D")  # Sunday, two whole weeks, Monday
    true = pd.Series(10.0, index=days)
    weeks, ape = weekly_ape(true * 1.2, true)
    assert (weeks, ape) == (2, pytest.approx(0.2))  # the Sunday and the last Monday are not whole weeks


def test_presence_per_route(world):
    scores = score_against_truth(world)
    assert (scores.date_from, scores.date_to) == (dt.date(2025, 6, 2), dt.date(2025, 6, 15))
    presence = scores.presence.set_index("route_id")
    assert list(presence.index) == ["central_mediterranean", "channel", "eastern_borders"]

    channel = presence.loc["channel"]
    assert (channel["days"], channel["weeks"]) == (14, 2)
    # 30 + 2i and 5 + i % 3 over i = 0..13: 30 + 13 and 5 + 13/14 a day on average.
    assert channel["true_per_day"] == pytest.approx(43 + 5 + 13 / 14)
    assert channel["est_per_day"] == pytest.approx(channel["true_per_day"])
    assert (channel["r"], channel["weekly_ape"], channel["coverage80"]) == (pytest.approx(1.0), 0.0, 1.0)
    assert (channel["pass_r"], channel["pass_weekly_ape"], channel["note"]) == (True, True, "")
    assert channel["feature"] == "group:maghreb"

    central = presence.loc["central_mediterranean"]
    assert central["r"] == pytest.approx(1.0)
    assert central["weekly_ape"] == pytest.approx(0.5)
    assert central["est_per_day"] == pytest.approx(1.5 * central["true_per_day"])
    assert central["coverage80"] == 0.0
    assert (central["pass_r"], central["pass_weekly_ape"]) == (True, False)

    blind = presence.loc["eastern_borders"]
    assert (
        blind["days"] == 0 and np.isnan(blind["r"]) and np.isnan(blind["weekly_ape"]) and np.isnan(blind["coverage80"])
    )
    assert blind["true_per_day"] == 40.0  # what the model does not see
    assert blind["feature"] == "blind" and blind["note"].startswith("blind")
    assert pd.isna(blind["pass_r"]) and pd.isna(blind["pass_weekly_ape"])


def test_crossing_scores_each_point_against_its_own_truth(world):
    crossing = score_against_truth(world).crossing.set_index("crossing_point_id")
    # Calais is a departure point: scored against departures (estimated exactly), not the 50 passing it a day.
    calais = crossing.loc["calais"]
    assert (calais["truth"], calais["weekly_ape"], calais["true_per_day"]) == (
        "departures",
        0.0,
        pytest.approx(np.mean(CALAIS_DEPARTURES)),
    )
    assert pd.isna(calais["rank"])  # not an arrival point
    dover, lampedusa = crossing.loc["dover"], crossing.loc["lampedusa"]
    assert (dover["truth"], dover["r"], dover["weekly_ape"], dover["coverage80"]) == ("arrivals", 1.0, 0.0, 1.0)
    # Lampedusa's estimate is 1.5 times the truth, its interval ±1 around that: always missed.
    assert (lampedusa["weekly_ape"], lampedusa["coverage80"]) == (pytest.approx(0.5), 0.0)
    assert (lampedusa["rank"], dover["rank"]) == (1, 2)  # 350 true arrivals against 161
    assert (dover["pass_r"], dover["pass_weekly_ape"]) == (True, True)
    assert not dover["pass_coverage80"]  # 1.0 is outside [0.75, 0.85]: intervals too wide are a miss too
    busiest = score_against_truth(world).busiest()
    assert list(busiest["crossing_point_id"]) == ["lampedusa", "dover"]


def test_the_date_range_limits_the_days_scored(world):
    scores = score_against_truth(world, date_from=dt.date(2025, 6, 9), date_to=dt.date(2025, 6, 15))
    channel = scores.presence.set_index("route_id").loc["channel"]
    assert (channel["days"], channel["weeks"]) == (7, 1)
    assert (scores.date_from, scores.date_to) == (dt.date(2025, 6, 9), dt.date(2025, 6, 15))
    after = score_against_truth(world, date_from=dt.date(2025, 7, 1))  # after the truth ends
    assert (after.presence["days"] == 0).all() and after.busiest().empty
    assert "no day with both gold people and the truth in 2025-07-01 .. …" in after.notes


def test_forecasts_against_the_truth_after_as_of_and_the_naive_baselines(world):
    scores = score_against_truth(world)
    assert (scores.release_id, scores.as_of) == (RELEASE, AS_OF)
    table = scores.forecasts.set_index("series_id")
    # People series only, not the release's density series.
    assert set(table.index) == {"people/point:channel/dover", "people/point:channel/calais", "people/route:channel"}
    assert set(table["horizon"]) == {"1-7"}  # the truth ends on day 7 after as_of: nothing 8-28 days ahead
    dover = table.loc["people/point:channel/dover"]
    # Truth 10 12 14 10 12 14 10 against yhat 12: errors 2 0 2 2 0 2 2.
    assert dover["days"] == 7 and dover["mae"] == pytest.approx(10 / 7)
    # Naive: the last published value, 16: errors 6 4 2 6 4 2 6.
    assert dover["mae_naive"] == pytest.approx(30 / 7)
    # Seasonal naive, the same weekday a week before: 8 9 10 11 12 13 16, errors 2 3 4 1 0 1 6.
    assert dover["mae_seasonal_naive"] == pytest.approx(17 / 7)
    assert dover["mae_ratio"] == pytest.approx(10 / 17)
    assert dover["coverage80"] == pytest.approx(2 / 7)  # 11..13 holds only the 12s
    assert dover["coverage95"] == 1.0
    assert (dover["true_7d"], dover["yhat_7d"], dover["ape_7d"]) == (82.0, 84.0, pytest.approx(2 / 82))
    assert (dover["in80_7d"], dover["in95_7d"]) == (1.0, 1.0)
    assert dover["role"] == "landing" and bool(dover["pass_mae_ratio"])
    # Calais, a departure point, against its departures 3 3 0 2 7 1 4 (not the 50 a day passing it): errors of
    # yhat 3 are 0 0 3 1 4 2 1; of the naive (6) 3 3 6 4 1 5 2; of the seasonal naive (3 0 4 5 1 2 6) 0 3 4 3 6 1 2.
    calais = table.loc["people/point:channel/calais"]
    assert (calais["mae"], calais["mae_naive"], calais["mae_seasonal_naive"]) == pytest.approx((11 / 7, 24 / 7, 19 / 7))
    assert pd.isna(calais["pass_mae_ratio"])  # the target is for arrivals
    route = table.loc["people/route:channel"]
    assert (route["mae"], route["mae_ratio"], route["coverage80"]) == (0.0, 0.0, 1.0)
    assert pd.isna(route["pass_mae_ratio"])  # the target is for arrival points
    # Calais's true 20 departures lie outside its published total's 80 % interval (15-19), inside the 95 % one;
    # the route has no published total.
    assert (calais["true_7d"], calais["in80_7d"], calais["in95_7d"]) == (20.0, 0.0, 1.0)
    assert pd.isna(route["in80_7d"]) and pd.isna(route["in95_7d"])


def test_forecasts_of_a_release_the_truth_does_not_reach_are_not_scored(tmp_path):
    settings = JobSettings(var_dir=tmp_path / "var")
    write_truth(settings)
    write_people(settings)
    write_release(settings, as_of=dt.date(2025, 6, 15), release_id="20250615-abcdef012345")
    scores = score_against_truth(settings)
    assert scores.forecasts.empty
    assert any("no truth after as_of 2025-06-15" in note and "2025-06-15" in note for note in scores.notes)
    # The same release scored on days before the truth ends: a release can be chosen.
    people, truth = read_people(settings), read_truth(settings)
    table, notes = forecast_scores(read_release(settings), people, truth, date_to=dt.date(2025, 6, 14))
    assert table.empty and notes


def test_missing_inputs_say_what_to_run(tmp_path):
    settings = JobSettings(var_dir=tmp_path / "var")
    with pytest.raises(TruthMissing, match="only for a simulated world.*routecast simulate"):
        score_against_truth(settings)
    assert score_and_log(settings, dt.date(2025, 6, 15), "no-such-run") is None
    write_truth(settings)
    with pytest.raises(PeopleMissing, match="run the nightly"):
        score_against_truth(settings)
    assert score_and_log(settings, dt.date(2025, 6, 15), "no-such-run") is None


def test_without_a_release_the_estimates_are_still_scored(tmp_path):
    settings = JobSettings(var_dir=tmp_path / "var")
    write_truth(settings)
    write_people(settings)
    scores = score_against_truth(settings)
    assert scores.forecasts.empty and scores.release_id is None
    assert scores.notes == ["no release published yet: forecasts not scored"]
    assert len(scores.presence) == 3


def test_scores_logged_to_a_new_run_and_read_back(world):
    from mlflow.tracking import MlflowClient

    from jobs.analysis.truth import log_to_mlflow

    scores = score_against_truth(world)
    run_id = log_to_mlflow(scores, world.tracking_uri, experiment="routecast-truth")
    client = MlflowClient(tracking_uri=world.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "truth 2025-06-15"
    metrics = run.data.metrics
    assert metrics["truth.presence.r.channel"] == pytest.approx(1.0)
    assert metrics["truth.presence.weekly_ape.central_mediterranean"] == pytest.approx(0.5)
    assert metrics["truth.crossing.coverage80.lampedusa"] == 0.0
    assert metrics["truth.forecast.mae_ratio.h1-7.channel.dover"] == pytest.approx(10 / 17)
    assert metrics["truth.forecast.mae.h1-7.channel"] == 0.0
    # Presence: both routes with a figure meet r >= 0.9, only the Channel meets weekly APE <= 0.15.
    assert (metrics["truth.targets.presence_r.passed"], metrics["truth.targets.presence_r.scored"]) == (2.0, 2.0)
    assert metrics["truth.targets.presence_weekly_ape.passed"] == 1.0
    # A blind route: only the people it does not see.
    assert {k for k in metrics if k.endswith("eastern_borders")} == {"truth.presence.true_per_day.eastern_borders"}
    assert run.data.tags["truth.release_id"] == RELEASE
    artifacts = {a.path for a in client.list_artifacts(run_id, "truth")}
    assert artifacts == {f"truth/{n}" for n in ("crossing.csv", "forecasts.csv", "presence.csv", "scores.md")}
    local = client.download_artifacts(run_id, "truth/presence.csv", str(world.var_dir / "download"))
    assert list(pd.read_csv(local)["route_id"]) == ["central_mediterranean", "channel", "eastern_borders"]


def test_score_and_log_writes_into_the_nightly_run(world):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=world.tracking_uri)
    experiment_id = client.create_experiment("nightly-test")
    run_id = client.create_run(experiment_id).info.run_id
    scores = score_and_log(world, dt.date(2025, 6, 14), run_id)
    assert scores is not None and scores.date_to == dt.date(2025, 6, 14)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["truth.crossing.weekly_ape.dover"] == 0.0
    assert client.get_run(run_id).info.status == "RUNNING"  # the nightly's run: it ends it, not the scoring


def plain(output: str) -> str:
    """CLI output as one line of words, table drawing removed (the tables' width depends on nothing here, but the
    words are what a reader checks)."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", output).split())


def test_the_command_prints_the_tables_with_units_and_targets(world):
    from routecast.cli import app

    result = CliRunner(env={"ROUTECAST_VAR_DIR": str(world.var_dir)}).invoke(app, ["truth", "--no-mlflow"])
    assert result.exit_code == 0, result.output
    out = plain(result.output)
    assert "Presence per route: people on the route per day, 2025-06-02 .. 2025-06-15" in out
    assert "channel group:maghreb 14 48.9 48.9 1.00 2 0.00 1.00 ✓ ✓" in out
    assert "central_mediterranean group:west_africa 14 140.1 210.1 1.00 2 0.50 0.00 ✓ ✗" in out
    assert "eastern_borders blind 0 40.0 – – 0 – – – – blind: the model does not measure this route" in out
    assert "Crossing: the 10 busiest arrival points, people crossing per day" in out
    assert "1 lampedusa central_mediterranean landing 14 25.0 37.5 1.00 0.50 0.00 ✓ ✗ ✗" in out
    assert "The other 1 crossing points (1 departure points, scored against departures): 1 scored" in out
    assert f"release {RELEASE} (as of 2025-06-08)" in out
    assert "people/point:channel/dover 1-7 7 11.7 1.43 4.29 2.43 0.59 0.29 1.00 82 84 0.02 ✓ ✓" in out
    assert (
        "Published 7-day totals: the true total inside the 80 % interval for 1 and inside the 95 % interval for 2 of 2 "
        "series." in out
    )
    assert "The other 1 point series: median MAE / best naive 0.58 over days 1-7" in out  # Calais: 11/19
    assert "next-7-day arrival forecasts (MAE against the better naive): 1 of 1 meet every target" in out
    assert "MLflow run" not in out
    assert not (world.var_dir / "mlflow").exists()


def test_the_command_logs_to_mlflow_by_default(world):
    from mlflow.tracking import MlflowClient

    from routecast.cli import app

    result = CliRunner(env={"ROUTECAST_VAR_DIR": str(world.var_dir)}).invoke(
        app, ["truth", "--date-from", "2025-06-09"]
    )
    assert result.exit_code == 0, result.output
    run_id = re.search(r"MLflow run (\w+) in experiment routecast-truth", result.output).group(1)
    run = MlflowClient(tracking_uri=world.tracking_uri).get_run(run_id)
    assert run.data.tags["truth.date_from"] == "2025-06-09"
    assert run.data.metrics["truth.presence.weekly_ape.central_mediterranean"] == pytest.approx(0.5)


def test_the_command_says_what_to_run_when_an_input_is_missing(tmp_path):
    from routecast.cli import app

    settings = JobSettings(var_dir=tmp_path / "var")
    runner = CliRunner(env={"ROUTECAST_VAR_DIR": str(settings.var_dir)})
    no_truth = runner.invoke(app, ["truth"])
    assert no_truth.exit_code == 2
    assert "only for a simulated world" in plain(no_truth.output) and "routecast simulate" in plain(no_truth.output)
    write_truth(settings)
    no_people = runner.invoke(app, ["truth", "--no-mlflow"])
    assert no_people.exit_code == 2
    assert "no gold people table" in plain(no_people.output) and "run the nightly" in plain(no_people.output)
