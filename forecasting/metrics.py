"""Point and interval accuracy metrics on plain arrays (anything numpy can turn into 1-d floats)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["coverage", "mae", "mase", "rmse", "seasonal_scale"]


def _as_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype="float64").ravel()
    pred = np.asarray(y_pred, dtype="float64").ravel()
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} values but the prediction has {pred.size}")
    if true.size == 0:
        raise ValueError("cannot score an empty forecast")
    return true, pred


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error."""
    true, pred = _as_pair(y_true, y_pred)
    return float(np.mean(np.abs(true - pred)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error."""
    true, pred = _as_pair(y_true, y_pred)
    return float(np.sqrt(np.mean((true - pred) ** 2)))


def seasonal_scale(y_train: ArrayLike, season_length: int) -> float:
    """MASE's denominator: the in-sample MAE of the seasonal naive forecast, mean |y_t - y_{t-s}|."""
    train = np.asarray(y_train, dtype="float64").ravel()
    if season_length < 1:
        raise ValueError(f"season_length={season_length} must be >= 1")
    if train.size <= season_length:
        raise ValueError(f"MASE needs more than season_length={season_length} training values, got {train.size}")
    return float(np.mean(np.abs(train[season_length:] - train[:-season_length])))


def mase(y_true: ArrayLike, y_pred: ArrayLike, y_train: ArrayLike, season_length: int = 7) -> float:
    """Mean absolute scaled error: MAE divided by the in-sample MAE of the seasonal naive forecast.

    scale = mean |y_t - y_{t-s}| over ``y_train``; needs more than ``season_length`` training values.
    When the scale is 0 (a training series that repeats exactly every season) the ratio is undefined;
    we return 0.0 if the forecast errors are all zero too (the forecast is perfect) and ``inf``
    otherwise (any error is infinitely worse than the perfect in-sample benchmark). Both keep the
    ranking of candidates sensible: perfect beats imperfect.
    """
    true, pred = _as_pair(y_true, y_pred)
    scale = seasonal_scale(y_train, season_length)
    error = float(np.mean(np.abs(true - pred)))
    if scale == 0.0 and not np.isnan(error):
        return 0.0 if error == 0.0 else float("inf")
    return error / scale


def coverage(y_true: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Share of ``y_true`` inside the closed interval [lo, hi]."""
    true, low = _as_pair(y_true, lo)
    _, high = _as_pair(y_true, hi)
    return float(np.mean((low <= true) & (true <= high)))
