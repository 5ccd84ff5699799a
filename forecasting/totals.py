"""Forecast totals: the sum of a series' next k periods, with intervals of the total itself.

A planner asks "how many people in the next 7 days, and how likely more than 1,000?". The sum of daily 80 % bounds
is not an 80 % interval of the sum (daily misses partly cancel, and partly do not), so a total gets its own
interval from how wrong the same procedure's totals were at past origins: at each backtest cutoff the champion
forecast k periods; the score of that total is ``log1p(actual total) - log1p(forecast total)`` (a relative miss, so
the interval follows the level of the series). The forecast total's quantile p is
``expm1(log1p(total) + the p-quantile of the scores)`` with the finite-sample ranks of split conformal prediction.

Quantiles too far out for the number of scores (the 97.5 % one needs 39 past totals) are not read off the extreme
score, which would be too narrow. They come from the central interval around the median miss, ranked on the
absolute deviations from it (a 95 % one needs 19 scores); with fewer still, from the 80 % interval's bound on the
same side, widened as a normal interval would be (z of p / z of 90 %), in log1p space. With fewer than
``MIN_TOTAL_SCORES`` past totals no total is given at all: there is nothing to calibrate it on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from forecasting.protocol import PERIOD_OFFSETS, check_freq

__all__ = [
    "MIN_TOTAL_SCORES",
    "TOTAL_PROBS",
    "TOTALS_COLUMNS",
    "forecast_totals",
    "total_scores",
    "total_quantiles",
    "widen_totals",
]

# The quantiles of a total that are published (contracts.published.TOTAL_QUANTILES says the same; forecasting
# imports nothing of routecast's, a test keeps the two equal).
TOTAL_PROBS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975)
_INTERVALS = {"lo80": 0.1, "hi80": 0.9, "lo95": 0.025, "hi95": 0.975}
# The 10 % and 90 % quantiles need ceil(0.9 (n + 1)) <= n: 9 scores.
MIN_TOTAL_SCORES = 9
TOTALS_COLUMNS = [
    "series_id",
    "window",
    "start",
    "end",
    "yhat",
    "lo80",
    "hi80",
    "lo95",
    "hi95",
    "quantiles",
    "n_scores",
    "model",
]


def total_scores(backtest: pd.DataFrame, window: int) -> np.ndarray:
    """log1p(actual) - log1p(forecast) of the ``window``-period totals at every backtest cutoff that has them all.

    ``backtest``: forecasting.backtest.BACKTEST_COLUMNS (cutoff, step, y, mean, error); failed rows are ignored, and
    a cutoff missing any of steps 1..window gives no score.
    """
    ok = backtest[backtest["error"].isna() & (backtest["step"] <= window)]
    grouped = ok.groupby("cutoff").agg(n=("step", "size"), y=("y", "sum"), mean=("mean", "sum"))
    complete = grouped[grouped["n"] == window]
    return (np.log1p(complete["y"].clip(lower=0)) - np.log1p(complete["mean"].clip(lower=0))).to_numpy("float64")


def total_quantiles(total: float, scores: np.ndarray, probs: Sequence[float] = TOTAL_PROBS) -> np.ndarray | None:
    """The quantiles ``probs`` of a forecast ``total`` from past relative misses ``scores`` (None: too few scores).

    Quantile p takes the floor((n + 1) p)-th smallest score below the median and the ceil((n + 1) p)-th at or above
    it (split conformal ranks); beyond those ranks, the median score ± the conformal quantile of the absolute
    deviations from it, and beyond those the 10 % / 90 % quantile moved away from the median score by z(p) / z(0.9).
    Non-decreasing in p and never negative.
    """
    scores = np.sort(np.asarray(scores, dtype="float64"))
    n = len(scores)
    if n < MIN_TOTAL_SCORES:
        return None
    base = math.log1p(max(total, 0.0))

    def ranked(p: float) -> float | None:
        rank = math.floor((n + 1) * p) if p < 0.5 else math.ceil((n + 1) * p)
        return float(scores[rank - 1]) if 1 <= rank <= n else None

    logs = []
    z90 = NormalDist().inv_cdf(0.9)
    median = float(np.median(scores))
    deviations = np.sort(np.abs(scores - median))
    for p in probs:
        value = ranked(p)
        if value is None:
            # Too far out for a one-sided rank: the central interval of level 1 - 2·tail around the median miss,
            # from the ranks of |score - median| (19 scores give a 95 % one, where each side alone needs 39).
            central = 1 - 2 * min(p, 1 - p)
            rank = math.ceil((n + 1) * central)
            if rank <= n:
                value = median + math.copysign(float(deviations[rank - 1]), p - 0.5)
        if value is None:  # still too few: widen the 80 % bound on this side away from the median miss
            anchor = float(ranked(0.1 if p < 0.5 else 0.9))  # defined: n >= MIN_TOTAL_SCORES
            value = median + (anchor - median) * abs(NormalDist().inv_cdf(p)) / z90
        logs.append(value)
    quantiles = np.expm1(base + np.maximum.accumulate(np.asarray(logs)))
    return np.clip(quantiles, 0.0, None)


def _bounds(quantiles: np.ndarray, total: float) -> dict[str, float]:
    """lo80, hi80, lo95, hi95 of a total read off its quantiles (at TOTAL_PROBS); the point total is inside its 80 %
    interval (widened to it when past misses all lean one way), and the 95 % interval holds the 80 % one."""
    bounds = {name: float(quantiles[TOTAL_PROBS.index(p)]) for name, p in _INTERVALS.items()}
    bounds["lo80"], bounds["hi80"] = min(bounds["lo80"], total), max(bounds["hi80"], total)
    bounds["lo95"], bounds["hi95"] = min(bounds["lo95"], bounds["lo80"]), max(bounds["hi95"], bounds["hi80"])
    return bounds


def forecast_totals(
    series_id: str,
    model: str,
    backtest: pd.DataFrame,
    prediction: pd.DataFrame,
    windows: Sequence[int],
    freq: str,
) -> pd.DataFrame:
    """TOTALS_COLUMNS for each window of ``windows`` that the backtest can calibrate: the sum of ``prediction``'s
    first ``window`` means (``prediction``: a predict frame with ds and mean), its 80/95 % intervals and quantiles.
    ``start`` is the first period's date and ``end`` the last day of the window's last period (of ``freq``).

    Windows longer than the prediction, or with fewer than MIN_TOTAL_SCORES complete past totals, are left out.
    The point total is inside its 80 % interval (the interval is widened to it when the past misses all lean one
    way).
    """
    rows = []
    means = prediction["mean"].to_numpy(dtype="float64").clip(0, None)
    ds = pd.to_datetime(prediction["ds"].to_numpy())
    period = PERIOD_OFFSETS[check_freq(freq)]
    for window in sorted(set(int(w) for w in windows)):
        if not 1 <= window <= len(means):
            continue
        scores = total_scores(backtest, window)
        total = float(means[:window].sum())
        quantiles = total_quantiles(total, scores)
        if quantiles is None:
            continue
        bounds = _bounds(quantiles, total)
        rows.append(
            {
                "series_id": series_id,
                "window": window,
                "start": ds[0],
                "end": ds[window - 1] + period - pd.Timedelta(days=1),
                "yhat": total,
                **bounds,
                "quantiles": [float(q) for q in quantiles],
                "n_scores": len(scores),
                "model": model,
            }
        )
    return pd.DataFrame(rows, columns=TOTALS_COLUMNS)


def widen_totals(totals: pd.DataFrame, sigma: pd.Series) -> pd.DataFrame:
    """``totals`` (TOTALS_COLUMNS) with each series' intervals widened by an error the backtest cannot see.

    A total's backtest scores how well the forecast followed its series; when the series is itself an estimate (the
    people a measurement model infers from phones), the estimate's own error adds to that. ``sigma``: per series_id,
    the log-scale standard deviation of that error (a level error, which does not cancel over the days of a total);
    series not in it are returned unchanged. Each quantile p's distance from the median miss, in log1p space, is read
    as z(p) times a spread, and the spread is combined with sigma as independent errors are: sqrt(spread² + sigma²).
    The median stays; the bounds are read off the widened quantiles as :func:`forecast_totals` reads them.
    """
    out = totals.copy()
    z = np.array([NormalDist().inv_cdf(p) if p != 0.5 else 0.0 for p in TOTAL_PROBS])
    middle = TOTAL_PROBS.index(0.5)
    for i, row in enumerate(out.itertuples(index=False)):
        extra = sigma.get(row.series_id)
        if extra is None or not np.isfinite(extra) or extra <= 0:
            continue
        logs = np.log1p(np.asarray(row.quantiles, dtype="float64"))
        median = logs[middle]
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.where(z != 0, np.abs((logs - median) / np.where(z != 0, z, 1.0)), 0.0)
        widened = median + z * np.sqrt(spread**2 + float(extra) ** 2)
        quantiles = np.clip(np.expm1(np.maximum.accumulate(widened)), 0.0, None)
        for name, value in _bounds(quantiles, row.yhat).items():
            out.iat[i, out.columns.get_loc(name)] = value
        out.iat[i, out.columns.get_loc("quantiles")] = [float(q) for q in quantiles]
    return out
