"""Synthetic daily count series for the forecast benchmark: the long (series_id, ds, y, freq) table of gold series.

Each series is drawn from its own generator (``default_rng([seed, i])``), so series ``i`` is the same whatever N
is: the first 200 of a 2,000-series run are the 200-series run. Per series:

- a level between 3 and 400 a day (log-uniform: the small ones hit zero now and then by themselves);
- a trend: the level changes by a factor between 0.6 and 1.6 over the span (linear on the log scale);
- a weekday profile (amplitude 10–50 %) and a yearly wave (0–30 %) with a random phase;
- a few surges: 0–3 episodes of 1–4 weeks at 1.5–4× the level, rising and fading (a route opening for a while);
- over-dispersed noise: Poisson of the expected count times a Gamma(20) factor;
- outage days: about 1 % of days are recorded as 0 (a source that reported nothing).

``y`` is a non-negative whole number stored as float64, as in the gold series.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

START = dt.date(2024, 1, 1)


def synthetic_daily_series(n: int, days: int = 730, start: dt.date = START, seed: int = 11) -> pd.DataFrame:
    """``n`` daily series of ``days`` days from ``start``: columns series_id (``s00000``…), ds (datetime64),
    y (float64 counts >= 0), freq ("D"); sorted by series_id and ds."""
    if n < 1 or days < 1:
        raise ValueError(f"n={n} and days={days} must be positive")
    t = np.arange(days, dtype="float64")
    ds = pd.date_range(start, periods=days, freq="D")
    weekday = ds.dayofweek.to_numpy()
    ys = np.empty((n, days))
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        log_level = rng.uniform(np.log(3), np.log(400)) + rng.uniform(np.log(0.6), np.log(1.6)) * t / days
        profile = 1 + rng.uniform(0.1, 0.5) * _unit_profile(rng)
        wave = 1 + rng.uniform(0, 0.3) * np.sin(2 * np.pi * (t / 365.25 + rng.uniform()))
        surge = np.ones(days)
        for _ in range(rng.integers(0, 4)):
            begin, length = rng.integers(0, days), rng.integers(7, 29)
            shape = np.sin(np.pi * np.arange(length) / length)  # rises and fades
            end = min(begin + length, days)
            surge[begin:end] += (rng.uniform(1.5, 4) - 1) * shape[: end - begin]
        expected = np.exp(log_level) * profile[weekday] * wave * surge
        y = rng.poisson(expected * rng.gamma(20, 1 / 20, days)).astype("float64")
        y[rng.random(days) < 0.01] = 0.0
        ys[i] = y
    return pd.DataFrame(
        {
            "series_id": np.repeat([f"s{i:05d}" for i in range(n)], days),
            "ds": np.tile(ds.to_numpy(), n),
            "y": ys.ravel(),
            "freq": "D",
        }
    )


def _unit_profile(rng: np.random.Generator) -> np.ndarray:
    """Seven weekday factors scaled to [-1, 1], weekends lower more often than not."""
    raw = rng.normal(0, 1, 7) - np.array([0, 0, 0, 0, 0.3, 0.8, 1.0])
    raw -= raw.mean()
    return raw / np.abs(raw).max()
