"""Per-series model selection: score candidates on a holdout, refit the champion, forecast.

``select_and_forecast`` is what Spark fans out with ``groupBy("series_id").applyInPandas``: one
series' rows in, (forecast, metrics) out, plain pandas and picklable. The pyarrow schemas below are the
single declaration of the two output tables' columns and types.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from forecasting.backtest import (
    SCORE_NAMES,
    ConformalCalibrator,
    backtest_scores,
    checked_prediction,
    median_point,
    rolling_origin_backtest,
    rolling_origins,
)
from forecasting.metrics import seasonal_scale
from forecasting.models.base import describe_failure
from forecasting.models.baselines import Drift, Naive, SeasonalNaive, SeasonalWindow, WindowAverage
from forecasting.models.pooled import POOLED, PooledForecaster
from forecasting.models.prophet import ProphetForecaster
from forecasting.models.statsforecast import IntermittentModel, StatsForecastModel
from forecasting.protocol import (
    LEVELS,
    PERIOD_NAMES,
    Forecaster,
    check_freq,
    future_dates,
    grid_rule,
    interval_columns,
    on_grid,
    period_grid,
)
from forecasting.totals import TOTALS_COLUMNS, forecast_totals
from forecasting.vocabulary import PUBLISHED_VALUES, to_published

__all__ = [
    "DEFAULT_CONFIG",
    "FORECAST_COLUMNS",
    "METRICS_COLUMNS",
    "MODEL_FACTORIES",
    "PERIOD_DEFAULTS",
    "ModelFactory",
    "Selection",
    "SelectionConfig",
    "UnknownModelError",
    "as_arrow_table",
    "forecast_schema",
    "make_model",
    "metrics_schema",
    "select",
    "select_and_forecast",
]

# The published forecast table: its values are named as published (forecasting.vocabulary), not as predicted.
FORECAST_COLUMNS = ["series_id", "ds", *PUBLISHED_VALUES, "model"]
METRICS_COLUMNS = [
    "series_id",
    "model",
    "mase",
    "mae",
    "rmse",
    "coverage80",
    "coverage95",
    "width80",
    "width95",
    "pinball",
    "error",
    "chosen",
]
ENSEMBLE = "ensemble"
_COMBINE = {"median": np.median, "mean": np.mean}
# "inverse_mae": a mean weighted per forecast step by 1 / each member's backtest MAE at that step (Bates & Granger
# 1969): last month's value carries the next month, last year's the months after.
WEIGHTED = "inverse_mae"
SERIES_COLUMNS = ("series_id", "ds", "y")

# Per freq, (holdout, horizon, season_length) in periods of that freq: two weeks / four weeks / a week
# of days; eight weeks / twelve weeks / a year of weeks; six months / six months / a year of months.
PERIOD_DEFAULTS: Mapping[str, tuple[int, int, int]] = {"D": (14, 28, 7), "W": (8, 12, 52), "M": (6, 6, 12)}
# Per freq, the periods in a year (364 days keeps the weekday), the recent window of "window_mean" and the
# half-width of the window a year back that "seasonal_window" averages: about two months and ±four weeks.
YEAR_PERIODS: Mapping[str, int] = {"D": 364, "W": 52, "M": 12}
RECENT_WINDOW: Mapping[str, int] = {"D": 56, "W": 4, "M": 4}
SEASONAL_HALF_WIDTH: Mapping[str, int] = {"D": 28, "W": 4, "M": 1}


@dataclass(frozen=True)
class SelectionConfig:
    """How candidates are compared and how far the champion forecasts, in periods of ``freq``.

    ``freq`` is the series' grid: D (days), W (weeks, Mondays) or M (months, the 1st). ``holdout``,
    ``horizon`` and ``season_length`` left as None take that freq's PERIOD_DEFAULTS, so
    ``SelectionConfig.for_freq("M")`` (the same as ``SelectionConfig(freq="M")``) is holdout 6, horizon 6,
    season 12; after construction they are always ints. To change the freq build a new config
    (``dataclasses.replace`` would keep the resolved periods of the old one).
    """

    holdout: int | None = None
    horizon: int | None = None
    season_length: int | None = None
    candidates: tuple[str, ...] = ("seasonal_naive", "prophet")
    freq: str = "D"
    # Rolling-origin backtest: ``origins`` cutoffs ``step`` periods apart (default: the holdout), each
    # forecasting ``holdout`` periods; the last one leaves exactly the holdout after it.
    origins: int = 1
    step: int | None = None
    # The median (or mean, or the 1/MAE-weighted mean "inverse_mae": ``ensemble_stat``) of the best ``ensemble_top``
    # candidates competes as "ensemble" (0 or 1: no ensemble).
    ensemble_top: int = 3
    ensemble_stat: str = "median"
    # A candidate that weighs as much as all the other members together: the ensemble is then the mean of it and
    # the ``ensemble_stat`` of the others (when it is a member; otherwise the others' as usual). For a model of
    # another kind than the rest (a pooled model beside single-series ones: experiments/pooled-monthly).
    anchor: str | None = None
    # How the champion is picked: "best" = the lowest backtest MAE among the candidates and the ensemble;
    # "ensemble" = the ensemble whenever it could be built (the backtest still scores every candidate, picks the
    # members when ensemble_top < number of candidates, and calibrates the ensemble's intervals). Per-series
    # picking on a short backtest chases noise; a fixed combination often generalises better (experiments/).
    champion: str = "best"
    # Conformal calibration of the champion's intervals from its backtest scores (forecasting.backtest).
    calibrate: bool = True
    # Where the calibration measures misses: "absolute" (counts) or "log1p" (relative to the level).
    calibration_space: str = "absolute"
    # The published point of each period: "mean" (the champion's expected value) or "median" (moved to the median
    # outcome around such means in its backtest, in calibration_space: forecasting.backtest.median_point), the better
    # point for one period of a bursty count. Totals are always sums of the expected values.
    point: str = "mean"
    # Forecast totals of the next k periods for each k here (forecasting.totals), with intervals of the total from
    # the champion's backtest totals; only k <= holdout can be calibrated (longer ones are left out).
    totals: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_freq(self.freq)
        for name, default in zip(("holdout", "horizon", "season_length"), PERIOD_DEFAULTS[self.freq], strict=True):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)  # frozen: resolved once, here
        if self.step is None:
            object.__setattr__(self, "step", self.holdout)
        for name in ("holdout", "horizon", "season_length", "origins", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SelectionConfig.{name}={value!r} must be a positive integer")
        if isinstance(self.candidates, str) or not self.candidates:
            raise ValueError("SelectionConfig.candidates must be a non-empty tuple of model aliases")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"SelectionConfig.candidates has duplicates: {self.candidates}")
        if ENSEMBLE in self.candidates:
            raise ValueError(f"{ENSEMBLE!r} is built from the candidates (ensemble_top), not a candidate itself")
        if self.ensemble_top < 0:
            raise ValueError(f"SelectionConfig.ensemble_top={self.ensemble_top} must be >= 0")
        if self.ensemble_stat not in (*_COMBINE, WEIGHTED):
            raise ValueError(
                f"SelectionConfig.ensemble_stat={self.ensemble_stat!r} must be 'median', 'mean' or '{WEIGHTED}'"
            )
        if self.anchor is not None and (self.anchor not in self.candidates or self.ensemble_stat == WEIGHTED):
            raise ValueError(
                f"SelectionConfig.anchor={self.anchor!r} must be one of the candidates, with ensemble_stat median "
                "or mean"
            )
        if self.calibration_space not in ("absolute", "log1p"):
            raise ValueError(
                f"SelectionConfig.calibration_space={self.calibration_space!r} must be 'absolute' or 'log1p'"
            )
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.totals):
            raise ValueError(f"SelectionConfig.totals={self.totals!r} must be positive numbers of periods")
        if self.point not in ("mean", "median"):
            raise ValueError(f"SelectionConfig.point={self.point!r} must be 'mean' or 'median'")
        if self.champion not in ("best", ENSEMBLE):
            raise ValueError(f"SelectionConfig.champion={self.champion!r} must be 'best' or 'ensemble'")

    @classmethod
    def for_freq(cls, freq: str, **overrides: Any) -> SelectionConfig:
        """The config for series of ``freq`` (D, W, M): its PERIOD_DEFAULTS, with ``overrides`` applied."""
        return cls(freq=freq, **overrides)

    @property
    def min_length(self) -> int:
        """Shortest series (in periods) that can be scored: the holdout plus two seasons of training data.

        Longer series get more origins, up to ``origins``: each origin needs two seasons of training data.
        """
        return self.holdout + 2 * self.season_length


DEFAULT_CONFIG = SelectionConfig()

ModelFactory = Callable[[SelectionConfig], Forecaster]


def _seasonal_naive(cfg: SelectionConfig) -> Forecaster:
    return SeasonalNaive(season_length=cfg.season_length, freq=cfg.freq)


def _prophet(cfg: SelectionConfig) -> Forecaster:
    return ProphetForecaster(freq=cfg.freq)


def _naive(cfg: SelectionConfig) -> Forecaster:
    return Naive(freq=cfg.freq)


def _drift(cfg: SelectionConfig) -> Forecaster:
    return Drift(freq=cfg.freq)


def _window_mean(cfg: SelectionConfig) -> Forecaster:
    return WindowAverage(window=RECENT_WINDOW[cfg.freq], freq=cfg.freq, shortest=min(RECENT_WINDOW[cfg.freq], 4))


def _seasonal_naive_year(cfg: SelectionConfig) -> Forecaster:
    return SeasonalNaive(season_length=YEAR_PERIODS[cfg.freq], freq=cfg.freq)


def _seasonal_window(cfg: SelectionConfig) -> Forecaster:
    return SeasonalWindow(YEAR_PERIODS[cfg.freq], SEASONAL_HALF_WIDTH[cfg.freq], cfg.freq)


def _auto_ets(cfg: SelectionConfig) -> Forecaster:
    return StatsForecastModel("auto_ets", cfg.season_length, cfg.freq)


def _auto_theta(cfg: SelectionConfig) -> Forecaster:
    return StatsForecastModel("auto_theta", cfg.season_length, cfg.freq)


def _auto_arima(cfg: SelectionConfig) -> Forecaster:
    return StatsForecastModel("auto_arima", cfg.season_length, cfg.freq)


def _pooled_without_panel(cfg: SelectionConfig) -> Forecaster:
    # The pooled model learns from a panel of series, which each path gives it (jobs.stages.forecast.pooled_factories);
    # without one it fails at fit, and a procedure naming it goes on without it.
    return PooledForecaster(None, cfg.freq)


def _croston(cfg: SelectionConfig) -> Forecaster:
    return IntermittentModel("croston", cfg.freq)


def _adida(cfg: SelectionConfig) -> Forecaster:
    return IntermittentModel("adida", cfg.freq)


def _imapa(cfg: SelectionConfig) -> Forecaster:
    return IntermittentModel("imapa", cfg.freq)


def _tsb(cfg: SelectionConfig) -> Forecaster:
    return IntermittentModel("tsb", cfg.freq)


class _ReadOnlyMapping(Mapping[str, ModelFactory]):
    # MappingProxyType would do, but it cannot be pickled and Spark pickles what the UDF closes over.
    def __init__(self, items: Mapping[str, ModelFactory]) -> None:
        self._items = dict(items)

    def __getitem__(self, alias: str) -> ModelFactory:
        return self._items[alias]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


# Read-only so no caller can change what every other series is fitted with; tests and experiments
# extend it by passing their own mapping (e.g. {**MODEL_FACTORIES, "mine": factory}). Factories are
# module-level functions so the mapping pickles.
MODEL_FACTORIES: Mapping[str, ModelFactory] = _ReadOnlyMapping(
    {
        "seasonal_naive": _seasonal_naive,
        "prophet": _prophet,
        "naive": _naive,
        "drift": _drift,
        "window_mean": _window_mean,
        "seasonal_window": _seasonal_window,
        "seasonal_naive_year": _seasonal_naive_year,  # the same periods a year before (a yardstick for counts)
        "auto_ets": _auto_ets,
        "auto_theta": _auto_theta,
        "auto_arima": _auto_arima,  # slow on weekly data (season 52): not for the nightly fan-out by default
        # Intermittent-demand models on the raw counts (statsforecast's CrostonOptimized, ADIDA, IMAPA, TSB).
        "croston": _croston,
        "adida": _adida,
        "imapa": _imapa,
        "tsb": _tsb,
        # LightGBM on a panel of monthly series (forecasting.models.pooled); needs the panel: see above.
        POOLED: _pooled_without_panel,
    }
)


class UnknownModelError(KeyError):
    """A model alias that no factory is registered for."""

    def __init__(self, alias: str, known: list[str]) -> None:
        super().__init__(alias)
        self.alias = alias
        self.known = known

    def __str__(self) -> str:  # KeyError would repr-quote the whole message
        return f"unknown model alias {self.alias!r}; known: {', '.join(self.known)}"


def make_model(
    alias: str, cfg: SelectionConfig = DEFAULT_CONFIG, factories: Mapping[str, ModelFactory] = MODEL_FACTORIES
) -> Forecaster:
    """A fresh, unfitted forecaster for ``alias``; UnknownModelError (a KeyError) names the known ones."""
    try:
        factory = factories[alias]
    except KeyError:
        raise UnknownModelError(alias, sorted(factories)) from None
    return factory(cfg)


def forecast_schema() -> pa.Schema:
    """Arrow schema of the forecast table returned by :func:`select_and_forecast`."""
    return pa.schema(
        [
            pa.field("series_id", pa.string(), nullable=False),
            pa.field("ds", pa.date32(), nullable=False),
            *(pa.field(name, pa.float64(), nullable=False) for name in PUBLISHED_VALUES),
            pa.field("model", pa.string(), nullable=False),
        ]
    )


def metrics_schema() -> pa.Schema:
    """Arrow schema of the per-candidate metrics table; scores are null for a candidate that failed.

    ``model`` is nullable so a caller can record a series refused before any model ran (too short,
    gaps) as one row with its error and no model.
    """
    return pa.schema(
        [
            pa.field("series_id", pa.string(), nullable=False),
            pa.field("model", pa.string()),
            pa.field("mase", pa.float64()),
            pa.field("mae", pa.float64()),
            pa.field("rmse", pa.float64()),
            pa.field("coverage80", pa.float64()),
            pa.field("coverage95", pa.float64()),
            pa.field("width80", pa.float64()),
            pa.field("width95", pa.float64()),
            pa.field("pinball", pa.float64()),
            pa.field("error", pa.string()),
            pa.field("chosen", pa.bool_(), nullable=False),
        ]
    )


def as_arrow_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` as an Arrow table with exactly ``schema`` (columns selected and ordered by it).

    Datetime columns become date32 where the schema says so; NaN in float columns becomes null.
    """
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise ValueError(f"frame is missing columns {missing}; expected {schema.names}")
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


@dataclass(frozen=True)
class Selection:
    """What :func:`select` found for one series."""

    forecast: pd.DataFrame  # FORECAST_COLUMNS
    metrics: pd.DataFrame  # METRICS_COLUMNS
    # The champion's rolling-origin backtest (forecasting.backtest.BACKTEST_COLUMNS, uncalibrated): what its
    # errors were at each (cutoff, step); empty when no champion. Reconciliation weighs series by these.
    backtest: pd.DataFrame
    # forecasting.totals.TOTALS_COLUMNS: the champion's totals of the next k periods for k in cfg.totals.
    totals: pd.DataFrame


def select_and_forecast(
    series: pd.DataFrame,
    cfg: SelectionConfig = DEFAULT_CONFIG,
    factories: Mapping[str, ModelFactory] = MODEL_FACTORIES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(forecast, metrics)`` of :func:`select`."""
    found = select(series, cfg, factories)
    return found.forecast, found.metrics


def select(
    series: pd.DataFrame,
    cfg: SelectionConfig = DEFAULT_CONFIG,
    factories: Mapping[str, ModelFactory] = MODEL_FACTORIES,
) -> Selection:
    """Pick the best candidate for one series on a rolling-origin backtest, refit it on everything, forecast.

    ``series``: one series' rows with columns series_id, ds, y (other columns are ignored), on the grid
    of ``cfg.freq`` (every ds a day, a Monday for W, the 1st of a month for M). Periods must be
    contiguous (a missing period is a ValueError naming the series and the first gap; nothing is filled)
    and there must be at least ``cfg.holdout + 2 * cfg.season_length`` of them.

    Each candidate is refitted at up to ``cfg.origins`` origins (``cfg.step`` apart, the last one leaving the
    final ``cfg.holdout`` periods; origins with less than two seasons of training data are skipped) and scored
    on the ``cfg.holdout`` periods after each (forecasting.backtest: MAE, RMSE, MASE scaled on the data before
    the first origin, coverage and width of the 80/95 % intervals, pinball). A candidate that raises at any
    origin scores MASE = inf and its error is recorded. With ``cfg.ensemble_top`` >= 2, the median (or mean) of
    the best that many candidates competes as "ensemble". The champion is the lowest MAE (ties: first in
    ``cfg.candidates``, the ensemble last), or the ensemble whenever built with ``cfg.champion="ensemble"``; it
    is refitted on the whole series and forecasts ``cfg.horizon``
    periods, its intervals conformally calibrated from its backtest (``cfg.calibrate``). If that refit fails,
    the next-ranked candidate is used and the failure is recorded on the champion's row. If no candidate can be
    fitted at all, the forecast is empty and no metrics row is marked chosen.

    With ``cfg.point="median"`` each period's published point is the median outcome around such means in the
    champion's backtest (forecasting.backtest.median_point). Totals of the next k periods (``cfg.totals``, k up to the
    holdout) sum the champion's expected values, with intervals calibrated on its backtest totals
    (forecasting.totals).

    Returns a Selection: forecast has FORECAST_COLUMNS, one row per period after the last ds; metrics has
    METRICS_COLUMNS, one row per candidate (and the ensemble, when built); backtest is the champion's; totals has
    forecasting.totals.TOTALS_COLUMNS.
    """
    unknown = [alias for alias in cfg.candidates if alias not in factories]
    if unknown:
        raise UnknownModelError(unknown[0], sorted(factories))
    series_id, y = _regular_series(series, cfg.freq)
    if len(y) < cfg.min_length:
        raise ValueError(
            f"series {series_id!r}: {len(y)} {PERIOD_NAMES[cfg.freq]}s is too short; selection needs at least "
            f"holdout + 2 * season_length = {cfg.min_length}"
        )

    cutoffs = rolling_origins(len(y), cfg.holdout, cfg.origins, cfg.step, min_train=2 * cfg.season_length)
    scale = seasonal_scale(y.iloc[: cutoffs[0]].to_numpy(), cfg.season_length)
    backtests: dict[str, pd.DataFrame] = {}
    rows = []
    for alias in cfg.candidates:
        backtest = rolling_origin_backtest(y, partial(make_model, alias, cfg, factories), cutoffs, cfg.holdout)
        backtests[alias] = backtest
        rows.append(_score_row(series_id, alias, backtest, scale))
    members = _ensemble_members(rows, cfg.ensemble_top)
    weights = None
    if members:
        weights = _step_weights([backtests[alias] for alias in members]) if cfg.ensemble_stat == WEIGHTED else None
        backtests[ENSEMBLE] = _ensemble([backtests[alias] for alias in members], members, cfg, weights)
        rows.append(_score_row(series_id, ENSEMBLE, backtests[ENSEMBLE], scale))

    # Stable sort on (MAE, position): ties go to the earlier candidate; failed ones are never refitted. MAE ranks
    # as MASE does (one scale per series) and still ranks when the scale is 0 (then every imperfect MASE is inf).
    ranked = sorted(
        (i for i, row in enumerate(rows) if row["error"] is None),
        key=lambda i: (not (cfg.champion == ENSEMBLE and rows[i]["model"] == ENSEMBLE), rows[i]["mae"], i),
    )
    forecast = _empty_forecast()
    totals = pd.DataFrame(columns=TOTALS_COLUMNS)
    champion_backtest = pd.DataFrame(columns=next(iter(backtests.values())).columns)
    expected_ds = future_dates(y.index[-1], cfg.horizon, cfg.freq)
    for i in ranked:
        alias = rows[i]["model"]
        try:
            chosen = members if alias == ENSEMBLE else [alias]
            fitted = [make_model(a, cfg, factories).fit(y) for a in chosen]
            prediction = _ensemble(
                [checked_prediction(m, cfg.horizon, expected_ds) for m in fitted],
                chosen,
                cfg,
                weights if alias == ENSEMBLE else None,
            )
            if cfg.calibrate:
                calibrator = ConformalCalibrator.from_backtest(backtests[alias], LEVELS, space=cfg.calibration_space)
                prediction = calibrator.apply(prediction)
        except Exception as exc:  # recorded on the candidate's row; the next-ranked one takes over
            rows[i]["error"] = "refit: " + describe_failure(alias, exc)
            continue
        rows[i]["chosen"] = True
        champion_backtest = backtests[alias]
        windows = [k for k in cfg.totals if k <= cfg.holdout]
        totals = forecast_totals(series_id, alias, champion_backtest, prediction, windows, cfg.freq)
        if cfg.point == "median":
            prediction = median_point(champion_backtest, prediction, cfg.calibration_space)
        forecast = _forecast_rows(series_id, alias, prediction)
        break

    metrics = pd.DataFrame(rows, columns=METRICS_COLUMNS).astype(
        {**dict.fromkeys(SCORE_NAMES, "float64"), "chosen": "bool"}
    )
    return Selection(forecast=forecast, metrics=metrics, backtest=champion_backtest, totals=totals)


def _score_row(series_id: str, alias: str, backtest: pd.DataFrame, scale: float) -> dict[str, object]:
    row: dict[str, object] = {"series_id": series_id, "model": alias, "error": None, "chosen": False}
    failed = backtest["error"].dropna()
    if len(failed):
        row.update(dict.fromkeys(SCORE_NAMES, math.nan), mase=math.inf, error=f"backtest: {alias}: {failed.iloc[0]}")
    else:
        row.update(backtest_scores(backtest, scale))
    return row


def _ensemble_members(rows: list[dict[str, object]], top: int) -> list[str]:
    """The best ``top`` candidates that ran everywhere (none if fewer than two did, or ``top`` < 2)."""
    ok = sorted((r for r in rows if r["error"] is None), key=lambda r: r["mae"])
    return [str(r["model"]) for r in ok[:top]] if top >= 2 and len(ok) >= 2 else []


def _ensemble(
    frames: list[pd.DataFrame], aliases: list[str], cfg: SelectionConfig, weights: dict[int, np.ndarray] | None
) -> pd.DataFrame:
    """The members' frames combined: ``cfg.ensemble_stat`` of them, or, with ``cfg.anchor`` among more than two of
    them, the mean of the anchor's frame and the stat of the others'."""
    if cfg.anchor in aliases and len(aliases) > 2:
        i = aliases.index(cfg.anchor)
        others = _combine_frames(frames[:i] + frames[i + 1 :], cfg.ensemble_stat)
        return _combine_frames([others, frames[i]], "mean")
    return _combine_frames(frames, cfg.ensemble_stat, weights)


def _step_weights(backtests: list[pd.DataFrame]) -> dict[int, np.ndarray]:
    """Per forecast step, each member's weight 1 / its backtest MAE at that step, normalised (step 0: all steps
    pooled, for steps beyond the backtest). A member with no error at a step takes it all (shared if several)."""
    maes = []
    for bt in backtests:
        ok = bt[bt["error"].isna()]
        err = (ok["y"] - ok["mean"]).abs()
        maes.append({0: float(err.mean()), **{int(k): float(v) for k, v in err.groupby(ok["step"]).mean().items()}})
    weights = {}
    for step in set.intersection(*(set(m) for m in maes)):
        mae = np.array([m[step] for m in maes])
        inverse = (mae == 0).astype("float64") if (mae == 0).any() else 1.0 / mae
        weights[step] = inverse / inverse.sum()
    return weights


def _combine_frames(
    frames: list[pd.DataFrame], stat: str = "median", weights: dict[int, np.ndarray] | None = None
) -> pd.DataFrame:
    """Row-wise median or mean (``stat``) of the forecast columns of aligned frames (one frame: itself); with
    ``weights`` (``_step_weights``), the mean weighted by each row's step (a backtest's ``step`` column, else the row
    order of a prediction: step 1, 2, ...).

    Bounds are combined like the means (a combination of quantiles, not the quantiles of a mixture); the ensemble's
    intervals are then calibrated on its own backtest like any champion's."""
    if len(frames) == 1:
        return frames[0]
    out = frames[0].copy()
    if weights is not None:
        steps = out["step"].to_numpy() if "step" in out.columns else np.arange(1, len(out) + 1)
        w = np.vstack([weights.get(int(s), weights[0]) for s in steps])  # rows x members
    for column in ("mean", *interval_columns(LEVELS)):
        stacked = np.column_stack([f[column].to_numpy(dtype="float64") for f in frames])
        if weights is None:
            out[column] = _COMBINE[stat](stacked, axis=1)
        else:
            out[column] = (stacked * w).sum(axis=1)
    return out


def _regular_series(series: pd.DataFrame, freq: str) -> tuple[str, pd.Series]:
    """Validate one series' rows and return ``(series_id, y)`` with y on the regular grid of ``freq``.

    Refused with ValueError: missing columns, no rows, several series ids, ds with a time of day or off
    the grid (not a Monday for W, not the 1st for M), duplicate periods, missing y, missing periods (the
    first gap is named; nothing is filled).
    """
    missing = [name for name in SERIES_COLUMNS if name not in series.columns]
    if missing:
        raise ValueError(f"series frame: columns {missing} missing; expected {', '.join(SERIES_COLUMNS)}")
    if series.empty:
        raise ValueError("series frame has no rows")
    ids = pd.unique(series["series_id"])
    if len(ids) != 1:
        raise ValueError(f"series frame holds {len(ids)} series ids ({list(ids[:5])}...); pass one series")
    series_id = str(ids[0])

    frame = pd.DataFrame(
        {"ds": pd.to_datetime(series["ds"].to_numpy()), "y": pd.to_numeric(series["y"].to_numpy())}
    ).sort_values("ds", kind="stable")
    ds = pd.DatetimeIndex(frame["ds"])
    period = PERIOD_NAMES[freq]
    if ds.tz is not None or (ds != ds.normalize()).any():
        raise ValueError(f"series {series_id!r}: ds must be calendar days (no time of day, no time zone)")
    off_grid = ds[~on_grid(ds, freq)]
    if len(off_grid):
        raise ValueError(
            f"series {series_id!r}: ds {off_grid[0].date()} is not {grid_rule(freq)}; "
            f"a freq {freq} series has one row per {period}, dated on {grid_rule(freq)}"
        )
    if ds.has_duplicates:
        raise ValueError(f"series {series_id!r}: {period} {ds[ds.duplicated()][0].date()} appears more than once")
    if frame["y"].isna().any():
        first = ds[frame["y"].isna().to_numpy()][0]
        raise ValueError(f"series {series_id!r}: y is missing on {first.date()}")
    grid = period_grid(ds[0], ds[-1], freq)
    gaps = grid.difference(ds)
    if len(gaps):
        raise ValueError(
            f"series {series_id!r}: {len(gaps)} missing {period}(s), first gap at {gaps[0].date()}; "
            "fill the gaps upstream (e.g. explicit zeros) before forecasting"
        )
    # Named after its series: a model that learns from many series (forecasting.models.pooled) finds it by name.
    return series_id, pd.Series(frame["y"].to_numpy(dtype="float64"), index=grid, name=series_id)


def _forecast_rows(series_id: str, alias: str, prediction: pd.DataFrame) -> pd.DataFrame:
    """The champion's prediction as published rows (FORECAST_COLUMNS): where a forecast takes its published names."""
    return pd.DataFrame(
        {
            "series_id": series_id,
            "ds": pd.to_datetime(prediction["ds"].to_numpy()).astype("datetime64[ns]"),
            **to_published(prediction),
            "model": alias,
        },
        columns=FORECAST_COLUMNS,
    )


def _empty_forecast() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series_id": pd.Series(dtype="object"),
            "ds": pd.Series(dtype="datetime64[ns]"),
            **{name: pd.Series(dtype="float64") for name in PUBLISHED_VALUES},
            "model": pd.Series(dtype="object"),
        },
        columns=FORECAST_COLUMNS,
    )
