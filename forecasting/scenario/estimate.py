"""What people did when a crossing point was closed before: the engine's behaviour parameters, estimated from counts.

A past closure leaves a mark on daily counts of people passing crossing points: a shortfall at the closed point
while it was closed, a bump there after it reopened (the people who waited), and an excess at the points they
diverted to, some days later. Measured against each series' level in the weeks before the closure, those marks give
the engine's parameters for a closure of the same kind:

- **diversion share** to a destination: its excess over the window ``[start, end + divert_days]`` divided by the
  closed point's shortfall over the closure;
- **divert lag**: days from the centre of the shortfall to the centre of the destination's excess;
- **release**: days from the reopening to the centre of the bump after it (over ``release_days``).

Counts are what the simulator's history gives per point and day (``truth/arrivals``: people passing each crossing
point), or any official count per place and day. The destination's series must count where the engine puts diverted
people: a route destination means its departure points (``Network.resolve``), so its series is the people passing
those points; people who divert by another way (overland) are not in the share.

**Uncertainty**, from the weeks before the closure: each series' level is their mean, its daily noise their sd. A
draw takes a level (normal around the mean, with its standard error) and daily noise (normal, that sd, independent
days) as the counterfactual, and measures every quantity on the same draw; the parameters' means and sds are over the
draws. What this leaves out: a trend or a season across the window (the level is flat), days that are not
independent (weather, sailing schedules), and anything else that changed at the same time (the estimate reads every
change in the window as the closure's). The shapes of people's delays around the mean are not estimated: they keep
the defaults' (divert lag Gamma 4, release Erlang-2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from forecasting.scenario.parameters import BlockParameters, Delay, Diversion
from forecasting.scenario.spec import DiversionShare, Target

__all__ = ["BlockEstimate", "estimate_block"]

# Centres (lags) are read from the positive part of each draw's excess; where a draw has none, the lag is unknown.
_QUANTILES = (0.05, 0.5, 0.95)


@dataclass(frozen=True)
class BlockEstimate:
    """A past closure read from counts: ``parameters`` for the engine (with ``source`` saying where they came from)
    and ``table``, one row per measured quantity (``quantity``, ``unit``, ``estimate``: the mean over draws,
    ``sd``, ``lo90``/``hi90``: its 90 % interval, ``observed``: read from the counts with the mean level)."""

    parameters: BlockParameters
    table: pd.DataFrame
    notes: tuple[str, ...]


def _window(series: pd.Series, first: date, last: date, name: str) -> np.ndarray:
    days = pd.date_range(first, last, freq="D")
    index = pd.DatetimeIndex(pd.to_datetime(series.index))
    if index.has_duplicates:
        raise ValueError(f"{name}: more than one value for a day")
    values = pd.Series(series.to_numpy(dtype="float64"), index=index).reindex(days)
    missing = values.isna()
    if missing.any():
        raise ValueError(
            f"{name}: no count for {int(missing.sum())} day(s) between {first} and {last} (first: "
            f"{values.index[missing.to_numpy()][0].date()}); the estimate needs every day from {first} to {last}"
        )
    if (values < 0).any():
        raise ValueError(f"{name}: counts of people must be >= 0")
    return values.to_numpy()


def _excess(
    y: np.ndarray, control: np.ndarray | None, n_pre: int, rng: np.random.Generator, n_draws: int
) -> tuple[np.ndarray, np.ndarray]:
    """What ``y`` shows beyond what it would have been, after its first ``n_pre`` days: draws (n_draws, days after)
    and the reading with the estimated level (days after).

    Without ``control`` the counterfactual is a flat level; with one (a series that shares ``y``'s ups and downs but
    not the closure) it is ``k`` times the control, ``k`` being the ratio of their sums before. Either way the
    residuals before give the noise: AR(1) with their lag-1 correlation (0 to 0.95; waves of a few weeks make sums
    over many days far less sure than independent days would), its variance drawn from its scaled inverse
    chi-square, and ``k`` (or the level) normal around its estimate with the variance of a mean of such noise."""
    x = np.ones_like(y) if control is None else control
    x_pre, y_pre = x[:n_pre], y[:n_pre]
    if x_pre.sum() <= 0:
        raise ValueError("the control series is 0 on every day before the closure: it cannot give a level")
    k = y_pre.sum() / x_pre.sum()
    residual = y_pre - k * x_pre
    variance = residual.var(ddof=1) if n_pre > 1 else 0.0
    rho = 0.0
    if variance > 0 and n_pre > 3:
        rho = float(np.clip(np.corrcoef(residual[1:], residual[:-1])[0, 1], 0.0, 0.95))
    sd = np.sqrt((n_pre - 1) * variance / rng.chisquare(n_pre - 1, size=(n_draws, 1)))
    inflation = np.sqrt((1.0 + rho) / (1.0 - rho))  # the sd of a mean of AR(1) noise, over that of independent days
    k_draws = k + rng.normal(0.0, 1.0, size=(n_draws, 1)) * sd * inflation / (np.sqrt(n_pre) * x_pre.mean())
    after, x_after = y[n_pre:], x[n_pre:]
    shocks = rng.normal(0.0, 1.0, size=(n_draws, after.size))
    noise = np.empty_like(shocks)
    noise[:, 0] = shocks[:, 0]
    for t in range(1, after.size):
        noise[:, t] = rho * noise[:, t - 1] + np.sqrt(1.0 - rho**2) * shocks[:, t]
    counterfactual = k_draws * x_after + noise * sd
    return after - counterfactual, after - k * x_after


def _centre(weights: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per draw, the centre of ``offsets`` weighted by the positive part of ``weights`` (NaN without any)."""
    w = np.clip(weights, 0.0, None)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * offsets).sum(axis=1) / total, np.nan)


def _row(quantity: str, unit: str, draws: np.ndarray, observed: float) -> dict[str, object]:
    finite = draws[np.isfinite(draws)]
    lo, _, hi = np.quantile(finite, _QUANTILES) if finite.size else (np.nan,) * 3
    return {
        "quantity": quantity,
        "unit": unit,
        "estimate": float(finite.mean()) if finite.size else float("nan"),
        "sd": float(finite.std()) if finite.size > 1 else float("nan"),
        "lo90": float(lo),
        "hi90": float(hi),
        "observed": observed,
    }


def estimate_block(
    closed: pd.Series,
    destinations: Mapping[str, pd.Series],
    start: date,
    end: date,
    *,
    source: str,
    control: pd.Series | None = None,
    before_days: int = 28,
    release_days: int = 14,
    divert_days: int = 35,
    defaults: BlockParameters | None = None,
    n_draws: int = 4000,
    seed: int = 0,
) -> BlockEstimate:
    """Estimate what people blocked by the closure from ``start`` to ``end`` (inclusive) did, from daily counts.

    ``closed``: people passing the closed point per day; ``control``: optionally, people per day at points the
    closure did not touch that rise and fall with it (the same route's other departure points), which then give the
    closed point's counterfactual instead of a flat level; ``destinations``: per destination target (as a scenario
    writes it, e.g. ``route:eastern_mediterranean``) the people passing the points the engine sends diverted people
    to, per day. Indexed by day, covering ``before_days`` before ``start`` up to ``end + release_days`` (``closed``,
    ``control``) or ``end + divert_days`` (each destination). ``source`` says where the counts came from (kept in
    each parameter's ``source``); ``defaults`` give what is not estimated (the shapes; default: the engine's).

    The share that diverted is what did not come back: ``1 - released / blocked`` (everyone held back has left by
    the end of ``release_days``). The destinations' own excess, which also holds their ups and downs, only splits
    that share between several of them and dates their arrivals (the lag); the table gives it beside.

    Raises ``ValueError`` for a series that does not cover its window, a closure that ends before it starts, or
    counts that show no shortfall at the closed point while it was closed.
    """
    if end < start:
        raise ValueError(f"the closure ends ({end}) before it starts ({start})")
    if before_days < 7 or release_days < 1 or divert_days < 0:
        raise ValueError("before_days must be >= 7, release_days >= 1 and divert_days >= 0")
    defaults = defaults or BlockParameters()
    rng = np.random.default_rng(seed)
    first = start - timedelta(days=before_days)
    n_closed = (end - start).days + 1

    last = end + timedelta(days=release_days)
    y = _window(closed, first, last, "the closed point's counts")
    x = None if control is None else _window(control, first, last, "the control's counts")
    excess, seen = _excess(y, x, before_days, rng, n_draws)  # (draws, closure + release days), (days)
    blocked = -excess[:, :n_closed].sum(axis=1)
    released = np.clip(excess[:, n_closed:].sum(axis=1), 0.0, None)
    observed_blocked, observed_released = float(-seen[:n_closed].sum()), float(max(seen[n_closed:].sum(), 0.0))
    if observed_blocked <= 0:
        raise ValueError(
            f"the closed point's counts show no shortfall from {start} to {end} against the {before_days} days before "
            f"({y[:before_days].mean():.1f} a day before, {y[before_days:][:n_closed].mean():.1f} during): "
            "nothing to estimate"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        diverting = np.where(blocked > 0, np.clip(1.0 - released / blocked, 0.0, 1.0), np.nan)
    closure_days = np.arange(n_closed, dtype="float64") + 0.5
    blocked_centre = _centre(-excess[:, :n_closed], closure_days)
    release_offsets = np.arange(release_days, dtype="float64")  # days from the reopening day, as the engine counts
    release_centre = _centre(excess[:, n_closed:], release_offsets)

    rows = [
        _row("blocked (shortfall while closed)", "people", blocked, observed_blocked),
        _row("released (bump after reopening)", "people", released, observed_released),
        _row("divert share (1 - released / blocked)", "share", diverting,
             min(max(1.0 - observed_released / observed_blocked, 0.0), 1.0)),
    ]  # fmt: skip
    notes = []
    if np.mean(blocked <= 0) > 0.05:
        notes.append(
            f"the shortfall at the closed point ({observed_blocked:,.0f} people) is within the noise of its counts: "
            "the shares below are barely measured"
        )
    seen_draws, lags, labels = [], [], []
    for target, series in destinations.items():
        z = _window(series, first, end + timedelta(days=divert_days), f"{target}'s counts")
        z_excess, z_seen = _excess(z, None, before_days, rng, n_draws)
        lag = _centre(z_excess, np.arange(z_excess.shape[1], dtype="float64") + 0.5) - blocked_centre
        rows += [
            _row(f"excess seen at {target}", "people", z_excess.sum(axis=1), float(z_seen.sum())),
            _row(f"divert lag to {target}", "days", lag, float("nan")),
        ]
        seen_draws.append(np.clip(z_excess.sum(axis=1), 0.0, None))
        lags.append(lag)
        labels.append(target)

    label = f"estimated from {source}, closure {start} to {end}"
    to: tuple[DiversionShare, ...] = ()
    diversion_sd = 0.0
    if labels:
        # Each destination's part of the share: its positive excess over all of theirs (equal where none shows any).
        seen_all = np.column_stack(seen_draws)
        totals = seen_all.sum(axis=1, keepdims=True)
        parts = np.where(totals > 0, seen_all / np.where(totals > 0, totals, 1.0), 1.0 / len(labels))
        share_draws = np.nan_to_num(diverting)[:, None] * parts
        means = share_draws.mean(axis=0)
        to = tuple(
            DiversionShare(to=Target.model_validate(t), share=float(m)) for t, m in zip(labels, means, strict=True)
        )
        for t, column in zip(labels, share_draws.T, strict=True):
            rows.append(_row(f"divert share to {t}", "share", column, float("nan")))
        m = float(share_draws.sum(axis=1).mean())
        diversion_sd = float(share_draws.sum(axis=1).std())
        if 0.0 < m < 1.0:
            diversion_sd = min(diversion_sd, 0.95 * float(np.sqrt(m * (1.0 - m))))
        else:
            diversion_sd = 0.0
        # One lag for all destinations (the engine's): the diverted people's centre, weighted by each one's part.
        # Only where what the destinations show is about the number that did not come back: otherwise their excess
        # is mostly their own rise or fall (a season, a wave), and its centre says nothing of the diverted people.
        implied = np.quantile(blocked - released, [0.05, 0.95])
        seen_total = float(seen_all.sum(axis=1).mean())
        if implied[0] <= seen_total <= implied[1]:
            lag_draws = np.column_stack(lags)
            weights = np.where(np.isfinite(lag_draws), parts + 1e-12, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                lag = (np.nan_to_num(lag_draws) * weights).sum(axis=1) / weights.sum(axis=1)
            divert_lag = _delay(lag, defaults.divert_lag, label)
        else:
            divert_lag = defaults.divert_lag
            notes.append(
                f"the destinations show {seen_total:,.0f} people more than before, where {implied[0]:,.0f} to "
                f"{implied[1]:,.0f} did not come back: their counts move for other reasons too, so the divert lag "
                "keeps its default"
            )
    else:
        divert_lag = defaults.divert_lag
        notes.append(
            f"no destination given: the parameters divert nobody, although {np.nanmean(diverting):.2f} of the people "
            "held back did not come back; say where they went (a destination) to divert them"
        )
    release = _delay(release_centre, defaults.release, label)
    parameters = BlockParameters(
        diversion=Diversion(to=to, sd=diversion_sd, source=label),
        divert_lag=divert_lag,
        release=release,
    )
    return BlockEstimate(parameters=parameters, table=pd.DataFrame(rows), notes=tuple(notes))


def _delay(draws: np.ndarray, default: Delay, source: str) -> Delay:
    """A delay from draws of its mean (days): their mean and sd, with the default's shape. The default if no draw
    measured it."""
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return default
    return Delay(mean=max(0.0, float(finite.mean())), sd=float(finite.std()), shape=default.shape, source=source)
