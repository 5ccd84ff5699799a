"""The frequency grid helpers: the scalar check agrees with the vectorised one; one period step lands on the grid."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from forecasting.protocol import FREQS, PERIOD_OFFSETS, future_dates, is_on_grid, on_grid

dates = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 12, 31))


@given(dates, st.sampled_from(FREQS))
def test_is_on_grid_agrees_with_on_grid(date, freq):
    assert is_on_grid(date, freq) == bool(on_grid(pd.DatetimeIndex([date]), freq)[0])


@given(dates, st.sampled_from(FREQS))
def test_one_period_from_a_grid_date_is_the_next_grid_date(date, freq):
    start = pd.Timestamp(date)
    if freq == "W":
        start -= pd.Timedelta(days=start.dayofweek)
    elif freq == "M":
        start = start.replace(day=1)
    step = start + PERIOD_OFFSETS[freq]
    assert is_on_grid(step.date(), freq)
    assert future_dates(start, 1, freq)[0] == step
