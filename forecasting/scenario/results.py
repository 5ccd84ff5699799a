"""A scenario's answer: the draws summed up into tidy tables with 80 % and 95 % intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from forecasting.scenario.engine import ScenarioDraws

__all__ = [
    "ASSUMPTION_COLUMNS",
    "DAILY_COLUMNS",
    "LEDGER_COLUMNS",
    "SUMMARY_COLUMNS",
    "VALUES",
    "ScenarioResult",
    "summarise",
]

# yhat is the median of the draws; the intervals are the draws' central 80 % and 95 %.
VALUES = ("yhat", "lo80", "hi80", "lo95", "hi95")
_PROBS = (0.5, 0.1, 0.9, 0.025, 0.975)
_PARTS = ("baseline", "scenario", "difference")
_VALUE_COLUMNS = [f"{part}_{v}" for part in _PARTS for v in VALUES]
DAILY_COLUMNS = ["kind", "route_id", "point_id", "series_id", "ds", *_VALUE_COLUMNS]
SUMMARY_COLUMNS = ["kind", "route_id", "point_id", "series_id", "measure", "start", "end", *_VALUE_COLUMNS]
LEDGER_COLUMNS = ["intervention", "route_id", "point_id", "quantity", *VALUES]
ASSUMPTION_COLUMNS = ["intervention", "target", "parameter", "mean", "sd", "shape", "source"]
# Over the summary window: people crossing (or diverting) in total, people present on an average day, and the most
# people waiting on one day.
MEASURES = {"point": "total", "diverted": "total", "route": "mean", "waiting": "peak"}


@dataclass(frozen=True)
class ScenarioResult:
    """What a scenario answers, in people.

    - ``daily`` (``DAILY_COLUMNS``): per row (``kind`` point|route|waiting|diverted, ``route_id``, ``point_id``,
      ``series_id`` of the published baseline) and day ``ds``: the baseline, the scenario and their difference,
      each as ``yhat`` (median of the draws), ``lo80``, ``hi80``, ``lo95``, ``hi95``. The difference's values are
      quantiles of the per-draw difference, not differences of quantiles.
    - ``summary`` (``SUMMARY_COLUMNS``): the same rows over the window ``start``..``end`` (the first intervention's
      start to the horizon's end), as ``measure``: ``total`` people (point, diverted), ``mean`` people present on
      a day (route), ``peak`` people waiting on one day (waiting).
    - ``ledger`` (``LEDGER_COLUMNS``): per intervention and blocked point, people ``blocked``, ``diverted`` (and
      ``diverted:<destination>``), ``released`` within the horizon and ``waiting_at_end``.
    - ``assumptions`` (``ASSUMPTION_COLUMNS``): each parameter used, with its ``source``.
    """

    daily: pd.DataFrame
    summary: pd.DataFrame
    ledger: pd.DataFrame
    assumptions: pd.DataFrame
    first_day: date
    last_day: date
    n_draws: int
    seed: int
    notes: tuple[str, ...] = ()


def _quantiles(values: np.ndarray, axis: int) -> np.ndarray:
    """The VALUES quantiles along ``axis``, moved to the last axis."""
    # The draws moved to the last, contiguous axis: numpy's quantile is several times faster there.
    contiguous = np.ascontiguousarray(np.moveaxis(values, axis, -1))
    return np.moveaxis(np.quantile(contiguous, _PROBS, axis=-1), 0, -1)


def _daily(draws: ScenarioDraws) -> pd.DataFrame:
    n_rows, _, n_days = draws.baseline.shape
    parts = [draws.baseline, draws.scenario, draws.scenario - draws.baseline]
    values = np.concatenate([_quantiles(a, axis=1) for a in parts], axis=-1).reshape(n_rows * n_days, -1)
    frame = pd.DataFrame(values, columns=_VALUE_COLUMNS)
    keys = pd.DataFrame(
        [(r.kind, r.route_id, r.point_id, r.series_id) for r in draws.rows for _ in range(n_days)],
        columns=DAILY_COLUMNS[:4],
    )
    keys["ds"] = list(draws.days) * n_rows
    return pd.concat([keys, frame], axis=1)[DAILY_COLUMNS]


def _summary(draws: ScenarioDraws) -> pd.DataFrame:
    start = min(p.intervention.start for p in draws.plan)
    lo = (start - draws.days[0]).days
    records = []
    for i, r in enumerate(draws.rows):
        measure = MEASURES[r.kind]
        agg = {"total": np.sum, "mean": np.mean, "peak": np.max}[measure]
        base = agg(draws.baseline[i, :, lo:], axis=1)
        scen = agg(draws.scenario[i, :, lo:], axis=1)
        q = np.concatenate([_quantiles(a, axis=0) for a in (base, scen, scen - base)])
        records.append([r.kind, r.route_id, r.point_id, r.series_id, measure, start, draws.days[-1], *q])
    return pd.DataFrame(records, columns=SUMMARY_COLUMNS)


def _ledger(draws: ScenarioDraws) -> pd.DataFrame:
    records = []
    for led in draws.ledgers:
        quantities = {"blocked": led.blocked, "diverted": led.diverted_total}
        quantities |= {f"diverted:{to}": v for to, v in led.diverted.items()}
        quantities |= {"released": led.released, "waiting_at_end": led.waiting_at_end}
        for name, v in quantities.items():
            records.append([led.intervention, led.route_id, led.point_id, name, *_quantiles(v, axis=0)])
    return pd.DataFrame(records, columns=LEDGER_COLUMNS)


def _assumptions(draws: ScenarioDraws) -> pd.DataFrame:
    nan = math.nan
    records = []
    for p in draws.plan:
        if p.parameters is None:
            continue
        div = p.parameters.diversion
        total = div.total
        concentration = total * (1 - total) / div.sd**2 - 1 if div.sd > 0 and 0 < total < 1 else math.inf
        for d in p.destinations:
            sd = math.sqrt(d.share * (1 - d.share) / (concentration + 1)) if math.isfinite(concentration) else 0.0
            records.append([p.index, p.label, f"divert_share:{d.label}", d.share, sd, nan, div.source])
        records.append([p.index, p.label, "divert_share", total, div.sd, nan, div.source])
        for name, delay in (("divert_lag_days", p.parameters.divert_lag), ("release_days", p.parameters.release)):
            records.append([p.index, p.label, name, delay.mean, delay.sd, delay.shape, delay.source])
    transit = draws.parameters.transit
    records.append([None, None, "transit_lag_factor", 1.0, transit.sd_share, transit.shape, transit.source])
    return pd.DataFrame(records, columns=ASSUMPTION_COLUMNS)


def summarise(draws: ScenarioDraws) -> ScenarioResult:
    """The tables of a scenario from its draws."""
    return ScenarioResult(
        daily=_daily(draws),
        summary=_summary(draws),
        ledger=_ledger(draws),
        assumptions=_assumptions(draws),
        first_day=draws.days[0],
        last_day=draws.days[-1],
        n_draws=draws.n_draws,
        seed=draws.seed,
        notes=draws.notes,
    )
