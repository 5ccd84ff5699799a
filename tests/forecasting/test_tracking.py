import math
import os
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecasting.selection import MODEL_FACTORIES, SelectionConfig, select_and_forecast
from forecasting.tracking import (
    RunInfo,
    UnknownSeriesError,
    artifact_location_for,
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


def _batch() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two series forecast by seasonal naive; the fake candidate fails on both.

    route:a repeats WEEK exactly (MASE 0). route:b adds 1/day, so on the 14-day holdout the last-week
    forecast is off by 7 (days 1-7) and 14 (days 8-14): MAE 10.5, scale 7, MASE 1.5.
    """
    a = WEEK * 6
    b = [v + t for t, v in enumerate(WEEK * 6)]
    results = [select_and_forecast(series_frame(sid, y), CFG, FACTORIES) for sid, y in [("route:a", a), ("route:b", b)]]
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

    everything = model.predict(pd.DataFrame({"series_id": ["route:a", "route:b"]}))
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
    assert metrics["mase_mean.seasonal_naive"] == pytest.approx(0.75)  # (0 + 1.5) / 2
    assert metrics["mase_mean_chosen"] == pytest.approx(0.75)
    assert math.isnan(metrics["mase_mean.always_fails"])  # it never produced a finite score
    assert metrics["champion_share.seasonal_naive"] == 1.0 and metrics["champion_share.always_fails"] == 0.0
    assert metrics["n_series"] == 2 and metrics["n_failed_fits"] == 2
    assert metrics["n_series_without_forecast"] == 0

    artifacts = {a.path for a in MlflowClient(tracking_uri=mlflow_store[0]).list_artifacts(info.run_id)}
    assert {"forecasts.parquet", "metrics.parquet"} <= artifacts
    # Artifacts live beside the SQLite file, under the caller's folder.
    assert (Path(folder) / "mlartifacts" / info.run_id / "artifacts" / "forecasts.parquet").is_file()
    stored = pd.read_parquet(Path(folder) / "mlartifacts" / info.run_id / "artifacts" / "metrics.parquet")
    assert len(stored) == 4 and stored["chosen"].sum() == 2


def test_logging_leaves_the_callers_mlflow_configuration_alone(logged):
    *_, before, after = logged
    assert after == before


def test_a_second_run_moves_the_champion_alias(logged, mlflow_store):
    first, forecasts, *_ = logged
    uri, _ = mlflow_store
    metrics = _batch()[1]
    second = log_forecast_run(
        tracking_uri=uri, experiment="routecast-test", run_name="again", params={}, forecasts=forecasts, metrics=metrics
    )
    assert int(second.model_version) == int(first.model_version) + 1
    assert second.experiment_id == first.experiment_id
    champion = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == second.model_version


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
