"""Rolling-origin backtests, their scores, and conformal calibration of intervals from them.

A backtest refits a model at several forecast origins (cutoffs) of one series and forecasts ``horizon``
periods from each, as it would have been run at the time: the model sees only the data before the cutoff.
The result is one long frame, one row per (cutoff, step), that every score and the calibration read.

Conformal calibration (split conformal, conformalised-quantile style): for each interval level, the score of an
actual is how far it falls outside the model's own interval, ``max(lo - y, y - hi)`` (negative inside). The
calibrated interval widens (or narrows) the model's interval by the finite-sample quantile of those scores,
per forecast step where there are enough of them and pooled over steps otherwise. Keeping the model's interval
as the base keeps its shape (asymmetric for counts); the shift fixes its coverage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from forecasting.metrics import coverage, mae, rmse
from forecasting.protocol import (
    LEVELS,
    Forecaster,
    check_horizon,
    check_levels,
    forecast_frame,
    interval_columns,
)

__all__ = [
    "BACKTEST_COLUMNS",
    "ConformalCalibrator",
    "backtest_scores",
    "checked_prediction",
    "interval_width",
    "median_point",
    "pinball_loss",
    "rolling_origin_backtest",
    "rolling_origins",
]

BACKTEST_COLUMNS = ["cutoff", "step", "ds", "y", "mean", "lo-80", "hi-80", "lo-95", "hi-95", "error"]
# Scores of one model on one series' backtest, in this order.
SCORE_NAMES = ("mae", "rmse", "mase", "coverage80", "coverage95", "width80", "width95", "pinball")


def rolling_origins(n: int, horizon: int, origins: int, step: int = 1, min_train: int = 1) -> list[int]:
    """The cutoffs (number of training periods) of ``origins`` rolling origins over a series of ``n`` periods.

    The last origin leaves exactly ``horizon`` periods to forecast; each earlier one is ``step`` periods before
    it. Origins that would train on fewer than ``min_train`` periods are dropped; if none is left, ValueError.
    """
    horizon = check_horizon(horizon)
    if origins < 1 or step < 1:
        raise ValueError(f"origins={origins} and step={step} must be positive")
    cutoffs = [n - horizon - i * step for i in range(origins)]
    kept = sorted(c for c in cutoffs if c >= min_train)
    if not kept:
        raise ValueError(
            f"a series of {n} periods has no origin with {min_train} training periods before a {horizon}-period horizon"
        )
    return kept


def rolling_origin_backtest(
    y: pd.Series,
    make_model: Callable[[], Forecaster],
    cutoffs: Sequence[int],
    horizon: int,
    levels: Sequence[int] = LEVELS,
) -> pd.DataFrame:
    """Fit a fresh ``make_model()`` on ``y[:cutoff]`` for each cutoff and forecast the next periods.

    Returns BACKTEST_COLUMNS: one row per (cutoff, step 1..h), h = ``horizon`` or fewer at the series' end. A fit
    or predict that raises gives rows with NaN forecasts and the error text (never raised): a model that fails
    at some origins is scored on the others and the failure stays visible.
    """
    horizon = check_horizon(horizon)
    levels = check_levels(levels)
    frames = []
    for cutoff in cutoffs:
        if not 1 <= cutoff < len(y):
            raise ValueError(f"cutoff {cutoff} is outside a series of {len(y)} periods")
        actual = y.iloc[cutoff : cutoff + horizon]
        frame = pd.DataFrame(
            {
                "cutoff": y.index[cutoff - 1],
                "step": np.arange(1, len(actual) + 1),
                "ds": actual.index,
                "y": actual.to_numpy(dtype="float64"),
            }
        )
        try:
            prediction = checked_prediction(make_model().fit(y.iloc[:cutoff]), len(actual), actual.index, levels)
            for column in ("mean", *interval_columns(levels)):
                frame[column] = prediction[column].to_numpy(dtype="float64")
            frame["error"] = None
        except Exception as exc:  # recorded per origin; the caller decides what a failing model means
            for column in ("mean", *interval_columns(levels)):
                frame[column] = np.nan
            frame["error"] = f"{type(exc).__name__}: {exc}".strip()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True).reindex(columns=_columns(levels))


def checked_prediction(
    model: Forecaster, h: int, expected_ds: pd.DatetimeIndex, levels: Sequence[int] = LEVELS
) -> pd.DataFrame:
    """predict(h) with the columns callers rely on, refusing wrong lengths, dates off the series' grid
    (``expected_ds``: the next h periods) and NaN."""
    prediction = model.predict(h, levels)
    needed = ["mean", *interval_columns(levels)]
    missing = [name for name in ["ds", *needed] if name not in prediction.columns]
    if missing:
        raise ValueError(f"predict returned no {missing} columns")
    if len(prediction) != h:
        raise ValueError(f"predict({h}) returned {len(prediction)} rows")
    ds = pd.DatetimeIndex(pd.to_datetime(prediction["ds"].to_numpy()))
    off = np.flatnonzero(ds != pd.DatetimeIndex(expected_ds))
    if len(off):
        wrong = int(off[0])
        raise ValueError(
            f"predict dated step {wrong + 1} {ds[wrong].date()}; the series' next period is {expected_ds[wrong].date()}"
        )
    if not np.isfinite(prediction[needed].to_numpy(dtype="float64")).all():
        raise ValueError("predict returned NaN or infinite values")
    return prediction


def _columns(levels: Sequence[int]) -> list[str]:
    return ["cutoff", "step", "ds", "y", "mean", *interval_columns(levels), "error"]


def pinball_loss(y: np.ndarray, quantiles: dict[float, np.ndarray]) -> float:
    """Mean pinball (quantile) loss over the given quantile forecasts {q: values} and all rows."""
    losses = []
    for q, pred in quantiles.items():
        diff = np.asarray(y, dtype="float64") - np.asarray(pred, dtype="float64")
        losses.append(np.maximum(q * diff, (q - 1) * diff))
    return float(np.mean(losses))


def interval_width(lo: np.ndarray, hi: np.ndarray) -> float:
    """Mean width of the intervals."""
    return float(np.mean(np.asarray(hi, dtype="float64") - np.asarray(lo, dtype="float64")))


def backtest_scores(backtest: pd.DataFrame, scale: float) -> dict[str, float]:
    """SCORE_NAMES of one model's backtest over its successful rows.

    ``scale`` is the MASE denominator (the in-sample seasonal-naive MAE of the training data before the first
    origin, the same for every model of a series so that they rank alike on MAE and MASE). Pinball averages the
    quantiles the intervals and the mean stand for: 2.5, 10, 50, 90 and 97.5 %. No successful row: all NaN.
    """
    ok = backtest[backtest["error"].isna()]
    if ok.empty:
        return dict.fromkeys(SCORE_NAMES, math.nan)
    y = ok["y"].to_numpy()
    err = mae(y, ok["mean"])
    quantiles = {0.025: ok["lo-95"], 0.1: ok["lo-80"], 0.5: ok["mean"], 0.9: ok["hi-80"], 0.975: ok["hi-95"]}
    return {
        "mae": err,
        "rmse": rmse(y, ok["mean"]),
        "mase": err / scale if scale > 0 else (0.0 if err == 0 else math.inf),
        "coverage80": coverage(y, ok["lo-80"], ok["hi-80"]),
        "coverage95": coverage(y, ok["lo-95"], ok["hi-95"]),
        "width80": interval_width(ok["lo-80"], ok["hi-80"]),
        "width95": interval_width(ok["lo-95"], ok["hi-95"]),
        "pinball": pinball_loss(y, {q: v.to_numpy() for q, v in quantiles.items()}),
    }


@dataclass(frozen=True)
class ConformalCalibrator:
    """Per level and forecast step, the amount to widen a model's interval by (negative: narrow).

    Built from a backtest with ``from_backtest``; ``apply`` calibrates a ``predict`` frame. Steps with fewer than
    ``min_scores`` backtest scores use the pooled shift over all steps; a level with fewer scores than it needs
    (``enough_scores``: 19 for 95 %) is left as the model gave it. Steps beyond the backtest's horizon take the
    pooled shift, which may be too small for them.
    """

    shifts: dict[int, dict[int, float]]  # level -> step -> shift
    pooled: dict[int, float]  # level -> shift over all steps (absent: too few scores for that level)
    n_scores: int
    levels: tuple[int, ...]  # every level ``apply`` returns
    # "absolute": scores and shifts in counts. "log1p": on log1p(counts), so a shift is a factor on (1 + bound) and
    # the widening follows the level of the series (errors measured when the level was high do not blow up the
    # interval once it is low, and the reverse).
    space: str = "absolute"

    @classmethod
    def from_backtest(
        cls, backtest: pd.DataFrame, levels: Sequence[int] = LEVELS, min_scores: int = 8, space: str = "absolute"
    ) -> ConformalCalibrator:
        if space not in _SPACES:
            raise ValueError(f"space={space!r} must be 'absolute' or 'log1p'")
        ok = backtest[backtest["error"].isna()]
        if ok.empty:
            raise ValueError("no successful backtest rows to calibrate from")
        levels = check_levels(levels)
        forward = _SPACES[space][0]
        shifts: dict[int, dict[int, float]] = {}
        pooled: dict[int, float] = {}
        for level in levels:

            def scores_of(rows: pd.DataFrame, level: int = level) -> np.ndarray:
                y, lo, hi = (forward(rows[c].to_numpy(dtype="float64")) for c in ("y", f"lo-{level}", f"hi-{level}"))
                return np.maximum(lo - y, y - hi)

            scores = scores_of(ok)
            if not enough_scores(len(scores), level):
                continue  # too few to say anything at this level: the model's own interval stands
            pooled[level] = conformal_quantile(scores, level)
            per_step = {}
            for step, group in ok.groupby("step"):
                if len(group) >= min_scores and enough_scores(len(group), level):
                    per_step[int(step)] = conformal_quantile(scores_of(group), level)
            shifts[level] = per_step
        return cls(shifts=shifts, pooled=pooled, n_scores=len(ok), levels=tuple(levels), space=space)

    def shift(self, level: int, step: int) -> float:
        """The shift for ``level`` at ``step``; 0 for a level there were too few scores to calibrate."""
        return self.shifts.get(level, {}).get(step, self.pooled.get(level, 0.0))

    def apply(self, prediction: pd.DataFrame, steps: Sequence[int] | None = None) -> pd.DataFrame:
        """The prediction with each level's bounds moved by its shift for that step (clipped at 0, around mean).

        ``steps``: the forecast step of each row; default 1..len (a ``predict`` frame).
        """
        steps = np.arange(1, len(prediction) + 1) if steps is None else np.asarray(steps)
        forward, back = _SPACES[self.space]
        bounds = {}
        for level in self.levels:
            shift = np.array([self.shift(level, int(s)) for s in steps])
            lo = forward(prediction[f"lo-{level}"].to_numpy(dtype="float64"))
            hi = forward(prediction[f"hi-{level}"].to_numpy(dtype="float64"))
            bounds[level] = (back(lo - shift), back(hi + shift))
        # A level too few scores could calibrate, wider than one that was calibrated, is the calibrated interval
        # widened as a normal interval would be (z of the wide level / z of the narrow), not the model's own interval
        # clipped to the narrow one's bounds: otherwise lo95 == lo80 wherever the calibration widened 80 % past the
        # model's 95 %.
        mean = forward(np.clip(prediction["mean"].to_numpy(dtype="float64"), 0.0, None))
        calibrated = [lvl for lvl in sorted(bounds) if lvl in self.pooled]
        for level in sorted(bounds):
            narrower = [c for c in calibrated if c < level]
            if level in self.pooled or not narrower:
                continue
            base = narrower[-1]
            ratio = _z(level) / _z(base)
            lo, hi = (forward(np.asarray(b, dtype="float64")) for b in bounds[base])
            widened = (back(mean - (mean - lo) * ratio), back(mean + (hi - mean) * ratio))
            bounds[level] = (np.minimum(bounds[level][0], widened[0]), np.maximum(bounds[level][1], widened[1]))
        # Nested levels stay nested: a wider level's bounds never fall inside a narrower one's.
        ordered = sorted(bounds)
        for narrow, wide in zip(ordered, ordered[1:], strict=False):
            bounds[wide] = (
                np.minimum(bounds[wide][0], bounds[narrow][0]),
                np.maximum(bounds[wide][1], bounds[narrow][1]),
            )
        return forecast_frame(pd.DatetimeIndex(prediction["ds"]), prediction["mean"].to_numpy(), bounds)


def median_point(backtest: pd.DataFrame, prediction: pd.DataFrame, space: str = "absolute") -> pd.DataFrame:
    """``prediction`` with its mean moved to the median of the outcomes the backtest saw around such means.

    The shift is the median of ``y - mean`` over the backtest's successful rows, measured in ``space`` (log1p: a
    factor on 1 + mean), pooled over steps. For bursty counts most periods fall below the mean, so the median is
    lower: the better point forecast of a single period under absolute error, while the mean is what adds up
    over several (forecasting.totals uses the mean). The point is kept inside the 80 % interval.
    """
    if space not in _SPACES:
        raise ValueError(f"space={space!r} must be 'absolute' or 'log1p'")
    ok = backtest[backtest["error"].isna()]
    if ok.empty:
        raise ValueError("no successful backtest rows to take a median from")
    forward, back = _SPACES[space]
    shift = float(np.median(forward(ok["y"].to_numpy(dtype="float64")) - forward(ok["mean"].to_numpy(dtype="float64"))))
    out = prediction.copy()
    point = back(forward(prediction["mean"].to_numpy(dtype="float64")) + shift)
    out["mean"] = np.clip(point, prediction["lo-80"].to_numpy(dtype="float64"), prediction["hi-80"].to_numpy("float64"))
    return out


def _z(level: int) -> float:
    """The standard normal quantile of a central ``level`` % interval (1.28 for 80, 1.96 for 95)."""
    return NormalDist().inv_cdf(0.5 + level / 200.0)


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _log1p(values: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(values, 0.0, None))


# space -> (into the space, back to counts); bounds are clipped at 0 before log1p (counts cannot be negative).
_SPACES = {"absolute": (_identity, _identity), "log1p": (_log1p, np.expm1)}


def enough_scores(n: int, level: int) -> bool:
    """Whether ``n`` scores can bound ``level`` % coverage: ceil((n + 1) * level/100) <= n (19 for 95 %, 4 for 80 %)."""
    return math.ceil((n + 1) * level / 100) <= n


def conformal_quantile(scores: np.ndarray, level: int) -> float:
    """The split-conformal quantile: the ceil((n + 1) * level/100)-th smallest score (the largest if beyond n)."""
    scores = np.sort(np.asarray(scores, dtype="float64"))
    n = len(scores)
    if n == 0:
        raise ValueError("no scores to take a conformal quantile of")
    rank = min(math.ceil((n + 1) * level / 100), n)
    return float(scores[rank - 1])
