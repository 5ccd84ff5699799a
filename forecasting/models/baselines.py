"""Simple benchmark forecasters following :class:`forecasting.protocol.Forecaster`: naive, seasonal naive, drift,
window mean, seasonal window mean.

They are the yardsticks a fitted model has to beat, and cheap fallbacks. Each one has normal intervals with
σ estimated from its own one-step in-sample residuals (Hyndman & Athanasopoulos, *Forecasting: Principles
and Practice*, 3rd ed., §5.5). Plain pandas/numpy, deterministic and picklable. They compute their values
themselves, so they name them in the protocol's vocabulary directly (through ``forecast_frame``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecasting.protocol import (
    LEVELS,
    NotFittedError,
    check_freq,
    check_horizon,
    check_levels,
    check_training_series,
    forecast_frame,
    future_dates,
    normal_quantile,
)

__all__ = ["Drift", "Naive", "SeasonalNaive", "SeasonalWindow", "WindowAverage"]


def _rms(residuals: np.ndarray) -> float:
    return float(np.sqrt(np.mean(residuals**2)))


def _normal_forecast(
    last_ds: pd.Timestamp, freq: str, mean: np.ndarray, sigma_h: np.ndarray, levels: Sequence[int]
) -> pd.DataFrame:
    bounds = {}
    for level in check_levels(levels):
        z = normal_quantile(level)
        bounds[level] = (mean - z * sigma_h, mean + z * sigma_h)
    return forecast_frame(future_dates(last_ds, len(mean), freq), mean, bounds)


def _require_length(alias: str, y: pd.Series, minimum: int, why: str) -> None:
    if len(y) < minimum:
        raise ValueError(f"{alias}: needs at least {minimum} observations ({why}), got {len(y)}")


class Naive:
    """Forecast = the last value, repeated; normal intervals widening like a random walk.

    Residuals are e_t = y_t - y_{t-1}; σ is their root mean square and σ_h = σ·sqrt(h) (fpp3 §5.5).
    Needs at least 2 observations: a value to repeat and one residual to estimate σ.
    """

    alias = "naive"

    def __init__(self, freq: str = "D") -> None:
        self.freq = check_freq(freq)

    def fit(self, y: pd.Series) -> Naive:
        y = check_training_series(y, self.alias)
        _require_length(self.alias, y, 2, "a value to repeat and one residual")
        values = y.to_numpy()
        self.last_ = float(values[-1])
        self.sigma_ = _rms(np.diff(values))
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "last_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        steps = np.arange(1, h + 1)
        mean = np.full(h, self.last_)
        return _normal_forecast(self.last_ds_, self.freq, mean, self.sigma_ * np.sqrt(steps), levels)


class SeasonalNaive:
    """Forecast = the last full season repeated; normal intervals from in-sample seasonal residuals.

    Works in periods of ``freq`` (D, W or M): ``season_length`` is a number of periods (7 days, 52 weeks,
    12 months) and predict dates its rows on that grid.

    Residuals are e_t = y_t - y_{t-s}; σ is their root mean square. For step h the standard error grows
    as σ_h = σ·sqrt(k + 1) with k = floor((h - 1) / s) (Hyndman & Athanasopoulos, fpp3 §5.5).
    Needs at least ``season_length + 1`` observations: one full season to repeat plus at least one
    residual to estimate σ.
    """

    alias = "seasonal_naive"

    def __init__(self, season_length: int = 7, freq: str = "D") -> None:
        if season_length < 1:
            raise ValueError(f"season_length={season_length} must be >= 1")
        self.season_length = season_length
        self.freq = check_freq(freq)

    def fit(self, y: pd.Series) -> SeasonalNaive:
        y = check_training_series(y, self.alias)
        s = self.season_length
        if len(y) < s + 1:
            raise ValueError(
                f"{self.alias}: needs at least season_length + 1 = {s + 1} observations "
                f"(a full season and one residual), got {len(y)}"
            )
        values = y.to_numpy()
        residuals = values[s:] - values[:-s]
        self.last_season_ = values[-s:].copy()
        self.sigma_ = float(np.sqrt(np.mean(residuals**2)))
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "last_season_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        s = self.season_length
        steps = np.arange(h)  # step index i = h_step - 1
        mean = self.last_season_[steps % s]
        sigma_h = self.sigma_ * np.sqrt(steps // s + 1)
        return _normal_forecast(self.last_ds_, self.freq, mean, sigma_h, levels)


class Drift:
    """Random walk with drift: the line through the first and last observations, extended.

    slope = (y_T - y_1) / (T - 1) and the forecast for step h is y_T + h·slope. Residuals are those of the
    drift one-step fit, e_t = y_t - y_{t-1} - slope; σ is their root mean square and, as in fpp3 §5.5
    (Hyndman & Athanasopoulos, table "Multi-step forecast standard deviation", drift row),
    σ_h = σ·sqrt(h·(1 + h/(T - 1))) with T the number of observations: the random walk's sqrt(h) plus the
    uncertainty of the slope estimated from T - 1 steps.
    Needs at least 3 observations: two to draw the line and a third so the residuals are not all zero
    by construction (with T = 2 the line passes through both points and σ would be 0).
    """

    alias = "drift"

    def __init__(self, freq: str = "D") -> None:
        self.freq = check_freq(freq)

    def fit(self, y: pd.Series) -> Drift:
        y = check_training_series(y, self.alias)
        _require_length(self.alias, y, 3, "two to draw the line and one more to estimate σ")
        values = y.to_numpy()
        n = len(values)
        slope = (values[-1] - values[0]) / (n - 1)
        self.last_ = float(values[-1])
        self.slope_ = float(slope)
        self.sigma_ = _rms(np.diff(values) - slope)
        self.n_obs_ = n
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "last_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        steps = np.arange(1, h + 1)
        mean = self.last_ + steps * self.slope_
        sigma_h = self.sigma_ * np.sqrt(steps * (1 + steps / (self.n_obs_ - 1)))
        return _normal_forecast(self.last_ds_, self.freq, mean, sigma_h, levels)


class WindowAverage:
    """Forecast = the mean of the last ``window`` values, flat over the horizon.

    Residuals are e_t = y_t - mean(y_{t-window}, ..., y_{t-1}): how well the rolling window mean predicted
    the next value in sample; σ is their root mean square. Intervals are flat, σ_h = σ: every future value is
    forecast by the same window mean, and if the series fluctuates around a stable level its error at any
    step is one new fluctuation (plus the window mean's own error), not a sum of steps as in a random walk.
    That is the model's assumption; where the level drifts, these intervals are too narrow for long
    horizons and Naive or Drift are the honest choice.
    Needs at least ``window + 1`` observations: a full window and one value after it for a residual; with
    ``shortest``, a shorter series uses a window of all but its last value, down to ``shortest``.
    """

    alias = "window_mean"

    def __init__(self, window: int = 4, freq: str = "D", shortest: int | None = None) -> None:
        for name, value in (("window", window), ("shortest", window if shortest is None else shortest)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        self.window = int(window)
        self.shortest = self.window if shortest is None else min(int(shortest), self.window)
        self.freq = check_freq(freq)

    def fit(self, y: pd.Series) -> WindowAverage:
        y = check_training_series(y, self.alias)
        # A series too short for the full window uses all it has, down to ``shortest`` values.
        w = max(min(self.window, len(y) - 1), self.shortest)
        _require_length(self.alias, y, w + 1, f"a full window of {w} and one residual")
        values = y.to_numpy()
        # Mean of each run of w consecutive values; the run ending at t-1 predicts y_t.
        window_means = np.lib.stride_tricks.sliding_window_view(values, w).mean(axis=1)
        self.level_ = float(window_means[-1])
        self.sigma_ = _rms(values[w:] - window_means[:-1])
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "level_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        mean = np.full(h, self.level_)
        return _normal_forecast(self.last_ds_, self.freq, mean, np.full(h, self.sigma_), levels)


class SeasonalWindow:
    """Forecast = the mean of the same stretch one season earlier: step s is the mean of the ``2·half_width + 1``
    values centred on the period one season before it (those observed), so a daily series is forecast by what
    happened around the same days last year, smoothed over ±``half_width`` days.

    It is seasonal naive without its noise: one bursty day a year ago does not come back as a burst. Official counts
    of crossings follow the weather's season, and last year's same weeks are a strong yardstick (the seasonal naive
    baseline); a smoothed version of it, averaged with the recent level (WindowAverage), beat both baselines on the
    daily Channel arrivals (docs/forecasting.md). Residuals are e_t = y_t - (the same mean at t); σ is their root
    mean square and σ_h = σ (each step is one new fluctuation around last year's level, as for WindowAverage).
    Steps further ahead than a season (plus the half width) reuse the season before. Needs at least
    ``season_length + half_width + 1`` observations: a full window a season back and one residual.
    """

    alias = "seasonal_window"

    def __init__(self, season_length: int = 364, half_width: int = 28, freq: str = "D") -> None:
        for name, value, low in (("season_length", season_length, 1), ("half_width", half_width, 0)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        if half_width >= season_length:
            raise ValueError(f"half_width={half_width} must be shorter than season_length={season_length}")
        self.season_length = int(season_length)
        self.half_width = int(half_width)
        self.freq = check_freq(freq)

    def _window_mean(self, centre: np.ndarray) -> np.ndarray:
        """Mean of values[centre - half .. centre + half] clipped to the observed ones, for each centre index."""
        lo = np.clip(centre - self.half_width, 0, self.n_obs_)
        hi = np.clip(centre + self.half_width + 1, 0, self.n_obs_)
        return (self.cumsum_[hi] - self.cumsum_[lo]) / np.maximum(hi - lo, 1)

    def fit(self, y: pd.Series) -> SeasonalWindow:
        y = check_training_series(y, self.alias)
        s, half = self.season_length, self.half_width
        _require_length(self.alias, y, s + half + 1, f"a window of ±{half} one season of {s} back and one residual")
        values = y.to_numpy(dtype="float64")
        self.n_obs_ = len(values)
        self.cumsum_ = np.concatenate([[0.0], np.cumsum(values)])
        # In sample, y_t is predicted by the window centred a season back, which ends before t (half < season).
        t = np.arange(s + half, len(values))
        self.sigma_ = _rms(values[t] - self._window_mean(t - s))
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "sigma_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        centre = self.n_obs_ - 1 + np.arange(1, h + 1) - self.season_length
        while (beyond := centre - self.half_width > self.n_obs_ - 1).any():
            centre = np.where(beyond, centre - self.season_length, centre)
        mean = self._window_mean(centre)
        return _normal_forecast(self.last_ds_, self.freq, mean, np.full(h, self.sigma_), levels)
