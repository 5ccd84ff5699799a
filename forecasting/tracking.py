"""MLflow tracking and registry for forecast runs.

One run per forecasting batch: its parameters, aggregate metrics, the forecast and metrics tables as
Parquet artifacts, and the forecasts themselves as a pyfunc model that is registered and aliased
``champion`` so serving can load ``models:/<name>@champion``.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from forecasting.selection import (
    FORECAST_COLUMNS,
    METRICS_COLUMNS,
    as_arrow_table,
    forecast_schema,
    metrics_schema,
)

__all__ = [
    "ForecastTableModel",
    "RunInfo",
    "UnknownSeriesError",
    "artifact_location_for",
    "load_champion",
    "log_forecast_run",
    "summarise_metrics",
]

MODEL_NAME_IN_RUN = "forecaster"
_PYFUNC_ENTRY = Path(__file__).with_name("_pyfunc_entry.py")
FORECASTS_ARTIFACT = "forecasts.parquet"
METRICS_ARTIFACT = "metrics.parquet"


@dataclass(frozen=True)
class RunInfo:
    """Where a logged forecast run and its registered model version live."""

    run_id: str
    model_version: str
    experiment_id: str
    tracking_uri: str


class UnknownSeriesError(KeyError):
    """The published forecasts hold no rows for a requested series."""

    def __init__(self, series_ids: list[str]) -> None:
        super().__init__(series_ids)
        self.series_ids = series_ids

    def __str__(self) -> str:  # KeyError would repr-quote the whole message
        shown = ", ".join(repr(s) for s in self.series_ids[:10])
        more = f" and {len(self.series_ids) - 10} more" if len(self.series_ids) > 10 else ""
        return f"no published forecast for series {shown}{more}"


class ForecastTableModel(mlflow.pyfunc.PythonModel):
    """The published forecast table served as a pyfunc model.

    The table is read from the ``forecasts`` Parquet artifact with the declared forecast schema when the
    model is loaded; nothing is pickled (the model is logged from code, ``_pyfunc_entry.py``), so
    loading needs ``forecasting`` importable. ``predict`` takes a frame with ``series_id`` and
    an optional ``horizon`` (days, per row) and returns those series' forecast rows, in request order and
    by day, limited to the first ``horizon`` days (all published days when there is no horizon column).
    Unknown series raise UnknownSeriesError (a KeyError).
    """

    def load_context(self, context: Any) -> None:
        table = pq.read_table(context.artifacts["forecasts"], schema=forecast_schema())
        forecasts = _forecast_frame_from_arrow(table)
        self.by_series_ = {
            str(series_id): rows.reset_index(drop=True)
            for series_id, rows in forecasts.groupby("series_id", sort=False)
        }

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if "series_id" not in model_input.columns:
            raise ValueError("model input needs a 'series_id' column (and optionally 'horizon')")
        series_ids = [str(s) for s in model_input["series_id"]]
        unknown = [s for s in dict.fromkeys(series_ids) if s not in self.by_series_]
        if unknown:
            raise UnknownSeriesError(unknown)
        if "horizon" in model_input.columns:
            horizons = [_checked_horizon(h) for h in model_input["horizon"]]
        else:
            horizons = [None] * len(series_ids)
        pieces = [self.by_series_[s].iloc[:h] for s, h in zip(series_ids, horizons, strict=True)]
        if not pieces:
            return _forecast_frame_from_arrow(forecast_schema().empty_table())
        return pd.concat(pieces, ignore_index=True)


def log_forecast_run(
    *,
    tracking_uri: str,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    forecasts: pd.DataFrame,
    metrics: pd.DataFrame,
    registered_model: str = "routecast-forecaster",
    alias: str = "champion",
) -> RunInfo:
    """Log one forecast run, register its forecasts as a new model version and alias it.

    ``forecasts`` and ``metrics`` are the (concatenated) outputs of ``select_and_forecast``; they are
    checked against the declared schemas before anything is logged. The run gets ``params``, the
    aggregates from :func:`summarise_metrics`, the artifacts forecasts.parquet and metrics.parquet,
    and a pyfunc model (:class:`ForecastTableModel`) registered under ``registered_model`` with
    ``alias`` moved to the new version. A new experiment on a local SQLite store keeps its artifacts in
    a folder beside the database (see :func:`artifact_location_for`).
    """
    forecasts_table = as_arrow_table(forecasts, forecast_schema())
    metrics_table = as_arrow_table(metrics, metrics_schema())
    summary = summarise_metrics(metrics)

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment_id = _experiment_id(client, experiment, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="routecast-run-") as tmp, _mlflow_uris(tracking_uri):
        forecasts_path = Path(tmp) / FORECASTS_ARTIFACT
        metrics_path = Path(tmp) / METRICS_ARTIFACT
        pq.write_table(forecasts_table, forecasts_path)
        pq.write_table(metrics_table, metrics_path)

        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.log_params(dict(params))
            mlflow.log_metrics(summary)
            mlflow.log_artifact(str(forecasts_path))
            mlflow.log_artifact(str(metrics_path))
            model_info = mlflow.pyfunc.log_model(
                name=MODEL_NAME_IN_RUN,
                # Models-from-code: the entry file is stored and run on load, so no pickle is involved.
                python_model=str(_PYFUNC_ENTRY),
                artifacts={"forecasts": str(forecasts_path)},
                signature=_SIGNATURE,
                input_example=_input_example(forecasts),
                # Explicit requirements: inferring them would load the model in a subprocess (seconds).
                pip_requirements=_pip_requirements(),
                registered_model_name=registered_model,
            )
            model_version = str(model_info.registered_model_version)
            # Inside the run so that a failure here marks the run FAILED rather than leaving it
            # finished with a version nobody points at.
            client.set_registered_model_alias(registered_model, alias, model_version)

    return RunInfo(
        run_id=run.info.run_id,
        model_version=model_version,
        experiment_id=experiment_id,
        tracking_uri=tracking_uri,
    )


def load_champion(
    tracking_uri: str, registered_model: str = "routecast-forecaster", alias: str = "champion"
) -> mlflow.pyfunc.PyFuncModel:
    """Load ``models:/<registered_model>@<alias>`` from the given tracking/registry store."""
    with _mlflow_uris(tracking_uri):
        return mlflow.pyfunc.load_model(f"models:/{registered_model}@{alias}")


def summarise_metrics(metrics: pd.DataFrame) -> dict[str, float]:
    """Run-level aggregates of a per-series metrics table (columns as METRICS_COLUMNS).

    - ``mase_mean.<model>``: mean MASE of each candidate over the series where it is finite (failed
      fits score inf and are counted in ``n_failed_fits`` instead of poisoning the mean);
    - ``mase_mean_chosen``, ``coverage80_mean_chosen``, ``coverage95_mean_chosen``, ``width80_mean_chosen``,
      ``pinball_mean_chosen``: the same for the models that produced the forecasts (backtest scores, before
      calibration);
    - ``champion_share.<model>``: share of series whose forecast comes from that model;
    - ``n_series``, ``n_failed_fits`` (candidate rows with an error), ``n_series_without_forecast``
      (no chosen model: every candidate failed, or the series was refused and has a row without model).
    A mean over no finite values is NaN.
    """
    missing = [name for name in METRICS_COLUMNS if name not in metrics.columns]
    if missing:
        raise ValueError(f"metrics frame is missing columns {missing}; expected {METRICS_COLUMNS}")
    n_series = int(metrics["series_id"].nunique())
    chosen = metrics[metrics["chosen"].astype(bool)]
    summary: dict[str, float] = {}
    for model, rows in metrics.groupby("model", sort=True):
        summary[f"mase_mean.{model}"] = _finite_mean(rows["mase"])
    summary["mase_mean_chosen"] = _finite_mean(chosen["mase"])
    summary["coverage80_mean_chosen"] = _finite_mean(chosen["coverage80"])
    summary["coverage95_mean_chosen"] = _finite_mean(chosen["coverage95"])
    summary["width80_mean_chosen"] = _finite_mean(chosen["width80"])
    summary["pinball_mean_chosen"] = _finite_mean(chosen["pinball"])
    for model in sorted(metrics["model"].dropna().unique()):
        share = (chosen["model"] == model).sum() / n_series if n_series else math.nan
        summary[f"champion_share.{model}"] = float(share)
    summary["n_series"] = float(n_series)
    summary["n_failed_fits"] = float((metrics["error"].notna() & metrics["model"].notna()).sum())
    summary["n_series_without_forecast"] = float(n_series - chosen["series_id"].nunique())
    return summary


def artifact_location_for(tracking_uri: str) -> str | None:
    """Artifact root for a new experiment: ``mlartifacts/`` beside a local SQLite database, else None.

    None lets the tracking server decide (its own default artifact root).
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    db_path = unquote(tracking_uri[len(prefix) :].split("?", 1)[0])
    if not db_path or db_path == ":memory:":
        return None
    # sqlite:////abs/path.db leaves "/abs/path.db"; sqlite:///rel.db is relative to the working dir.
    return (Path(db_path).resolve().parent / "mlartifacts").as_uri()


def _experiment_id(client: MlflowClient, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location_for(tracking_uri))
        except MlflowException as exc:
            # Another job created it between our lookup and create; use theirs.
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise ValueError(
            f"MLflow experiment {name!r} at {tracking_uri} is deleted; restore it "
            "(mlflow experiments restore) or log to another experiment name"
        )
    return experiment.experiment_id


_URI_ENV_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextmanager
def _mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-global tracking and registry URIs at ``uri``, then restore them exactly.

    MLflow's fluent API (start_run, pyfunc.log_model, pyfunc.load_model of models:/) only reads these
    globals, and setting them also writes environment variables. Restoring keeps the caller's own
    MLflow configuration (and other tests) untouched. The previous values are read from MLflow's module
    state because the public getters resolve defaults, which would pin them. Not thread-safe, like the
    globals themselves.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_tracking = getattr(tracking_utils, "_tracking_uri", None)
    saved_registry = getattr(registry_utils, "_registry_uri", None)
    saved_env = {name: os.environ.get(name) for name in _URI_ENV_VARS}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        mlflow.set_registry_uri(saved_registry)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _forecast_frame_from_arrow(table: Any) -> pd.DataFrame:
    """The pandas shape select_and_forecast produces: ds as datetime64[ns], FORECAST_COLUMNS order."""
    frame = table.to_pandas(date_as_object=False)
    frame["ds"] = frame["ds"].astype("datetime64[ns]")
    return frame[FORECAST_COLUMNS]


def _finite_mean(values: pd.Series) -> float:
    finite = values[np.isfinite(values.to_numpy(dtype="float64"))]
    return float(finite.mean()) if len(finite) else math.nan


def _checked_horizon(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not float(value).is_integer() or value < 1:
        raise ValueError(f"horizon {value!r} must be a positive whole number of days")
    return int(value)


def _input_example(forecasts: pd.DataFrame) -> pd.DataFrame | None:
    """One real request (first series, one day); MLflow stores it and checks the model answers it."""
    if forecasts.empty:
        return None
    return pd.DataFrame({"series_id": [str(forecasts["series_id"].iloc[0])], "horizon": [1]})


def _pip_requirements() -> list[str]:
    return [f"{package}=={installed_version(package)}" for package in ("mlflow", "pandas", "pyarrow")]


_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "series_id"), ColSpec("long", "horizon", required=False)]),
    outputs=Schema(
        [
            ColSpec("string", "series_id"),
            ColSpec("datetime", "ds"),
            *(ColSpec("double", name) for name in ("yhat", "lo80", "hi80", "lo95", "hi95")),
            ColSpec("string", "model"),
        ]
    ),
)
