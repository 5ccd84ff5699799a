"""Daily forecast intervals of an estimated series: the estimate's own level error added, and taken out again.

A forecast's backtest scores how well it followed its series. When the series is itself an estimate (the people a
measurement model infers from phones and official shares), the estimate may be off by a factor the backtest cannot
see: a crossing point's share of its route is a guess, a route's scale is fitted on a few months. That error is a
*level* error: it does not change from one day to the next. The people stage states it per series (its own 80 %
interval); ``widen_forecasts`` adds it to the published daily intervals, so that "80 %" means 80 % of the people,
not of the estimate. The rule is the one totals use (``forecasting.totals.widen_totals``): in log1p space each
bound's distance from ``yhat`` is read as z times a spread, and the spread is combined with the level error as
independent errors are, sqrt(spread² + sigma²).

A model that draws paths needs the two apart, since a level error is the same on every day of a path and the
forecast's own misses are not: the scenario engine takes it back out (``forecasting.scenario.engine.without_level``,
which imports nothing of the rest of forecasting; a test keeps the two rules each other's inverse).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["KNOT_COLUMNS", "KNOT_Z", "widen_forecasts"]

_Z80 = 1.2815515655446004
_Z95 = 1.959963984540054
# The published bounds of a daily forecast and their normal scores (yhat is the median, z = 0).
KNOT_COLUMNS = ("lo95", "lo80", "hi80", "hi95")
KNOT_Z = np.array([-_Z95, -_Z80, _Z80, _Z95])


def _spread(logs: np.ndarray, median: np.ndarray) -> np.ndarray:
    return np.abs(logs - median[..., None]) / np.abs(KNOT_Z)


def widen_forecasts(forecasts: pd.DataFrame, sigma: pd.Series) -> pd.DataFrame:
    """``forecasts`` (``series_id, yhat, lo80, hi80, lo95, hi95``, other columns kept) with each series' bounds
    widened by its level error ``sigma`` (per series_id, log scale; series not in it, or with sigma <= 0 or NaN,
    unchanged). ``yhat`` stays; bounds stay ordered."""
    out = forecasts.copy()
    extra = out["series_id"].map(sigma).astype("float64").to_numpy()
    rows = np.isfinite(extra) & (extra > 0)
    if not rows.any():
        return out
    cols = list(KNOT_COLUMNS)
    median = np.log1p(np.clip(out.loc[rows, "yhat"].to_numpy("float64"), 0.0, None))
    logs = np.log1p(np.clip(out.loc[rows, cols].to_numpy("float64"), 0.0, None))
    spread = np.sqrt(_spread(logs, median) ** 2 + extra[rows, None] ** 2)
    widened = median[:, None] + KNOT_Z * spread
    out.loc[rows, cols] = np.clip(np.expm1(widened), 0.0, None)
    return out
