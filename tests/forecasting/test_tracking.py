import math
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecasting.selection import (
    FORECAST_COLUMNS,
    METRICS_COLUMNS,
    MODEL_FACTORIES,
    SelectionConfig,
    select_and_forecast,
)
from forecasting.tracking import (
    CHAMPION_HISTORY_COLUMNS,
    RunInfo,
    UnknownSeriesError,
    artifact_location_for,
    breakdown_metrics,
    champion_history,
    compare_with_champion,
    load_champion,
    log_forecast_run,
    summarise_metrics,
)
from tests.forecasting.fakes import AlwaysFails, series_frame

pytestmark = [
    pytest.mark.usefixtures("no_mlflow_telemetry"),
    # Raised inside MLflow's own SQLAlchemy store setup, nothing routecast can act on.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

WEEK = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
CFG = SelectionConfig(holdout=14, horizon=28, candidates=("always_fails", "seasonal_naive"))
FACTORIES = {**MODEL_FACTORIES, "always_fails": lambda cfg: AlwaysFails()}
MODEL = "routecast-forecaster"


SERIES = {
    # Repeats WEEK exactly: MASE 0, MAE 0.
    "route:a": WEEK * 6,
    # Adds 1/day: on the 14-day holdout the last-week forecast is off by 7 (days 1-7) and 14 (days 8-14):
    # MAE 10.5, scale 7, MASE 1.5.
    "route:b": [v + t for t, v in enumerate(WEEK * 6)],
    # Official counts on route a, adding 2/day: off by 14 and 28, MAE 21, scale 14, MASE 1.5.
    "frontex/route:a": [v + 2 * t for t, v in enumerate(WEEK * 6)],
    # A segment of route a shaped like route:b: MAE 10.5, MASE 1.5.
    "segment:a/s1": [v + t for t, v in enumerate(WEEK * 6)],
}
KEYS = pd.DataFrame(
    {
        "series_id": ["route:a", "route:b", "frontex/route:a", "segment:a/s1"],
        "level": ["route", "route", "route", "segment"],
        "route_id": ["a", "b", "a", "a"],
        "source": ["density", "density", "frontex", "density"],
    }
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _history() -> pd.DataFrame:
    return pd.concat([series_frame(sid, y) for sid, y in SERIES.items()], ignore_index=True)


def _batch() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four series forecast by seasonal naive (scores in SERIES); the fake candidate fails on all of them."""
    results = [select_and_forecast(series_frame(sid, y), CFG, FACTORIES) for sid, y in SERIES.items()]
    return (
        pd.concat([f for f, _ in results], ignore_index=True),
        pd.concat([m for _, m in results], ignore_index=True),
    )


@pytest.fixture(scope="module")
def logged(mlflow_store):
    uri, folder = mlflow_store
    forecasts, metrics = _batch()
    tracking_before, env_before = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    info = log_forecast_run(
        tracking_uri=uri,
        experiment="routecast-test",
        run_name="nightly-2025-02-16",
        params={"holdout": CFG.holdout, "horizon": CFG.horizon, "run_date": "2025-02-16"},
        forecasts=forecasts,
        metrics=metrics,
        keys=KEYS,
        history=_history(),
    )
    uris_after = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    return info, forecasts, folder, (tracking_before, env_before), uris_after


def test_the_new_version_is_registered_and_aliased_champion(logged, mlflow_store):
    info, *_ = logged
    uri, _ = mlflow_store
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert isinstance(info, RunInfo) and info.tracking_uri == uri
    assert str(champion.version) == info.model_version
    assert champion.run_id == info.run_id


def test_the_champion_serves_exactly_the_logged_rows(logged, mlflow_store):
    _, forecasts, *_ = logged
    model = load_champion(mlflow_store[0])
    got = model.predict(pd.DataFrame({"series_id": ["route:b"], "horizon": [3]}))
    expected = forecasts[forecasts["series_id"] == "route:b"].head(3).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    # Last week of route:b is WEEK + 35..41, repeated.
    assert got["yhat"].tolist() == [45.0, 56.0, 67.0]

    everything = model.predict(pd.DataFrame({"series_id": list(SERIES)}))
    pd.testing.assert_frame_equal(everything, forecasts)


def test_the_champion_refuses_unknown_series(logged, mlflow_store):
    model = load_champion(mlflow_store[0])
    with pytest.raises(UnknownSeriesError, match="no published forecast for series 'route:zz'"):
        model.predict(pd.DataFrame({"series_id": ["route:a", "route:zz"]}))


def test_the_run_has_params_aggregate_metrics_and_both_tables(logged, mlflow_store):
    info, _, folder, *_ = logged
    run = MlflowClient(tracking_uri=mlflow_store[0]).get_run(info.run_id)
    assert run.info.run_name == "nightly-2025-02-16" and run.info.status == "FINISHED"
    assert run.data.params == {"holdout": "14", "horizon": "28", "run_date": "2025-02-16"}
    metrics = run.data.metrics
    assert metrics["mase_mean.seasonal_naive"] == pytest.approx(1.125)  # (0 + 1.5 + 1.5 + 1.5) / 4
    assert metrics["mase_mean_chosen"] == pytest.approx(1.125)
    assert math.isnan(metrics["mase_mean.always_fails"])  # it never produced a finite score
    assert metrics["champion_share.seasonal_naive"] == 1.0 and metrics["champion_share.always_fails"] == 0.0
    assert metrics["n_series"] == 4 and metrics["n_failed_fits"] == 4
    assert metrics["n_series_without_forecast"] == 0

    artifacts = {a.path for a in MlflowClient(tracking_uri=mlflow_store[0]).list_artifacts(info.run_id)}
    assert {"forecasts.parquet", "metrics.parquet"} <= artifacts
    # Artifacts live beside the SQLite file, under the caller's folder.
    assert (Path(folder) / "mlartifacts" / info.run_id / "artifacts" / "forecasts.parquet").is_file()
    stored = pd.read_parquet(Path(folder) / "mlartifacts" / info.run_id / "artifacts" / "metrics.parquet")
    assert len(stored) == 8 and stored["chosen"].sum() == 4


def test_the_run_has_backtest_metrics_per_level_and_per_route(logged, mlflow_store):
    info, *_ = logged
    metrics = MlflowClient(tracking_uri=mlflow_store[0]).get_run(info.run_id).data.metrics
    assert metrics["mase_mean_chosen.level.route"] == pytest.approx(1.0)  # (0 + 1.5 + 1.5) / 3
    assert metrics["mase_mean_chosen.level.segment"] == pytest.approx(1.5)
    assert metrics["n_series.level.route"] == 3 and metrics["n_series.level.segment"] == 1
    assert metrics["n_series_without_forecast.level.route"] == 0
    assert "coverage80_mean_chosen.level.route" in metrics
    # Per route and source: density and official counts of route a are in different units.
    assert metrics["mae_mean_chosen.route.a.density"] == pytest.approx(0.0)
    assert metrics["mae_mean_chosen.route.a.frontex"] == pytest.approx(21.0)
    assert metrics["mae_mean_chosen.route.b.density"] == pytest.approx(10.5)
    assert metrics["mase_mean_chosen.route.b.density"] == pytest.approx(1.5)
    assert not any(".route.a.density" in name and "segment" in name for name in metrics)


def test_each_model_family_has_a_nested_run_with_its_backtest_scores(logged, mlflow_store):
    info, *_ = logged
    client = MlflowClient(tracking_uri=mlflow_store[0])
    children = client.search_runs([info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{info.run_id}'")
    by_name = {run.info.run_name: run for run in children}
    assert sorted(by_name) == ["always_fails", "seasonal_naive"]  # one working candidate: no ensemble
    assert all(run.info.status == "FINISHED" for run in children)

    naive = by_name["seasonal_naive"].data
    assert naive.params == {"alias": "seasonal_naive", "n_series_scored": "4", "n_failed": "0", "share_chosen": "1.0"}
    assert naive.metrics["mase_mean"] == pytest.approx(1.125)
    assert naive.metrics["mae_mean"] == pytest.approx(10.5)  # (0 + 10.5 + 21 + 10.5) / 4
    assert naive.metrics["mase_mean.level.route"] == pytest.approx(1.0)
    assert naive.metrics["mase_mean.level.segment"] == pytest.approx(1.5)

    failing = by_name["always_fails"].data
    assert failing.params == {"alias": "always_fails", "n_series_scored": "0", "n_failed": "4", "share_chosen": "0.0"}
    assert math.isnan(failing.metrics["mase_mean"])


def test_one_png_per_route_level_series_is_logged(logged, mlflow_store):
    info, _, folder, *_ = logged
    client = MlflowClient(tracking_uri=mlflow_store[0])
    plots = sorted(a.path for a in client.list_artifacts(info.run_id, "plots"))
    # The segment series is not a route-level series.
    assert plots == ["plots/frontex__route_a.png", "plots/route_a.png", "plots/route_b.png"]
    for path in plots:
        assert (Path(folder) / "mlartifacts" / info.run_id / "artifacts" / path).read_bytes()[:8] == PNG_SIGNATURE
    assert client.get_run(info.run_id).data.tags["routecast.plots"] == "3 of 3 route-level series"


def test_the_first_version_is_promoted_because_there_was_no_champion(logged, mlflow_store):
    info, *_ = logged
    assert info.promoted and info.champion_version == info.model_version and info.champion_run_id == info.run_id
    tags = MlflowClient(tracking_uri=mlflow_store[0]).get_run(info.run_id).data.tags
    assert tags["routecast.promoted"] == "true"
    assert tags["routecast.previous_champion_version"] == "none"
    assert tags["routecast.reason"] == "promoted: no version had the alias 'champion'"


def test_logging_leaves_the_callers_mlflow_configuration_alone(logged):
    *_, before, after = logged
    assert after == before


def test_an_equally_good_second_run_is_promoted(logged, mlflow_store):
    first, forecasts, *_ = logged
    uri, _ = mlflow_store
    metrics = _batch()[1]
    second = log_forecast_run(
        tracking_uri=uri,
        experiment="routecast-test",
        run_name="again",
        params={},
        forecasts=forecasts,
        metrics=metrics,
        keys=KEYS,
        plots=1,
    )
    assert int(second.model_version) == int(first.model_version) + 1
    assert second.experiment_id == first.experiment_id
    assert second.promoted and second.champion_version == second.model_version
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == second.model_version
    # Same choices on the same backtest: a tie, and ties promote.
    assert champion.tags["routecast.compared_series"] == "4"
    assert champion.tags["routecast.champion_mase_new"] == champion.tags["routecast.champion_mase_old"] == "1.125"
    assert champion.tags["routecast.previous_champion_version"] == first.model_version
    # The plot cap: the first route-level series by id.
    assert [a.path for a in client.list_artifacts(second.run_id, "plots")] == ["plots/frontex__route_a.png"]
    assert client.get_run(second.run_id).data.tags["routecast.plots"] == "1 of 3 route-level series"


def test_summarise_metrics_by_hand():
    metrics = pd.DataFrame(
        {
            "series_id": ["a", "a", "b", "b", "c"],
            "model": ["snaive", "prophet", "snaive", "prophet", None],  # c was refused before any model ran
            "mase": [2.0, 1.0, 0.5, math.inf, math.nan],
            "mae": [1.0, 0.5, 0.2, math.nan, math.nan],
            "rmse": [1.0, 0.5, 0.2, math.nan, math.nan],
            "coverage80": [0.5, 0.75, 1.0, math.nan, math.nan],
            "coverage95": [1.0, 1.0, 1.0, math.nan, math.nan],
            "width80": [4.0, 2.0, 1.0, math.nan, math.nan],
            "width95": [6.0, 3.0, 2.0, math.nan, math.nan],
            "pinball": [0.3, 0.2, 0.1, math.nan, math.nan],
            "error": [None, None, None, "backtest: prophet: RuntimeError: x", "series 'c': too short"],
            "chosen": [False, True, True, False, False],
        }
    )
    summary = summarise_metrics(metrics)
    assert summary["mase_mean.snaive"] == 1.25  # (2 + 0.5) / 2
    assert summary["mase_mean.prophet"] == 1.0  # inf from the failed fit is left out
    assert summary["mase_mean_chosen"] == 0.75  # (1.0 + 0.5) / 2
    assert summary["coverage80_mean_chosen"] == 0.875
    assert summary["width80_mean_chosen"] == 1.5 and summary["pinball_mean_chosen"] == pytest.approx(0.15)
    assert summary["champion_share.snaive"] == pytest.approx(1 / 3)
    assert summary["champion_share.prophet"] == pytest.approx(1 / 3)
    assert summary["n_series"] == 3 and summary["n_failed_fits"] == 1 and summary["n_series_without_forecast"] == 1


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:////data/ml/mlflow.db", "file:///data/ml/mlartifacts"),
        ("sqlite:///:memory:", None),
        ("http://mlflow.internal:5000", None),
    ],
)
def test_artifact_location_sits_beside_a_local_sqlite_file(uri, expected):
    assert artifact_location_for(uri) == expected


def test_artifact_location_of_a_relative_sqlite_path_is_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert artifact_location_for("sqlite:///var/mlflow.db") == (tmp_path / "var" / "mlartifacts").resolve().as_uri()


# --- champion gating -----------------------------------------------------------------------------------------

GATED = "gated-forecaster"


def _scores(rows: list[tuple[str, str | None, float, bool]]) -> pd.DataFrame:
    """A metrics table from (series_id, model, mase, chosen); MAE is 10 x MASE, the other scores fixed."""
    frame = pd.DataFrame(rows, columns=["series_id", "model", "mase", "chosen"])
    return frame.assign(
        mae=frame["mase"] * 10,
        rmse=frame["mase"] * 12,
        coverage80=0.8,
        coverage95=0.95,
        width80=4.0,
        width95=6.0,
        pinball=0.5,
        error=None,
    )[METRICS_COLUMNS]


def _published(metrics: pd.DataFrame) -> pd.DataFrame:
    """Two forecast days per chosen series, from its chosen model."""
    chosen = metrics[metrics["chosen"]]
    rows = [
        (sid, pd.Timestamp("2025-03-01") + pd.Timedelta(days=d), 10.0, 9.0, 11.0, 8.0, 12.0, model)
        for sid, model in zip(chosen["series_id"], chosen["model"], strict=True)
        for d in range(2)
    ]
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS)


# v1 chooses snaive for a and b. v2 chooses drift, though snaive (v1's choice) scores better on v2's own
# backtest: mean MASE 1.0 against 0.75. v3 chooses theta for a, which beats snaive there: 0.65 against 0.8 over
# a and b (c is new, so not compared).
GATE_RUNS = {
    "v1": _scores([("a", "snaive", 0.5, True), ("a", "drift", 0.9, False), ("b", "snaive", 1.0, True)]),
    "v2": _scores(
        [("a", "snaive", 0.5, False), ("a", "drift", 0.8, True), ("b", "snaive", 1.0, False), ("b", "drift", 1.2, True)]
    ),
    "v3": _scores(
        [("a", "snaive", 0.6, False), ("a", "theta", 0.3, True), ("b", "snaive", 1.0, True), ("c", "theta", 0.4, True)]
    ),
}


@pytest.fixture(scope="module")
def gated(mlflow_store) -> dict[str, RunInfo]:
    uri, _ = mlflow_store
    return {
        name: log_forecast_run(
            tracking_uri=uri,
            experiment="routecast-gate",
            run_name=name,
            params={},
            forecasts=_published(metrics),
            metrics=metrics,
            plots=0,
            registered_model=GATED,
        )
        for name, metrics in GATE_RUNS.items()
    }


def test_a_run_whose_choices_lose_to_the_champions_on_its_own_backtest_is_not_promoted(gated, mlflow_store):
    uri, _ = mlflow_store
    v1, v2 = gated["v1"], gated["v2"]
    assert (v1.model_version, v2.model_version) == ("1", "2")
    assert not v2.promoted and v2.champion_version == "1" and v2.champion_run_id == v1.run_id
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for tags in (client.get_run(v2.run_id).data.tags, client.get_model_version(GATED, "2").tags):
        assert tags["routecast.promoted"] == "false"
        assert tags["routecast.compared_series"] == "2"
        assert tags["routecast.champion_mase_new"] == "1.0"  # drift: (0.8 + 1.2) / 2
        assert tags["routecast.champion_mase_old"] == "0.75"  # v1's snaive on v2's backtest: (0.5 + 1.0) / 2
        assert tags["routecast.previous_champion_version"] == "1"
        assert tags["routecast.champion_version"] == "1"
    assert client.get_run(v2.run_id).data.tags["routecast.model_version"] == "2"
    assert not client.list_artifacts(v2.run_id, "plots")  # plots=0


def test_a_better_run_is_promoted_against_the_champion_that_stayed(gated, mlflow_store):
    uri, _ = mlflow_store
    v3 = gated["v3"]
    assert v3.promoted and v3.champion_version == v3.model_version == "3"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias(GATED, "champion").version) == "3"
    tags = client.get_model_version(GATED, "3").tags
    assert tags["routecast.previous_champion_version"] == "1"  # v2 was never champion
    assert (tags["routecast.champion_mase_new"], tags["routecast.champion_mase_old"]) == ("0.65", "0.8")
    assert tags["routecast.compared_series"] == "2"


def test_champion_history_lists_every_version_newest_first(gated, mlflow_store):
    history = champion_history(mlflow_store[0], GATED)
    assert list(history.columns) == CHAMPION_HISTORY_COLUMNS
    assert history["version"].tolist() == ["3", "2", "1"]
    assert history["run_name"].tolist() == ["v3", "v2", "v1"]
    assert history["run_id"].tolist() == [gated[name].run_id for name in ("v3", "v2", "v1")]
    assert history["promoted"].tolist() == [True, False, True]
    assert history["is_champion_now"].tolist() == [True, False, False]
    assert history["mase_mean_chosen"].tolist() == pytest.approx([(0.3 + 1.0 + 0.4) / 3, 1.0, 0.75])
    assert history["n_series"].tolist() == [3, 2, 2]
    assert history["reason"].iloc[1].startswith("not promoted: mean MASE 1 > 0.75 of the champion's choices")
    assert str(history["created"].dt.tz) == "UTC" and history["created"].is_monotonic_decreasing


def test_champion_history_of_an_unknown_model_is_empty(mlflow_store):
    history = champion_history(mlflow_store[0], "never-registered")
    assert history.empty and list(history.columns) == CHAMPION_HISTORY_COLUMNS


def test_compare_with_champion_by_hand():
    champion = _scores(
        [
            ("a", "snaive", 0.9, True),
            ("b", "prophet", 0.4, True),  # prophet is not a candidate of the new run
            ("c", "snaive", 0.7, True),  # the new run has no forecast for c
        ]
    )
    new = _scores(
        [
            ("a", "snaive", 1.2, False),
            ("a", "ets", 0.6, True),
            ("b", "snaive", 0.5, True),
            ("c", "snaive", math.inf, False),
            ("d", "ets", 0.1, True),  # new series: nothing to compare with
        ]
    )
    decision = compare_with_champion(new, champion)
    assert decision.promote
    assert (decision.compared_series, decision.mase_new, decision.mase_old) == (1, 0.6, 1.2)  # only a
    assert decision.not_comparable == 1 and decision.lost_series == ("c",)
    assert decision.reason == (
        "promoted: mean MASE 0.6 <= 1.2 of the champion's choices on this backtest, over 1 series "
        "(1 series not comparable; 1 series the champion forecast have no forecast in this run)"
    )


def test_with_no_comparable_series_the_new_selection_is_promoted_and_says_why():
    champion = _scores([("a", "prophet", 0.4, True)])
    new = _scores([("a", "snaive", 0.5, True)])
    decision = compare_with_champion(new, champion)
    assert decision.promote and decision.compared_series == 0 and math.isnan(decision.mase_old)
    assert (
        decision.reason == "promoted: no series comparable with the champion on this backtest (1 series not comparable)"
    )


def test_breakdown_metrics_by_hand():
    metrics = _scores(
        [
            ("route:a", "snaive", 0.5, True),
            ("frontex/route:a", "snaive", 1.5, True),
            ("segment:a/1", "snaive", 2.0, True),
            ("all", "snaive", math.inf, True),  # scale 0: left out of the MASE mean
            ("route:b", "snaive", math.inf, False),  # failed
            ("route:east.med", "snaive", 1.0, True),
            ("unlisted", "snaive", 9.0, True),  # not in keys: left out
        ]
    )
    metrics["coverage80"] = [0.75, 0.25, 1.0, 0.5, np.nan, 0.5, 0.0]
    metrics.loc[metrics["series_id"] == "route:b", "error"] = "backtest: snaive: RuntimeError: x"
    keys = pd.DataFrame(
        {
            "series_id": ["route:a", "frontex/route:a", "segment:a/1", "all", "route:b", "route:east.med"],
            "level": ["route", "route", "segment", "all", "route", "route"],
            "route_id": ["a", "a", "a", None, "b", "east.med"],
            "source": ["density", "frontex", "density", "density", "density", "density"],
        }
    )
    out = breakdown_metrics(metrics, keys)
    assert out["mase_mean_chosen.level.route"] == 1.0  # (0.5 + 1.5 + 1.0) / 3
    assert out["coverage80_mean_chosen.level.route"] == 0.5  # (0.75 + 0.25 + 0.5) / 3
    assert math.isnan(out["mase_mean_chosen.level.all"]) and out["coverage80_mean_chosen.level.all"] == 0.5
    assert out["n_series.level.route"] == 4 and out["n_series_without_forecast.level.route"] == 1
    assert out["mae_mean_chosen.route.a.density"] == 5.0 and out["mae_mean_chosen.route.a.frontex"] == 15.0
    assert math.isnan(out["mase_mean_chosen.route.b.density"])  # listed, but no forecast
    assert out["mase_mean_chosen.route.east_med.density"] == 1.0  # "." is not allowed inside a name part
    assert not any("unlisted" in name or "9.0" in name for name in out)


def test_keys_without_a_level_are_refused(mlflow_store):
    with pytest.raises(ValueError, match=r"keys frame: columns \['level'\] missing"):
        log_forecast_run(
            tracking_uri=mlflow_store[0],
            experiment="routecast-refused",
            run_name="x",
            params={},
            forecasts=_published(GATE_RUNS["v1"]),
            metrics=GATE_RUNS["v1"],
            keys=pd.DataFrame({"series_id": ["a"], "route_id": ["r"]}),
        )
