"""Out-of-sample evaluation of the whole forecasting procedure, as experiments run it.

The pipeline's forecast for a series is not one model but a procedure: backtest the candidates, pick a champion,
calibrate its intervals (``forecasting.selection``). To know how good the published numbers are, that procedure
itself is rolled over past origins: at each cutoff it sees only the data before it, selects and forecasts, and the
forecast is scored on what came next, beside the baselines an analyst would use instead (naive, seasonal naive).

- :class:`SelectionForecaster` wraps the procedure in the Forecaster protocol, so ``rolling_origin_backtest``
  evaluates it like any model.
- :class:`MemoFactories` remembers every candidate's prediction by (model, training data, horizon): the
  procedure at cutoff t refits its candidates at the inner origins t-h, t-h-1, ..., which the procedure at t+1
  refits again. With the memo each (model, training window) is fitted once; results are identical.
- :func:`window_totals` and :func:`conformal_totals` turn daily forecasts into next-k-day totals with intervals
  calibrated on the totals of earlier origins (split conformal on the log scale), for questions like "how many
  people in the next 7 days".
- :func:`skill` reports MAE per method and relative to the baselines, and interval coverage.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd

from forecasting.backtest import rolling_origin_backtest
from forecasting.metrics import coverage
from forecasting.protocol import LEVELS, PERIOD_OFFSETS, NotFittedError, check_horizon, check_levels
from forecasting.selection import (
    MODEL_FACTORIES,
    ModelFactory,
    SelectionConfig,
    UnknownModelError,
    make_model,
    select,
)
from forecasting.totals import TOTALS_COLUMNS
from forecasting.vocabulary import from_published

__all__ = [
    "CHAMPION",
    "EVALUATION_COLUMNS",
    "MemoFactories",
    "RolledProcedure",
    "SelectionForecaster",
    "conformal_totals",
    "evaluate_procedure",
    "roll_procedure",
    "skill",
    "two_sided_conformal",
    "window_totals",
]

CHAMPION = "champion"
EVALUATION_COLUMNS = [
    "cutoff",
    "step",
    "ds",
    "y",
    "method",
    "model",
    "mean",
    "lo-80",
    "hi-80",
    "lo-95",
    "hi-95",
    "error",
]


class _MemoModel:
    """A candidate whose predictions are looked up by (alias, training data, h, levels) before fitting."""

    def __init__(self, alias: str, make: ModelFactory, cfg: SelectionConfig, store: dict) -> None:
        self.alias = alias
        self._make = make
        self._cfg = cfg
        self._store = store

    def fit(self, y: pd.Series) -> _MemoModel:
        self.y_ = y
        digest = hashlib.blake2b(y.to_numpy(dtype="float64").tobytes(), digest_size=16)
        digest.update(y.index.asi8.tobytes())
        digest.update(str(y.name).encode())  # the series: a pooled model's forecast depends on which one it is
        self.key_ = (self.alias, digest.hexdigest())
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "key_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        key = (*self.key_, check_horizon(h), tuple(check_levels(levels)))
        if key not in self._store:
            try:
                self._store[key] = self._make(self._cfg).fit(self.y_).predict(h, levels)
            except Exception as exc:  # remembered too: a model that fails on this window fails every time
                self._store[key] = exc
        found = self._store[key]
        if isinstance(found, Exception):
            raise found
        return found.copy()


class MemoFactories(Mapping[str, ModelFactory]):
    """``factories`` whose models remember their predictions across calls (for repeated rolling evaluations).

    Models must be deterministic (all of routecast's are: seeded or closed-form). The memo key does not include
    the config a model is built from, so one MemoFactories serves configs that build the same models: for
    routecast's factories, the same freq and season length (they read nothing else).
    """

    def __init__(self, factories: Mapping[str, ModelFactory] = MODEL_FACTORIES) -> None:
        self._factories = dict(factories)
        self._store: dict = {}

    def __getitem__(self, alias: str) -> ModelFactory:
        make = self._factories[alias]
        return partial(_MemoModel, alias, make, store=self._store)

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    @property
    def fits(self) -> int:
        """How many (model, window, horizon) predictions were actually computed."""
        return len(self._store)


class SelectionForecaster:
    """The pipeline's selection (``select`` with ``cfg``) as one Forecaster.

    ``predict(h)`` runs the selection for horizon ``h`` on the fitted series; ``chosen_`` is then the champion's
    alias, ``metrics_`` the candidates' backtest scores and ``totals_`` its totals (``cfg.totals``). Levels other
    than the pipeline's (80, 95) are refused: the calibrated intervals exist for those only.
    """

    alias = CHAMPION

    def __init__(self, cfg: SelectionConfig, factories: Mapping[str, ModelFactory] = MODEL_FACTORIES) -> None:
        self.cfg = cfg
        self.factories = factories

    def fit(self, y: pd.Series) -> SelectionForecaster:
        self.y_ = y
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "y_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        if tuple(check_levels(levels)) != LEVELS:
            raise ValueError(f"the selection calibrates the {LEVELS} % intervals only; asked for {levels}")
        series_id = self.y_.name if isinstance(self.y_.name, str) else "y"  # the series' own id, where it is named
        frame = pd.DataFrame({"series_id": series_id, "ds": self.y_.index, "y": self.y_.to_numpy()})
        cfg = replace(self.cfg, horizon=check_horizon(h))
        found = select(frame, cfg, self.factories)
        forecast, self.metrics_, self.totals_ = found.forecast, found.metrics, found.totals
        if forecast.empty:
            raise RuntimeError("every candidate failed: " + "; ".join(self.metrics_["error"].dropna().astype(str)))
        self.chosen_ = str(forecast["model"].iloc[0])
        return from_published(forecast)


def evaluate_procedure(
    y: pd.Series,
    cutoffs: Sequence[int],
    horizon: int,
    cfg: SelectionConfig,
    baselines: Sequence[str] = ("naive", "seasonal_naive"),
    factories: Mapping[str, ModelFactory] | None = None,
) -> pd.DataFrame:
    """The selection procedure and the ``baselines`` rolled over ``cutoffs`` of one series, horizon ``horizon``.

    Returns EVALUATION_COLUMNS: one row per (method, cutoff, step); ``method`` is "champion" or a baseline alias,
    ``model`` the champion's alias at that cutoff (the baseline's own alias otherwise). Steps past the end of ``y``
    are not scored and not returned (the backtest stops at the series' end). Failures are rows with an error.
    """
    return roll_procedure(y, cutoffs, horizon, cfg, baselines, factories).evaluation


@dataclass(frozen=True)
class RolledProcedure:
    evaluation: pd.DataFrame  # EVALUATION_COLUMNS, as evaluate_procedure
    # The procedure's own totals at each cutoff (forecasting.totals.TOTALS_COLUMNS + cutoff, the last period it
    # saw): what it would have published, with the intervals of the total it calibrated then.
    totals: pd.DataFrame


def roll_procedure(
    y: pd.Series,
    cutoffs: Sequence[int],
    horizon: int,
    cfg: SelectionConfig,
    baselines: Sequence[str] = ("naive", "seasonal_naive"),
    factories: Mapping[str, ModelFactory] | None = None,
) -> RolledProcedure:
    """:func:`evaluate_procedure`, keeping the totals the procedure made at each cutoff (``cfg.totals``)."""
    factories = MemoFactories(MODEL_FACTORIES if factories is None else factories)
    unknown = [alias for alias in (*cfg.candidates, *baselines) if alias not in factories]
    if unknown:
        raise UnknownModelError(unknown[0], sorted(factories))
    made: list[SelectionForecaster] = []

    def _procedure() -> SelectionForecaster:
        made.append(SelectionForecaster(cfg, factories))
        return made[-1]

    champion = rolling_origin_backtest(y, _procedure, cutoffs, horizon)
    # One procedure per cutoff, in cutoff order; a failed one has no chosen_.
    by_cutoff = dict(zip(champion["cutoff"].unique(), made, strict=True))
    chosen = {c: getattr(m, "chosen_", None) for c, m in by_cutoff.items()}
    frames = [champion.assign(method=CHAMPION, model=champion["cutoff"].map(chosen))]
    for alias in baselines:
        bt = rolling_origin_backtest(y, partial(make_model, alias, cfg, factories), cutoffs, horizon)
        frames.append(bt.assign(method=alias, model=alias))
    totals = [m.totals_.assign(cutoff=c) for c, m in by_cutoff.items() if getattr(m, "totals_", None) is not None]
    totals = [t for t in totals if not t.empty]
    return RolledProcedure(
        evaluation=pd.concat(frames, ignore_index=True)[EVALUATION_COLUMNS],
        totals=pd.concat(totals, ignore_index=True) if totals else pd.DataFrame(columns=[*TOTALS_COLUMNS, "cutoff"]),
    )


def window_totals(evaluation: pd.DataFrame, windows: Sequence[int]) -> pd.DataFrame:
    """Next-k-period totals per (method, cutoff) for each k in ``windows``: columns window, cutoff, method, model,
    y (the actual total, NaN unless every period of the window was observed) and mean (the forecast total)."""
    out = []
    for k in windows:
        part = evaluation[(evaluation["step"] <= k) & evaluation["error"].isna()]
        grouped = part.groupby(["method", "cutoff"], sort=True)
        totals = grouped.agg(model=("model", "first"), y=("y", "sum"), mean=("mean", "sum"), n=("step", "size"))
        totals.loc[totals["n"] < k, "y"] = np.nan
        out.append(totals.drop(columns="n").reset_index().assign(window=k))
    return pd.concat(out, ignore_index=True)[["window", "cutoff", "method", "model", "y", "mean"]]


def conformal_totals(
    totals: pd.DataFrame, levels: Sequence[int] = LEVELS, min_scores: int = 8, freq: str = "D"
) -> pd.DataFrame:
    """Intervals for forecast totals from the errors of earlier totals (split conformal on log1p, per window/method).

    For a total made at cutoff t over k periods, the scores are log1p(actual) - log1p(forecast) of the same method's
    totals whose windows had ended by t (cutoff + k periods of ``freq`` <= t), so nothing after
    t is used. The interval is expm1(log1p(forecast) + the scores' conformal lower and upper quantiles): relative
    errors, so the width follows the level of the series. With fewer than ``min_scores`` earlier totals the
    interval is left NaN (not scored).
    """
    levels = check_levels(levels)
    out = []
    for (window, _), group in totals.groupby(["window", "method"], sort=True):
        group = group.sort_values("cutoff").reset_index(drop=True)
        ended = group["cutoff"] + int(window) * PERIOD_OFFSETS[freq]
        scores = np.log1p(group["y"]) - np.log1p(group["mean"])
        bounds = {f"{side}-{lvl}": np.full(len(group), np.nan) for lvl in levels for side in ("lo", "hi")}
        for i, cutoff in enumerate(group["cutoff"]):
            past = scores[(ended <= cutoff) & scores.notna()].to_numpy()
            if len(past) < min_scores:
                continue
            base = math.log1p(group.at[i, "mean"])
            for lvl in levels:
                tail = (100 - lvl) / 200
                lo, hi = two_sided_conformal(past, tail)
                bounds[f"lo-{lvl}"][i] = max(math.expm1(base + lo), 0.0)
                bounds[f"hi-{lvl}"][i] = math.expm1(base + hi)
        out.append(group.assign(**bounds))
    return pd.concat(out, ignore_index=True)


def two_sided_conformal(scores: np.ndarray, tail: float) -> tuple[float, float]:
    """Lower and upper finite-sample quantiles leaving ``tail`` on each side (the extreme score when too few)."""
    ordered = np.sort(scores)
    n = len(ordered)
    upper = min(math.ceil((n + 1) * (1 - tail)), n)
    lower = max(math.floor((n + 1) * tail), 1)
    return float(ordered[lower - 1]), float(ordered[upper - 1])


@dataclass(frozen=True)
class Skill:
    """MAE per method on the rows every method scored, and the champion's interval coverage."""

    table: pd.DataFrame  # method, n, mae, relative (to the best baseline), coverage80, coverage95
    champion_vs_best_baseline: float  # champion MAE / the lower baseline MAE (< 1: champion better)


def skill(frame: pd.DataFrame, baselines: Sequence[str], by: Sequence[str] = ("cutoff", "step")) -> Skill:
    """Compare methods on the same rows: those (``by`` keys) every method forecast and whose actual is known.

    ``frame`` has columns method, y, mean and the ``by`` keys (evaluation rows or totals); coverage is computed for
    methods that have lo-80/hi-80 (and 95) on the rows where the bounds exist.
    """
    scored = frame[frame["y"].notna() & frame["mean"].notna()]
    methods = list(pd.unique(scored["method"]))
    keys = list(by)
    common = scored.groupby(keys)["method"].nunique()
    common = common[common == len(methods)].index
    scored = scored.set_index(keys).loc[common].reset_index()
    rows = []
    for method, rows_m in scored.groupby("method", sort=False):
        row: dict[str, object] = {
            "method": method,
            "n": len(rows_m),
            "mae": float((rows_m["y"] - rows_m["mean"]).abs().mean()),
        }
        for lvl in LEVELS:
            lo, hi = f"lo-{lvl}", f"hi-{lvl}"
            have = rows_m.dropna(subset=[lo, hi]) if {lo, hi} <= set(rows_m.columns) else rows_m.iloc[:0]
            row[f"coverage{lvl}"] = coverage(have["y"], have[lo], have[hi]) if len(have) else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    best = table.loc[table["method"].isin(baselines), "mae"].min()
    table["relative"] = table["mae"] / best if best > 0 else math.nan
    champion = table.loc[table["method"] == CHAMPION, "relative"]
    return Skill(table=table, champion_vs_best_baseline=float(champion.iloc[0]) if len(champion) else math.nan)
