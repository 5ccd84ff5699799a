"""One model learnt from many monthly series at once (a pooled, or global, model) behind the forecaster protocol.

Monthly official counts are short: a route has a hundred-odd months, a route's IOM arrivals a few dozen. A model that
learns from every route and source together sees more of how counts move after a rise, a fall or a season than any
one series shows. ``PooledForecaster`` is LightGBM (through Nixtla's mlforecast) on every series of a ``Panel``, on
log1p counts, with lags 1, 2, 3 and 12, the means of the last 3 and 12 months, the month of the year and the series
itself as features, forecasting recursively. experiments/pooled-monthly measured it on Frontex's and IOM's files, and
chose this setting (small trees, 300 rounds) on their earlier windows.

**No look-ahead.** Fitted on one series up to a month (its ``y``), it trains on every series of the panel cut at
that month, so a backtest or an evaluation origin never sees a later month of any series. One fit per (panel,
month) serves every series of the panel, and is kept (``_FITS``), so a rolling evaluation does not refit it per series.

**Which series.** ``y.name`` must be the series' id in the panel and ``y`` its values up to that month (the
selection names ``y`` after its series); anything else is refused, so a series outside the panel makes the candidate
fail at that origin (and the procedure go on without it), never forecast from another series.

Intervals: normal on log1p around the forecast, with the sd of the series' own month-to-month log changes growing
like a random walk's (as the naive model's). Crude on purpose: the procedures recalibrate their champion's intervals
from its backtest misses.

mlforecast and LightGBM are imported on the first fit. Deterministic (one thread, a fixed seed) and picklable.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from forecasting.protocol import (
    LEVELS,
    NotFittedError,
    check_horizon,
    check_levels,
    check_training_series,
    forecast_frame,
    future_dates,
    normal_quantile,
)

__all__ = ["LGBM_PARAMS", "MIN_TRAIN", "POOLED", "Panel", "PanelFactory", "PooledForecaster"]

POOLED = "pooled_lgbm"
# The setting experiments/pooled-monthly chose on the earlier windows ("small"), and what every setting shares.
LGBM_PARAMS: Mapping[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 10,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "random_state": 0,
    "n_jobs": 1,  # one thread: deterministic, and faster than two on a shared two-core machine (measured)
    "verbose": -1,
}
LAGS = (1, 2, 3, 12)
# Months a series needs by an origin to be trained on and forecast: lag 12 and a 12-month mean of lag 1, plus 2.
MIN_TRAIN = 15
_FITS_KEPT = 256  # fitted global models kept (per process): a rolling evaluation revisits each origin many times
_FITS: OrderedDict[tuple[str, pd.Timestamp], Any] = OrderedDict()


class Panel:
    """The monthly series a pooled model learns from together: ``{series_id: y}``, each on the month-start grid.

    ``key`` names the panel's content (ids, months and values), so fitted models are shared between copies of the
    same panel (Spark ships one copy to each worker) and never between different ones."""

    def __init__(self, series: Mapping[str, pd.Series]) -> None:
        if not series:
            raise ValueError("a pooled model needs at least one series in its panel")
        clean: dict[str, pd.Series] = {}
        digest = hashlib.blake2b(digest_size=16)
        for sid in sorted(series):
            y = series[sid]
            if not isinstance(y.index, pd.DatetimeIndex) or y.index.has_duplicates:
                raise ValueError(f"panel series {sid!r}: needs a DatetimeIndex of distinct month starts")
            if not (y.index == y.index.to_period("M").to_timestamp()).all():
                raise ValueError(f"panel series {sid!r}: the pooled model is monthly; dates must be month starts")
            y = y.astype("float64").sort_index().dropna()
            if (y < 0).any():
                raise ValueError(f"panel series {sid!r}: counts must be >= 0")
            clean[str(sid)] = y
            digest.update(str(sid).encode())
            digest.update(y.index.asi8.tobytes())
            digest.update(y.to_numpy().tobytes())
        self.series = clean
        self.key = digest.hexdigest()

    def __contains__(self, series_id: object) -> bool:
        return series_id in self.series

    def forecast(self, cutoff: pd.Timestamp, h: int) -> pd.DataFrame:
        """``series_id, ds, mean``: ``h`` months after ``cutoff`` for every series with MIN_TRAIN months by then,
        from the model trained on every series cut at ``cutoff``."""
        cutoff = pd.Timestamp(cutoff)
        model = self._fitted(cutoff)
        if model is None:
            return pd.DataFrame(columns=["series_id", "ds", "mean"])
        out = model.predict(h=h).rename(columns={"unique_id": "series_id", "lgbm": "mean"})
        out["mean"] = out["mean"].clip(lower=0.0)
        return out[["series_id", "ds", "mean"]]

    def _fitted(self, cutoff: pd.Timestamp) -> Any:
        cache_key = (self.key, cutoff)
        if cache_key in _FITS:
            _FITS.move_to_end(cache_key)
            return _FITS[cache_key]
        parts = []
        for sid, y in self.series.items():
            seen = y[y.index <= cutoff]
            if len(seen) >= MIN_TRAIN:
                parts.append(pd.DataFrame({"unique_id": sid, "ds": seen.index, "y": seen.to_numpy()}))
        model = None
        if parts:
            train = pd.concat(parts, ignore_index=True)
            train["sid"] = pd.Categorical(train["unique_id"], categories=sorted(self.series))
            model = _new_model()
            model.fit(train, static_features=["sid"])
        _FITS[cache_key] = model
        while len(_FITS) > _FITS_KEPT:
            _FITS.popitem(last=False)
        return model


def _new_model() -> Any:
    try:
        from lightgbm import LGBMRegressor
        from mlforecast import MLForecast
        from mlforecast.lag_transforms import RollingMean
        from mlforecast.target_transforms import GlobalSklearnTransformer
        from sklearn.preprocessing import FunctionTransformer
    except ImportError as exc:  # pragma: no cover - installed with routecast
        raise ImportError("the pooled model needs 'mlforecast' and 'lightgbm' (installed with routecast)") from exc
    return MLForecast(
        models={"lgbm": LGBMRegressor(**LGBM_PARAMS)},
        freq="MS",
        lags=list(LAGS),
        lag_transforms={1: [RollingMean(window_size=3), RollingMean(window_size=12)]},
        date_features=["month"],
        target_transforms=[GlobalSklearnTransformer(FunctionTransformer(np.log1p, np.expm1))],
    )


class PooledForecaster:
    """The pooled model's forecast for one series of ``panel`` (``y.name``), trained on all of them up to ``y``'s
    last month. Monthly only."""

    alias = POOLED

    def __init__(self, panel: Panel | None, freq: str = "M") -> None:
        if freq != "M":
            raise ValueError(f"{POOLED}: monthly series only (freq M), got {freq!r}")
        self.panel = panel
        self.freq = freq

    def fit(self, y: pd.Series) -> PooledForecaster:
        y = check_training_series(y, self.alias)
        if self.panel is None:
            raise ValueError(f"{self.alias}: no panel of series to learn from (the run gives one: pooled_factories)")
        sid = y.name
        if sid not in self.panel:
            raise ValueError(f"{self.alias}: series {sid!r} is not in the panel it learns from")
        own = self.panel.series[str(sid)]
        own = own[own.index <= y.index[-1]]
        if not own.index.equals(y.index) or not np.allclose(own.to_numpy(), y.to_numpy()):
            raise ValueError(f"{self.alias}: y is not the panel's series {sid!r} up to {y.index[-1].date()}")
        if len(y) < MIN_TRAIN:
            raise ValueError(f"{self.alias}: needs at least {MIN_TRAIN} months, got {len(y)}")
        steps = np.diff(np.log1p(y.to_numpy()))
        self.sigma_ = float(np.sqrt(np.mean(steps**2))) if steps.size else 0.0
        self.series_id_ = str(sid)
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "last_ds_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        levels = check_levels(levels)
        ds = future_dates(self.last_ds_, h, self.freq)
        found = self.panel.forecast(self.last_ds_, h)
        mine = found[found["series_id"] == self.series_id_].set_index("ds")["mean"].reindex(ds)
        if mine.isna().any():
            raise ValueError(f"{self.alias}: no forecast for {self.series_id_!r} after {self.last_ds_.date()}")
        mean = mine.to_numpy(dtype="float64")
        spread = self.sigma_ * np.sqrt(np.arange(1, h + 1))
        bounds = {}
        for level in levels:
            z = normal_quantile(level)
            bounds[level] = (np.expm1(np.log1p(mean) - z * spread), np.expm1(np.log1p(mean) + z * spread))
        return forecast_frame(ds, mean, bounds)


class PanelFactory:
    """The model factory (``forecasting.selection.ModelFactory``) of the pooled model on ``panel``: picklable, so
    Spark can ship it with the other factories."""

    def __init__(self, panel: Panel) -> None:
        self.panel = panel

    def __call__(self, cfg: Any) -> PooledForecaster:
        return PooledForecaster(self.panel, cfg.freq)
