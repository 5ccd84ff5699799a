"""Test data a reader can check by hand, and fake models whose behaviour is known by construction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecasting.protocol import LEVELS, NotFittedError, forecast_frame, future_dates

START = pd.Timestamp("2025-01-06")  # a Monday
# The grids of D, W and M in pandas' spelling: days, Mondays, month starts.
PANDAS_FREQ = {"D": "D", "W": "W-MON", "M": "MS"}


def daily(values: Sequence[float], start: pd.Timestamp = START) -> pd.Series:
    """``values`` on consecutive days from ``start``."""
    return pd.Series(np.asarray(values, dtype="float64"), index=pd.date_range(start, periods=len(values)))


def periodic(values: Sequence[float], start: str | pd.Timestamp, freq: str) -> pd.Series:
    """``values`` on consecutive periods of ``freq`` (D, W or M) from ``start`` (a date on that grid)."""
    index = pd.date_range(start, periods=len(values), freq=PANDAS_FREQ[freq])
    assert index[0] == pd.Timestamp(start), f"{start} is not on the {freq} grid"
    return pd.Series(np.asarray(values, dtype="float64"), index=index)


def series_frame(
    series_id: str, values: Sequence[float], start: str | pd.Timestamp = START, freq: str = "D"
) -> pd.DataFrame:
    """The long-table rows (series_id, ds, y) of one series on the grid of ``freq``."""
    y = periodic(values, start, freq)
    return pd.DataFrame({"series_id": series_id, "ds": y.index, "y": y.to_numpy()})


class AlwaysFails:
    """A candidate whose fit always raises, as a diverging solver would."""

    alias = "always_fails"

    def fit(self, y: pd.Series) -> AlwaysFails:
        raise RuntimeError("solver diverged")

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        raise NotFittedError("never fitted")


class Flat:
    """Forecasts the last value, ±1 for every level; refuses series longer than ``max_length`` days."""

    alias = "flat"

    def __init__(self, max_length: int | None = None) -> None:
        self.max_length = max_length

    def fit(self, y: pd.Series) -> Flat:
        if self.max_length is not None and len(y) > self.max_length:
            raise MemoryError(f"{len(y)} days is more than this model can hold")
        self.last_ = float(y.iloc[-1])
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        mean = np.full(h, self.last_)
        return forecast_frame(future_dates(self.last_ds_, h), mean, {lv: (mean - 1, mean + 1) for lv in levels})
