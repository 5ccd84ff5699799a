"""Forecast: Spark fans the gold series out to ``forecasting`` (pandas, one group per series), the driver
logs the run to MLflow and registers the champion.

A series whose forecast fails is never dropped silently: it comes back as a metric row with its error, is
logged, and is counted in the result.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from contracts import tables
from contracts.schemas import CROSSING, PRESENT
from contracts.series import PEOPLE_SOURCE, series_id
from forecasting.backtest import SCORE_NAMES
from forecasting.hierarchy import RESIDUAL_COLUMNS, hierarchy_from_keys, reconcile
from forecasting.measured import widen_forecasts
from forecasting.models.pooled import POOLED, Panel, PanelFactory
from forecasting.people import LEADING_MODEL, lead_forecasts
from forecasting.plots import route_series_ids
from forecasting.protocol import FREQS, PERIOD_OFFSETS
from forecasting.selection import (
    FORECAST_COLUMNS,
    METRICS_COLUMNS,
    MODEL_FACTORIES,
    ModelFactory,
    SelectionConfig,
    select,
)
from forecasting.totals import TOTALS_COLUMNS, widen_totals
from forecasting.tracking import RunInfo, log_forecast_run
from jobs import lake
from jobs.settings import JobSettings
from jobs.stages import people
from jobs.stages.counts import POINT_SOURCES, SOURCES
from jobs.stages.publish import history_start

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
        # kind=residual: the champion's backtest error y - mean at one (cutoff, step), keyed alike across series.
        StructField("key", StringType(), True),
        StructField("residual", DoubleType(), True),
        # kind=total: the total of the next ``window`` periods, from ds to ``end``, its intervals and quantiles.
        StructField("window", IntegerType(), True),
        StructField("end", DateType(), True),
        StructField("quantiles", ArrayType(DoubleType()), True),
        StructField("n_scores", IntegerType(), True),
    ]
)


KEY_COLUMNS = ["series_id", "level", "route_id", "segment_id", "freq", "source"]


# Official counts (long, seasonal, bursty: jobs.stages.counts.SOURCES) and the signals made from phones (device
# density, flows, people: daily, short, with a weekly rhythm) are forecast by different procedures; every path
# (nightly, routecast forecast / evaluate, experiments) takes its procedure from selection_configs by procedure_key,
# so a series is forecast the same way wherever it is asked for.
COUNTS_SOURCES = frozenset(SOURCES)


def procedure_key(source: str, freq: str) -> str:
    """Which procedure of :func:`selection_configs` forecasts a series of ``source`` at ``freq``."""
    if source in COUNTS_SOURCES or freq != "D":
        return f"counts:{freq}"
    return "people:D" if source == PEOPLE_SOURCE else "signal:D"


def selection_configs(settings: JobSettings) -> dict[str, SelectionConfig]:
    """The forecasting procedures, one per :func:`procedure_key` (``counts:D|W|M``, ``signal:D``, ``people:D``), from
    settings.

    - signal:D (device density, flows): the best of ``forecast_candidates`` per series on ``backtest_origins``.
    - people:D (the measurement model's people): the best of ``people_candidates`` per series on
      ``people_backtest_origins`` daily origins of ``people_holdout_days``, calibrated on log1p, with totals,
      forecast ``people_horizon_days`` ahead.
    - counts:D (daily official counts): the mean of ``counts_daily_candidates`` (recent level and last year's same
      weeks), backtested on ``counts_daily_backtest_origins`` weekly origins of ``counts_daily_holdout_days``.
    - counts:W and counts:M: the median (``coarse_ensemble``) of ``coarse_candidates``, backtested on
      ``coarse_backtest_origins`` origins one period apart; for counts:M with ``monthly_pooled``, its mean with the
      pooled model (the anchor: ``pooled_factories`` gives it the series it learns from).
    Official counts are calibrated on log1p (misses relative to the level) and carry totals (``totals_*``).
    """
    totals = {"D": settings.totals_days, "W": settings.totals_weeks, "M": settings.totals_months}
    configs = {}
    for freq in FREQS:
        holdout, horizon = settings.periods(freq)
        if freq == "D":
            configs["signal:D"] = SelectionConfig.for_freq(
                freq,
                holdout=holdout,
                horizon=horizon,
                candidates=tuple(settings.forecast_candidates),
                origins=settings.backtest_origins,
            )
            configs["people:D"] = SelectionConfig.for_freq(
                freq,
                holdout=settings.people_holdout_days,
                horizon=settings.people_horizon_days,
                candidates=tuple(settings.people_candidates),
                origins=settings.people_backtest_origins,
                step=1,
                calibration_space="log1p",
                totals=tuple(settings.totals_days),
            )
            choice = {
                "holdout": settings.counts_daily_holdout_days,
                "candidates": tuple(settings.counts_daily_candidates),
                "origins": settings.counts_daily_backtest_origins,
                "step": 7,
                "point": settings.counts_daily_point,
            }
        else:
            choice = {
                "holdout": holdout,
                "candidates": tuple(settings.coarse_candidates),
                "origins": settings.coarse_backtest_origins,
                "step": 1,
                "champion": settings.coarse_champion,
                "point": settings.coarse_point,
            }
        if freq == "M" and settings.monthly_pooled and POOLED not in choice["candidates"]:
            choice = {**choice, "candidates": (*choice["candidates"], POOLED), "anchor": POOLED}
        configs[f"counts:{freq}"] = SelectionConfig.for_freq(
            freq,
            horizon=horizon,
            **{"champion": "ensemble", **choice},
            ensemble_top=len(choice["candidates"]),
            ensemble_stat=settings.coarse_ensemble if freq != "D" else "mean",
            calibration_space="log1p",
            totals=tuple(totals[freq]),
        )
    return configs


def pooled_factories(
    cfg: SelectionConfig, series: Mapping[str, pd.Series], factories: Mapping[str, ModelFactory] = MODEL_FACTORIES
) -> Mapping[str, ModelFactory]:
    """``factories`` whose pooled model (``cfg`` naming it) learns from ``series`` ({series_id: y}, monthly); as
    they are otherwise. Every path gives it the monthly official series it reads: the nightly run all of them, an
    analyst's command the file's own and those of the files it pools with."""
    if POOLED not in cfg.candidates or not series:
        return factories
    return {**factories, POOLED: PanelFactory(Panel(series))}


# A people series begins when the people stage first measured its route (a crossing point's W/2 days later still), so
# a young one is shorter than people:D's holdout of 28 days plus two weeks to train. It is not left without a
# forecast: its holdout shrinks (to at least a week) so that up to this many origins fit; totals longer than the
# shrunk holdout are not calibrated and left out.
SHORT_PEOPLE_ORIGINS = 9


def fitted_to(cfg: SelectionConfig, key: str, length: int) -> SelectionConfig:
    """The procedure ``cfg`` of ``key`` for a series of ``length`` periods: unchanged, except a people:D series too
    short for it, whose holdout shrinks to fit SHORT_PEOPLE_ORIGINS origins (at least 7 days; a series shorter
    than 7 days plus two weeks stays too short, and selection says so)."""
    if key != "people:D" or length >= cfg.min_length + SHORT_PEOPLE_ORIGINS - 1:
        return cfg
    holdout = max(7, min(cfg.holdout, length - 2 * cfg.season_length - (SHORT_PEOPLE_ORIGINS - 1)))
    return replace(cfg, holdout=holdout)


def procedures_manifest(settings: JobSettings, keys: pd.DataFrame) -> dict[str, dict]:
    """What a release says about how its forecasts were made: each procedure used (candidates, champion rule,
    backtest, calibration, point, totals) and, per "<source>/<freq>", whether yhat is a mean or a median."""
    configs = selection_configs(settings)
    used = sorted({(str(r.source), str(r.freq)) for r in keys[["source", "freq"]].drop_duplicates().itertuples()})
    procedures = {procedure_key(s, f) for s, f in used}
    fields = (
        "candidates",
        "anchor",
        "champion",
        "origins",
        "step",
        "holdout",
        "horizon",
        "calibration_space",
        "point",
        "totals",
    )
    return {
        "procedures": {key: {f: getattr(configs[key], f) for f in fields} for key in sorted(procedures)},
        "points": {f"{s}/{f}": configs[procedure_key(s, f)].point for s, f in used},
    }


def forecast_group(
    configs: dict[str, SelectionConfig], factories: Mapping[str, ModelFactory] = MODEL_FACTORIES
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The per-series function Spark runs: select a model on the backtest, forecast, never raise."""
    columns = GROUP_RESULT.fieldNames()

    def _run(pdf: pd.DataFrame) -> pd.DataFrame:
        sid = str(pdf["series_id"].iloc[0])
        try:
            key = procedure_key(str(pdf["source"].iloc[0]), str(pdf["freq"].iloc[0]))
            found = select(pdf, fitted_to(configs[key], key, len(pdf)), factories)
        except ValueError as exc:  # unusable series (too short, gaps): reported, not dropped
            row = {c: None for c in columns} | {"kind": "metric", "series_id": sid, "error": str(exc), "chosen": False}
            return pd.DataFrame([row], columns=columns, dtype=object)
        forecast = found.forecast.assign(kind="forecast", ds=pd.to_datetime(found.forecast["ds"]).dt.date)
        metrics = found.metrics.assign(kind="metric")
        bt = found.backtest[found.backtest["error"].isna()]
        residuals = pd.DataFrame(
            {
                "kind": "residual",
                "series_id": sid,
                "key": pd.to_datetime(bt["cutoff"]).dt.strftime("%Y-%m-%d") + "+" + bt["step"].astype(str),
                "residual": (bt["y"] - bt["mean"]).astype("float64"),
            }
        )
        totals = found.totals.assign(
            kind="total",
            ds=pd.to_datetime(found.totals["start"]).dt.date,
            end=pd.to_datetime(found.totals["end"]).dt.date,
        ).drop(columns="start")
        parts = [p for p in (forecast, metrics, residuals, totals) if not p.empty]
        out = pd.concat(parts, ignore_index=True).reindex(columns=columns)
        # Nulls, not NaN, where a kind of row has no value: no date, int or list column can hold a NaN.
        out["quantiles"] = [q if isinstance(q, list) else None for q in out["quantiles"]]
        for name in ("ds", "end"):
            out[name] = out[name].astype(object).where(out[name].notna(), None)
        return out.astype({"window": "Int32", "n_scores": "Int32"})

    return _run


@dataclass(frozen=True)
class ForecastResult:
    forecasts: pd.DataFrame  # FORECAST_COLUMNS
    metrics: pd.DataFrame  # METRIC_COLUMNS
    keys: pd.DataFrame  # KEY_COLUMNS + last_observed of every series read: where it sits, how fresh it is
    failed: dict[str, str]  # series_id -> why no forecast
    run: RunInfo
    # The observed values (series_id, ds, y) of every series with a forecast, over publish.HISTORY_DAYS of its
    # frequency up to the run date: the release's history.parquet.
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["series_id", "ds", "y"]))
    # The gold rows read, per source: {"first": "YYYY-MM-DD", "last": "YYYY-MM-DD", "series": n} (manifest "inputs").
    inputs: dict[str, dict] = field(default_factory=dict)
    # forecasting.totals.TOTALS_COLUMNS: the totals of the next k periods of the series whose procedure makes them.
    totals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TOTALS_COLUMNS))

    def stale(self, run_date: dt.date, periods: int = 2) -> pd.DataFrame:
        """Series whose last observation is more than ``periods`` of their frequency before ``run_date``: their
        forecasts start after that observation, not after the run date (official files end where they end)."""
        limit = [pd.Timestamp(run_date) - periods * PERIOD_OFFSETS[f] for f in self.keys["freq"]]
        old = pd.to_datetime(self.keys["last_observed"]) < pd.Series(limit, index=self.keys.index)
        return self.keys.loc[old, ["series_id", "source", "freq", "last_observed"]].reset_index(drop=True)


_RESULT_FRAMES = ("forecasts", "metrics", "keys", "history", "totals")


def save_result(result: ForecastResult, folder: Path) -> None:
    """Write ``result`` to ``folder`` (replaced atomically): what the publish stage needs when it runs in another
    process than the forecast stage (a resumed run, or a scheduler running one stage per task)."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in _RESULT_FRAMES:
        getattr(result, name).to_parquet(tmp / f"{name}.parquet", index=False)
    meta = {"failed": result.failed, "inputs": result.inputs, "run": asdict(result.run)}
    (tmp / "result.json").write_text(json.dumps(meta, indent=1, default=str))
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.rename(folder, old)
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_result(folder: Path) -> ForecastResult:
    """The ForecastResult ``save_result`` wrote; FileNotFoundError when there is none."""
    meta = json.loads((folder / "result.json").read_text())
    # A result saved before totals existed has none (the default).
    frames = {n: pd.read_parquet(folder / f"{n}.parquet") for n in _RESULT_FRAMES if (folder / f"{n}.parquet").exists()}
    frames["history"]["ds"] = pd.to_datetime(frames["history"]["ds"])
    return ForecastResult(**frames, failed=meta["failed"], inputs=meta["inputs"], run=RunInfo(**meta["run"]))


@dataclass(frozen=True)
class FanOut:
    forecasts: pd.DataFrame  # FORECAST_COLUMNS, by series and ds, as each series' champion made them
    metrics: pd.DataFrame  # METRIC_COLUMNS
    residuals: pd.DataFrame  # RESIDUAL_COLUMNS: the champions' backtest errors, for reconciliation
    totals: pd.DataFrame  # TOTALS_COLUMNS: forecast totals of the series whose procedure makes them


def fan_out(
    series: DataFrame, configs: dict[str, SelectionConfig], factories: Mapping[str, ModelFactory] = MODEL_FACTORIES
) -> FanOut:
    """Model selection and forecast for every series of ``series`` (columns series_id, ds, y, freq, source), one Spark
    group per series (``groupBy("series_id").applyInPandas``). ``factories`` must pickle (Spark ships them)."""
    out = (
        series.select("series_id", "ds", "y", "freq", "source")
        .groupBy("series_id")
        .applyInPandas(forecast_group(configs, factories), GROUP_RESULT)
        .toPandas()
    )
    forecasts = out.loc[out["kind"] == "forecast", FORECAST_COLUMNS].sort_values(["series_id", "ds"], ignore_index=True)
    metrics = out.loc[out["kind"] == "metric", METRIC_COLUMNS].reset_index(drop=True)
    residuals = out.loc[out["kind"] == "residual", RESIDUAL_COLUMNS].reset_index(drop=True)
    totals = out.loc[out["kind"] == "total"].rename(columns={"ds": "start"})
    totals = totals.assign(window=totals["window"].astype("int64"), n_scores=totals["n_scores"].astype("int64"))
    totals = totals[TOTALS_COLUMNS].sort_values(["series_id", "window"], ignore_index=True)
    totals["quantiles"] = [list(map(float, q)) for q in totals["quantiles"]]
    return FanOut(forecasts=forecasts, metrics=metrics, residuals=residuals, totals=totals)


def transform(
    series: DataFrame,
    keys: pd.DataFrame,
    settings: JobSettings,
    configs: dict[str, SelectionConfig],
    factories: Mapping[str, ModelFactory] = MODEL_FACTORIES,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The forecasts of every gold series (``keys``: where each sits in the hierarchy), each series' selection
    metrics and the forecast totals: models chosen per series over the executors (``fan_out``), then the density
    hierarchy reconciled (totals are made by official-count procedures only, which are not reconciled).

    Density series add up (all = routes = segments): they are reconciled, weighing each by its champion's backtest
    errors (``settings.reconciliation``; fallbacks recorded per row). Official counts and flows pass through."""
    fanned = fan_out(series, configs, factories)
    if settings.reconciliation == "none":
        return fanned.forecasts.assign(reconciliation=None), fanned.metrics, fanned.totals
    hierarchy = hierarchy_from_keys(keys)
    reconciled = reconcile(fanned.forecasts, hierarchy, settings.reconciliation, fanned.residuals)
    return reconciled, fanned.metrics, fanned.totals


def run(
    spark: SparkSession,
    settings: JobSettings,
    run_date: dt.date,
    *,
    configs: dict[str, SelectionConfig] | None = None,
    factories: Mapping[str, ModelFactory] = MODEL_FACTORIES,
) -> ForecastResult:
    """Forecast every gold series (density and official counts) from the data up to ``run_date``, reconcile the
    density hierarchy, log the run and register the forecasts in MLflow.

    The official figures per crossing point (``POINT_SOURCES``: monthly landings per place) are not forecast: they
    only split a route's arrivals among its entry points, and the people crossing there are forecast daily.

    ``configs`` (one SelectionConfig per procedure_key; default selection_configs(settings)) and ``factories`` are
    for experiments and tests that bring their own models."""
    configs = selection_configs(settings) if configs is None else configs
    series = (
        lake.read(spark, settings, tables.SERIES)
        .where((F.col("ds") <= F.lit(run_date)) & ~F.col("source").isin(*POINT_SOURCES))
        .cache()
    )
    keys = (
        series.groupBy(*KEY_COLUMNS)
        .agg(F.max("ds").alias("last_observed"))
        .toPandas()
        .sort_values("series_id", ignore_index=True)
    )
    if keys.empty:
        series.unpersist()
        raise ValueError(f"no gold series up to {run_date}; run the series stage (or ingest-counts) first")
    history = _recent_history(series, keys)
    observed = _published_history(series, run_date)
    inputs = _inputs(series)
    monthly = configs.get("counts:M")
    if monthly is not None and POOLED in monthly.candidates:
        rows = series.where(F.col("freq") == "M").select("series_id", "ds", "y").toPandas()
        panel = {
            str(sid): pd.Series(part["y"].to_numpy(dtype="float64"), index=pd.DatetimeIndex(part["ds"])).sort_index()
            for sid, part in rows.groupby("series_id")
        }
        factories = pooled_factories(monthly, panel, factories)
    try:
        reconciled, metrics, totals = transform(series, keys, settings, configs, factories)
    finally:
        series.unpersist()
    forecasts = lead_people(spark, settings, run_date, reconciled[FORECAST_COLUMNS])
    totals = led_totals(totals, forecasts)
    keys["level_sigma"] = keys["series_id"].map(people_level_sigma(spark, settings, run_date)).astype("float64")
    forecasts = widen_forecasts(forecasts, keys.set_index("series_id")["level_sigma"])
    totals = measured_totals(totals, keys, people.read_model(settings))
    with_forecast = set(forecasts["series_id"])
    failed = {r.series_id: str(r.error) for r in metrics.itertuples() if r.series_id not in with_forecast}
    params = {
        "run_date": str(run_date),
        "h3_res": settings.h3_res,
        "min_devices": settings.min_devices,
        "n_failed_series": len(failed),
        "sources": ",".join(sorted(keys["source"].unique())),
        "reconciliation": settings.reconciliation,
        "reconciliation_used": ",".join(sorted(reconciled["reconciliation"].dropna().unique())) or "none",
        **{
            f"{key.replace(':', '.')}.{k}": v
            for key, cfg in configs.items()
            for k, v in asdict(cfg).items()
            if k != "freq"
        },
    }
    run_info = log_forecast_run(
        tracking_uri=settings.tracking_uri,
        experiment=settings.mlflow_experiment,
        run_name=f"nightly-{run_date}",
        params=params,
        forecasts=forecasts,
        metrics=metrics,
        keys=keys,
        history=history,
        registered_model=settings.registered_model,
        totals=totals,
    )
    return ForecastResult(
        forecasts=forecasts,
        metrics=metrics,
        keys=keys,
        failed=failed,
        run=run_info,
        history=observed[observed["series_id"].isin(with_forecast)].reset_index(drop=True),
        inputs=inputs,
        totals=totals,
    )


def lead_people(spark: SparkSession, settings: JobSettings, run_date: dt.date, forecasts: pd.DataFrame) -> pd.DataFrame:
    """The first days of each crossing point's people forecast from the people already on its route.

    The people stage writes, per crossing point, the crossings the people present on the run date imply for the
    next W/2 days (gold ``people``, ``measure="ahead"``): those days' forecasts are that expectation
    (``forecasting.people.lead_forecasts``); later days keep the univariate champion's. Only with
    ``settings.people_leading`` (off by default: it did not beat the univariate forecast against the simulated
    arrivals). A led point's totals are dropped (``led_totals``): they were calibrated on the univariate forecast.
    """
    path = settings.lake(tables.PEOPLE)
    if not settings.people_leading or not (path / "measure=ahead").exists():
        return forecasts
    ahead = (
        lake.read(spark, settings, tables.PEOPLE)
        .where((F.col("measure") == "ahead") & (F.col("date") > F.lit(run_date)) & F.col("people").isNotNull())
        .select("route_id", "segment_id", "crossing_point_id", F.col("date").alias("ds"), "people", "lo80", "hi80")
        .toPandas()
    )
    if ahead.empty or min(ahead["ds"]) != run_date + dt.timedelta(days=1):
        # No people, or people estimated for another run date (a stage run alone): nothing may lead this date's.
        return forecasts
    ahead["series_id"] = [
        series_id("point", r, s, PEOPLE_SOURCE, crossing_point=c)
        for r, s, c in zip(ahead["route_id"], ahead["segment_id"], ahead["crossing_point_id"], strict=True)
    ]
    # The same type of day as the forecasts' (dates from Spark, timestamps from pandas).
    ahead["ds"] = pd.to_datetime(ahead["ds"])
    if not pd.api.types.is_datetime64_any_dtype(forecasts["ds"]):
        ahead["ds"] = ahead["ds"].dt.date
    return lead_forecasts(forecasts, ahead)


def led_totals(totals: pd.DataFrame, forecasts: pd.DataFrame) -> pd.DataFrame:
    """``totals`` without those of series whose forecast the leading indicator changed (its model names it): their
    intervals were calibrated on the univariate forecast's backtest, not on the published one."""
    led = set(forecasts.loc[forecasts["model"].astype(str).str.startswith(LEADING_MODEL), "series_id"])
    return totals[~totals["series_id"].isin(led)].reset_index(drop=True) if led else totals


def measured_totals(totals: pd.DataFrame, keys: pd.DataFrame, model: dict | None) -> pd.DataFrame:
    """``totals`` with those of people series widened by their measurement error, which a backtest of the
    estimated series cannot see (``forecasting.totals.widen_totals``): the series' own ``level_sigma`` in ``keys``
    (``people_level_sigma``) where known, else its route's (the people model's ``sigma_log``: the scale's
    uncertainty from the coarse fit). Without a people model, or for other sources, unchanged."""
    if model is None or totals.empty:
        return totals
    routes = model.get("routes", {})
    people_keys = keys[keys["source"] == PEOPLE_SOURCE]
    own = people_keys.get("level_sigma", pd.Series(float("nan"), index=people_keys.index))
    sigma = {}
    for r, level in zip(people_keys.itertuples(index=False), own, strict=True):
        if pd.notna(level) and level > 0:
            sigma[r.series_id] = float(level)
        elif (routes.get(r.route_id) or {}).get("sigma_log") is not None:
            sigma[r.series_id] = float(routes[r.route_id]["sigma_log"])
    return widen_totals(totals, pd.Series(sigma, dtype="float64"))


LEVEL_DAYS = 28  # the people stage's intervals a series' level error is read from: its last four weeks


def people_level_sigma(spark: SparkSession, settings: JobSettings, run_date: dt.date) -> pd.Series:
    """Per people series id, the log-scale error of the estimate it forecasts, as the people stage states it: the
    median over its last ``LEVEL_DAYS`` estimated days up to ``run_date`` of its 80 % interval's half-width in logs
    over z(90 %). It holds the route's scale error and, at a crossing point, the error of its share (large where the
    share is a guess: a departure point's equal part of the landings its boats reach). A level error: it does not
    cancel over days. Empty without people estimates."""
    path = settings.lake(tables.PEOPLE)
    if not path.exists():
        return pd.Series(dtype="float64")
    first = run_date - dt.timedelta(days=LEVEL_DAYS - 1)
    rows = (
        lake.read(spark, settings, tables.PEOPLE)
        .where(
            F.col("measure").isin(PRESENT, CROSSING)
            & (F.col("date") >= F.lit(first))
            & (F.col("date") <= F.lit(run_date))
            & (F.col("people") > 0)
            & (F.col("lo80") > 0)
        )
        .select("route_id", "segment_id", "crossing_point_id", "measure", "lo80", "hi80")
        .toPandas()
    )
    if rows.empty:
        return pd.Series(dtype="float64")
    rows["sigma"] = (np.log(rows["hi80"]) - np.log(rows["lo80"])) / (2 * NormalDist().inv_cdf(0.9))
    level = [
        "point" if m == CROSSING else "segment" if pd.notna(s) else "route"
        for m, s in zip(rows["measure"], rows["segment_id"], strict=True)
    ]
    rows["series_id"] = [
        series_id(lv, r, s if lv != "route" else None, PEOPLE_SOURCE, crossing_point=c if lv == "point" else None)
        for lv, r, s, c in zip(level, rows["route_id"], rows["segment_id"], rows["crossing_point_id"], strict=True)
    ]
    return rows.groupby("series_id")["sigma"].median()


def _published_history(series: DataFrame, run_date: dt.date) -> pd.DataFrame:
    """The observed values of every series over publish.HISTORY_DAYS of its frequency up to ``run_date``."""
    start = F.when(F.col("freq") == "D", F.lit(history_start(run_date, "D")))
    for freq in ("W", "M"):
        start = start.when(F.col("freq") == freq, F.lit(history_start(run_date, freq)))
    rows = series.where(F.col("ds") > start).select("series_id", "ds", "y").toPandas()
    rows["ds"] = pd.to_datetime(rows["ds"])
    return rows.sort_values(["series_id", "ds"], ignore_index=True)


def _inputs(series: DataFrame) -> dict[str, dict]:
    """Per source of the gold rows read: first and last day and number of series."""
    spans = series.groupBy("source").agg(
        F.min("ds").alias("first"), F.max("ds").alias("last"), F.countDistinct("series_id").alias("series")
    )
    return {
        r["source"]: {"first": str(r["first"]), "last": str(r["last"]), "series": int(r["series"])}
        for r in sorted(spans.collect(), key=lambda r: r["source"])
    }


HISTORY_PERIODS = 90  # of each route-level series, for the run's plots


def _recent_history(series: DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """The last HISTORY_PERIODS observations of each route-level series (what the plots show), as pandas."""
    ids = route_series_ids(keys["series_id"], keys)
    if not ids:
        return pd.DataFrame(columns=["series_id", "ds", "y"])
    window = Window.partitionBy("series_id").orderBy(F.col("ds").desc())
    recent = (
        series.where(F.col("series_id").isin(ids))
        .withColumn("_n", F.row_number().over(window))
        .where(F.col("_n") <= HISTORY_PERIODS)
        .select("series_id", "ds", "y")
        .toPandas()
    )
    recent["ds"] = pd.to_datetime(recent["ds"])
    return recent.sort_values(["series_id", "ds"], ignore_index=True)
