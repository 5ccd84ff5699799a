"""Forecast: Spark fans the gold series out to ``forecasting`` (pandas, one group per series), the driver
logs the run to MLflow and registers the champion.

A series whose forecast fails is never dropped silently: it comes back as a metric row with its error, is
logged, and is counted in the result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DateType, DoubleType, StringType, StructField, StructType

from forecasting.backtest import SCORE_NAMES
from forecasting.protocol import FREQS, PERIOD_OFFSETS
from forecasting.selection import FORECAST_COLUMNS, METRICS_COLUMNS, SelectionConfig, select_and_forecast
from forecasting.tracking import RunInfo, log_forecast_run
from jobs.lake import read_table
from jobs.schemas import SERIES
from jobs.settings import JobSettings

METRIC_COLUMNS = METRICS_COLUMNS

# What one series group returns: its forecast rows (kind=forecast) and its model-selection rows (kind=metric)
# in one frame, because applyInPandas has a single output schema.
GROUP_RESULT = StructType(
    [
        StructField("kind", StringType(), False),
        StructField("series_id", StringType(), False),
        StructField("ds", DateType(), True),
        *[StructField(c, DoubleType(), True) for c in ("yhat", "lo80", "hi80", "lo95", "hi95")],
        StructField("model", StringType(), True),
        *[StructField(c, DoubleType(), True) for c in SCORE_NAMES],
        StructField("error", StringType(), True),
        StructField("chosen", BooleanType(), True),
    ]
)


KEY_COLUMNS = ["series_id", "level", "route_id", "segment_id", "freq", "source"]


def selection_configs(settings: JobSettings) -> dict[str, SelectionConfig]:
    """One selection config per frequency, with holdout and horizon from settings."""
    configs = {}
    for freq in FREQS:
        holdout, horizon = settings.periods(freq)
        configs[freq] = SelectionConfig.for_freq(freq, holdout=holdout, horizon=horizon)
    return configs


def forecast_group(configs: dict[str, SelectionConfig]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The per-series function Spark runs: select a model on the holdout, forecast, never raise."""
    columns = GROUP_RESULT.fieldNames()

    def _run(pdf: pd.DataFrame) -> pd.DataFrame:
        sid = str(pdf["series_id"].iloc[0])
        try:
            forecast, metrics = select_and_forecast(pdf, configs[str(pdf["freq"].iloc[0])])
        except ValueError as exc:  # unusable series (too short, gaps): reported, not dropped
            row = {c: None for c in columns} | {"kind": "metric", "series_id": sid, "error": str(exc), "chosen": False}
            return pd.DataFrame([row], columns=columns, dtype=object)
        forecast = forecast.assign(kind="forecast", ds=pd.to_datetime(forecast["ds"]).dt.date)
        metrics = metrics.assign(kind="metric")
        return pd.concat([forecast, metrics], ignore_index=True).reindex(columns=columns)

    return _run


@dataclass(frozen=True)
class ForecastResult:
    forecasts: pd.DataFrame  # FORECAST_COLUMNS
    metrics: pd.DataFrame  # METRIC_COLUMNS
    keys: pd.DataFrame  # KEY_COLUMNS + last_observed of every series read: where it sits, how fresh it is
    failed: dict[str, str]  # series_id -> why no forecast
    run: RunInfo

    def stale(self, run_date: dt.date, periods: int = 2) -> pd.DataFrame:
        """Series whose last observation is more than ``periods`` of their frequency before ``run_date``: their
        forecasts start after that observation, not after the run date (official files end where they end)."""
        limit = [pd.Timestamp(run_date) - periods * PERIOD_OFFSETS[f] for f in self.keys["freq"]]
        old = pd.to_datetime(self.keys["last_observed"]) < pd.Series(limit, index=self.keys.index)
        return self.keys.loc[old, ["series_id", "source", "freq", "last_observed"]].reset_index(drop=True)


def fan_out(series: DataFrame, configs: dict[str, SelectionConfig]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Model selection and forecast for every series of ``series`` (columns series_id, ds, y, freq), one Spark
    group per series; returns (forecasts as FORECAST_COLUMNS sorted by series and ds, metrics as METRIC_COLUMNS).
    """
    out = (
        series.select("series_id", "ds", "y", "freq")
        .groupBy("series_id")
        .applyInPandas(forecast_group(configs), GROUP_RESULT)
        .toPandas()
    )
    forecasts = out.loc[out["kind"] == "forecast", FORECAST_COLUMNS].sort_values(["series_id", "ds"], ignore_index=True)
    metrics = out.loc[out["kind"] == "metric", METRIC_COLUMNS].reset_index(drop=True)
    return forecasts, metrics


def run(spark: SparkSession, settings: JobSettings, run_date: dt.date) -> ForecastResult:
    """Forecast every gold series (density and official counts) from the data up to ``run_date``;
    log the run and register the forecasts in MLflow."""
    configs = selection_configs(settings)
    series = read_table(spark, settings.lake("gold", "series"), SERIES).where(F.col("ds") <= F.lit(run_date)).cache()
    keys = (
        series.groupBy(*KEY_COLUMNS)
        .agg(F.max("ds").alias("last_observed"))
        .toPandas()
        .sort_values("series_id", ignore_index=True)
    )
    if keys.empty:
        series.unpersist()
        raise ValueError(f"no gold series up to {run_date}; run the series stage (or ingest-counts) first")
    forecasts, metrics = fan_out(series, configs)
    series.unpersist()
    with_forecast = set(forecasts["series_id"])
    failed = {r.series_id: str(r.error) for r in metrics.itertuples() if r.series_id not in with_forecast}
    params = {
        "run_date": str(run_date),
        "h3_res": settings.h3_res,
        "min_devices": settings.min_devices,
        "n_failed_series": len(failed),
        "sources": ",".join(sorted(keys["source"].unique())),
        **{f"{freq}.{k}": v for freq, cfg in configs.items() for k, v in asdict(cfg).items() if k != "freq"},
    }
    run_info = log_forecast_run(
        tracking_uri=settings.tracking_uri,
        experiment=settings.mlflow_experiment,
        run_name=f"nightly-{run_date}",
        params=params,
        forecasts=forecasts,
        metrics=metrics,
        registered_model=settings.registered_model,
    )
    return ForecastResult(forecasts=forecasts, metrics=metrics, keys=keys, failed=failed, run=run_info)
