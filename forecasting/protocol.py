"""The forecaster protocol every model in routecast follows, and the helpers the models share.

A forecaster is fitted on one series (float values on a regular daily DatetimeIndex) and predicts
``h`` days ahead as a frame with ``ds``, ``mean`` and one ``lo-<level>``/``hi-<level>`` pair per level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

LEVELS: tuple[int, ...] = (80, 95)


class NotFittedError(RuntimeError):
    """predict (or another fitted-state accessor) was called before fit."""


@runtime_checkable
class Forecaster(Protocol):
    """One model for one series. Fitted state lives in attributes ending in ``_``."""

    alias: str

    def fit(self, y: pd.Series) -> Forecaster:
        """Fit on ``y``: float values indexed by a regular daily DatetimeIndex without gaps."""
        ...

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        """``h`` rows starting the day after the last fitted ds.

        Columns: ds (datetime64), mean, then lo-<level>, hi-<level> for each level; all clipped at 0.
        """
        ...


def interval_columns(levels: Sequence[int]) -> list[str]:
    """Column names for the interval bounds, in the order predict returns them."""
    return [f"{side}-{level}" for level in levels for side in ("lo", "hi")]


def check_levels(levels: Sequence[int]) -> list[int]:
    """Validate coverage levels (percent, strictly between 0 and 100); returned sorted ascending."""
    checked = []
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int | np.integer) or not 0 < level < 100:
            raise ValueError(f"interval level {level!r} must be an integer percentage in (0, 100)")
        checked.append(int(level))
    return sorted(set(checked))


def check_horizon(h: int) -> int:
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
        raise ValueError(f"horizon h={h!r} must be a positive integer")
    return int(h)


def check_training_series(y: pd.Series, alias: str) -> pd.Series:
    """Refuse input that breaks the fit contract; returns ``y`` as float64.

    Regularity (daily, no gaps) is the caller's guarantee and is not re-checked here: the selection
    layer validates it once per series.
    """
    if not isinstance(y, pd.Series) or not isinstance(y.index, pd.DatetimeIndex):
        raise TypeError(f"{alias}: fit expects a pandas Series indexed by a daily DatetimeIndex")
    values = y.astype("float64")
    if values.isna().any():
        first = values.index[values.isna()][0]
        raise ValueError(f"{alias}: y has missing values (first at {first.date()}); fill them upstream")
    return values


def future_dates(last_ds: pd.Timestamp, h: int) -> pd.DatetimeIndex:
    """The ``h`` days after ``last_ds``."""
    return pd.date_range(last_ds + pd.Timedelta(days=1), periods=h, freq="D")


def forecast_frame(
    ds: pd.DatetimeIndex, mean: np.ndarray, bounds: dict[int, tuple[np.ndarray, np.ndarray]]
) -> pd.DataFrame:
    """Assemble a predict result from the point forecast and per-level (lo, hi) bounds.

    Everything is clipped at 0 (counts cannot be negative). Bounds are then widened, where needed, to
    contain the mean: a sample-quantile interval can in rare cases miss a point forecast taken from
    elsewhere (Prophet's yhat), and callers rely on lo <= mean <= hi.
    """
    mean = np.clip(np.asarray(mean, dtype="float64"), 0.0, None)
    frame = pd.DataFrame({"ds": ds, "mean": mean})
    for level in sorted(bounds):
        lo, hi = bounds[level]
        frame[f"lo-{level}"] = np.minimum(np.clip(np.asarray(lo, dtype="float64"), 0.0, None), mean)
        frame[f"hi-{level}"] = np.maximum(np.clip(np.asarray(hi, dtype="float64"), 0.0, None), mean)
    return frame
