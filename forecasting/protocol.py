"""The forecaster protocol every model in routecast follows, and the helpers the models share.

A forecaster is fitted on one series (float values on a regular DatetimeIndex of one frequency) and
predicts ``h`` periods ahead as a frame with ``ds``, ``mean`` and one ``lo-<level>``/``hi-<level>`` pair
per level (published as ``yhat``, ``lo80``, ...: :mod:`forecasting.vocabulary`).

Frequencies (the ``freq`` column of the gold series): ``D`` daily, ``W`` weekly dated on Mondays,
``M`` monthly dated on the 1st. A series lives on that grid, one value per period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from statistics import NormalDist
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

LEVELS: tuple[int, ...] = (80, 95)

FREQS: tuple[str, ...] = ("D", "W", "M")
PERIOD_NAMES: dict[str, str] = {"D": "day", "W": "week", "M": "month"}
# The pandas spelling of each grid: days, weeks anchored on Monday, month starts.
_PANDAS_FREQ = {"D": "D", "W": "W-MON", "M": "MS"}
_GRID_RULE = {"D": "a calendar day", "W": "a Monday", "M": "the 1st of a month"}
# One period of each frequency, as a step from a date on its grid to the next one.
PERIOD_OFFSETS: dict[str, pd.DateOffset] = {
    "D": pd.DateOffset(days=1),
    "W": pd.DateOffset(weeks=1),
    "M": pd.DateOffset(months=1),
}


class NotFittedError(RuntimeError):
    """predict (or another fitted-state accessor) was called before fit."""


@runtime_checkable
class Forecaster(Protocol):
    """One model for one series. Fitted state lives in attributes ending in ``_``."""

    alias: str

    def fit(self, y: pd.Series) -> Forecaster:
        """Fit on ``y``: float values indexed by a regular DatetimeIndex of the model's freq, without gaps."""
        ...

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        """``h`` rows, one per period, starting the period after the last fitted ds.

        Columns: ds (datetime64), mean, then lo-<level>, hi-<level> for each level; all clipped at 0.
        """
        ...


def normal_quantile(level: int) -> float:
    """z such that a central ``level``% normal interval is mean ± z·σ."""
    return NormalDist().inv_cdf(0.5 + level / 200.0)


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


def check_freq(freq: str) -> str:
    """``freq`` if it is one of FREQS, else a ValueError listing them."""
    if freq not in FREQS:
        raise ValueError(f"freq={freq!r} must be one of D (daily), W (weekly, Mondays), M (monthly, 1st)")
    return freq


def grid_rule(freq: str) -> str:
    """What a date on the grid of ``freq`` is, for error messages: 'a Monday', 'the 1st of a month'."""
    return _GRID_RULE[check_freq(freq)]


def on_grid(ds: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """Per date: is it on the grid of ``freq`` (midnight, and a Monday for W, the 1st for M)?"""
    ds = pd.DatetimeIndex(ds)
    ok = np.asarray(ds == ds.normalize())
    if check_freq(freq) == "W":
        ok &= np.asarray(ds.dayofweek == 0)
    elif freq == "M":
        ok &= np.asarray(ds.day == 1)
    return ok


def is_on_grid(date: dt.date, freq: str) -> bool:
    """One calendar date: is it a period of ``freq`` (any day; a Monday; the 1st)? The scalar ``on_grid``."""
    freq = check_freq(freq)
    return freq == "D" or (freq == "W" and date.weekday() == 0) or (freq == "M" and date.day == 1)


def period_grid(first: pd.Timestamp, last: pd.Timestamp, freq: str) -> pd.DatetimeIndex:
    """Every period of ``freq`` from ``first`` to ``last`` inclusive (both on the grid)."""
    return pd.date_range(first, last, freq=_PANDAS_FREQ[check_freq(freq)])


def check_horizon(h: int) -> int:
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
        raise ValueError(f"horizon h={h!r} must be a positive integer")
    return int(h)


def check_training_series(y: pd.Series, alias: str) -> pd.Series:
    """Refuse input that breaks the fit contract; returns ``y`` as float64.

    Regularity (on the freq's grid, no gaps) is the caller's guarantee and is not re-checked here: the selection
    layer validates it once per series.
    """
    if not isinstance(y, pd.Series) or not isinstance(y.index, pd.DatetimeIndex):
        raise TypeError(f"{alias}: fit expects a pandas Series indexed by a DatetimeIndex")
    values = y.astype("float64")
    if values.isna().any():
        first = values.index[values.isna()][0]
        raise ValueError(f"{alias}: y has missing values (first at {first.date()}); fill them upstream")
    return values


def future_dates(last_ds: pd.Timestamp, h: int, freq: str = "D") -> pd.DatetimeIndex:
    """The ``h`` periods of ``freq`` after ``last_ds`` (a date on that grid): days, Mondays or month starts."""
    return pd.date_range(pd.Timestamp(last_ds) + PERIOD_OFFSETS[check_freq(freq)], periods=h, freq=_PANDAS_FREQ[freq])


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
