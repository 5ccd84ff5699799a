"""Ad-hoc forecasts from an analyst's counts file: ``routecast forecast FILE --source ... --as-of DATE``.

The file is read and checked exactly as ``ingest-counts`` reads it (jobs.stages.counts), nothing is written, and each
route's series goes through the pipeline's model selection (jobs.stages.forecast.selection_configs) on pandas alone,
no Spark. Only periods that have *ended* by the as-of date are used (a month dated 1 March counts once
31 March has passed), so the same command scores forecasts on data that arrives later: run it with an earlier
``--as-of`` and compare with the file's later rows.

A daily source can be forecast weekly or monthly (``--freq``): complete weeks (Monday to Sunday) and months are
summed; a period with a missing day is not complete and is left out, so it shows as a gap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from contracts.published import exceedance
from contracts.series import crossing_point_of
from forecasting.protocol import PERIOD_NAMES, PERIOD_OFFSETS, check_freq, period_grid
from forecasting.selection import select
from jobs.settings import JobSettings
from jobs.stages.counts import read_counts
from jobs.stages.forecast import pooled_factories, procedure_key, selection_configs

ADHOC_COLUMNS = ["route", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"]
TOTALS_TABLE_COLUMNS = ["route", "window", "start", "end", "yhat", "lo80", "hi80", "lo95", "hi95", "n_scores", "model"]
_COARSER = {"D": {"W", "M"}, "W": set(), "M": set()}


@dataclass(frozen=True)
class AdhocForecast:
    table: pd.DataFrame  # ADHOC_COLUMNS, by route and ds
    notes: list[str]  # per route: refused, stale, how many periods used
    # TOTALS_TABLE_COLUMNS (+ p_exceeds and p_bound with ``exceeds``): the next k periods' totals with intervals of
    # the total, for the windows the procedure calibrates (routes whose data end before as-of have none).
    totals: pd.DataFrame


def period_end(ds: pd.Series, freq: str) -> pd.Series:
    """The last day of each period of ``freq`` starting at ``ds``."""
    return pd.to_datetime(ds) + PERIOD_OFFSETS[check_freq(freq)] - pd.Timedelta(days=1)


def last_ended_period(as_of: dt.date, freq: str) -> pd.Timestamp:
    """The start of the last period of ``freq`` that has ended on or before ``as_of``."""
    day = pd.Timestamp(as_of)
    start = {"D": day, "W": day - pd.Timedelta(days=day.dayofweek), "M": day.replace(day=1)}[check_freq(freq)]
    ends = start + PERIOD_OFFSETS[freq] - pd.Timedelta(days=1)
    return start if ends <= day else start - PERIOD_OFFSETS[freq]


def to_coarser(series: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Daily SERIES rows summed into complete weeks (Mondays) or months (1st) per series_id."""
    rule = {"W": "W-MON", "M": "MS"}[freq]
    out = []
    for sid, rows in series.groupby("series_id", sort=True):
        daily = rows.set_index(pd.to_datetime(rows["ds"]))["y"].sort_index()
        # Label each week by its Monday: resample with left-closed, left-labelled bins.
        grouped = daily.resample(rule, closed="left", label="left")
        sums, days = grouped.sum(), grouped.count()
        length = pd.Series((sums.index + PERIOD_OFFSETS[freq] - sums.index).days, index=sums.index)
        complete = days == length
        out.append(pd.DataFrame({"series_id": sid, "ds": sums.index[complete], "y": sums[complete].to_numpy()}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["series_id", "ds", "y"])


def adhoc_forecast(
    path: Path,
    source: str,
    as_of: dt.date,
    horizon: int,
    freq: str | None = None,
    settings: JobSettings | None = None,
    exceeds: float | None = None,
    pool: Sequence[tuple[Path, str]] = (),
) -> AdhocForecast:
    """Forecast each route of a counts file for the ``horizon`` periods after the last period ended by ``as_of``.

    ``freq`` defaults to the source's own; a coarser one is summed from daily data; anything else is refused.
    A route whose data stop before ``as_of`` is forecast from its last period up to ``as_of`` and on, and only
    the ``horizon`` periods after ``as_of`` are returned (noted). Routes that cannot be forecast (too short,
    gaps) are noted, never dropped silently. Totals (the next 7 and 28 days, 1 and 4 weeks, 1 and 3 months, as
    settings say) come with intervals of the total and, given ``exceeds``, the probability that a total is above it.
    ``pool``: other counts files (path, source) whose series the monthly procedure's pooled model learns from too,
    beside the file's own (as the nightly run's learns from every monthly source it reads), up to ``as_of`` as well.
    """
    if horizon < 1:
        raise ValueError(f"--horizon {horizon} must be a positive number of periods")
    if exceeds is not None and not exceeds >= 0:
        raise ValueError(f"--exceeds {exceeds} must be a number of people (0 or more)")
    settings = settings or JobSettings()
    batch = read_counts(path, source, freq=freq if source == "generic" else None)
    native = batch.report.freq
    target = native if freq is None or source == "generic" else check_freq(freq)
    if target != native and target not in _COARSER[native]:
        raise ValueError(
            f"{source} counts are per {PERIOD_NAMES[native]}; they can be forecast per "
            f"{' or '.join(PERIOD_NAMES[f] for f in sorted(_COARSER[native])) or PERIOD_NAMES[native]} only"
        )
    series = batch.series[["series_id", "route_id", "ds", "y"]]
    # A per-point source (landings) has several series per route: each is named route/point.
    keys = batch.series[["series_id", "route_id", "level"]].drop_duplicates()
    names = {
        sid: route if level == "route" else f"{route}/{crossing_point_of(sid)}"
        for sid, route, level in keys.itertuples(index=False)
    }
    if target != native:
        series = to_coarser(series, target)
    series = series[period_end(series["ds"], target) <= pd.Timestamp(as_of)]

    last_period = last_ended_period(as_of, target)
    base = selection_configs(settings)[procedure_key(source, target)]
    panel = {}
    if target == "M":
        for frame in [series, *(_monthly_series(p, s, as_of) for p, s in pool)]:
            for sid, rows in frame.groupby("series_id", sort=True):
                y = pd.Series(rows["y"].to_numpy(dtype="float64"), index=pd.DatetimeIndex(rows["ds"]))
                panel.setdefault(str(sid), y)  # the file's own series first: a pooled file cannot replace one
    factories = pooled_factories(base, panel)
    notes, tables, totals = [], [], []
    for sid, rows in series.groupby("series_id", sort=True):
        route = names[sid]
        last = pd.Timestamp(rows["ds"].max())
        behind = len(period_grid(last, last_period, target)) - 1
        cfg = replace(base, horizon=horizon + behind)
        try:
            found = select(rows, cfg, factories)
        except ValueError as exc:
            notes.append(f"{route}: not forecast: {exc}")
            continue
        forecast = found.forecast
        if forecast.empty:
            notes.append(f"{route}: not forecast: every model failed")
            continue
        if behind:
            notes.append(
                f"{route}: data end {last.date()}, {behind} {PERIOD_NAMES[target]}(s) before {as_of}; "
                "forecast from there (no totals: they would start before it)"
            )
        elif not found.totals.empty:  # totals start after the data's last period: only when that is as-of's
            totals.append(found.totals.assign(route=route))
        kept = forecast[forecast["ds"] > last_period].head(horizon)
        tables.append(kept.assign(route=route))
    if not tables:
        raise ValueError(f"no route of {path.name} could be forecast as of {as_of}: " + "; ".join(notes))
    table = pd.concat(tables, ignore_index=True)[ADHOC_COLUMNS]
    table["ds"] = pd.to_datetime(table["ds"]).dt.date
    return AdhocForecast(table=table, notes=notes, totals=_totals_table(totals, exceeds))


def _monthly_series(path: Path, source: str, as_of: dt.date) -> pd.DataFrame:
    """``series_id, ds, y``: a counts file's series per month (summed from days where daily), months ended by
    ``as_of``."""
    batch = read_counts(Path(path), source, freq="M" if source == "generic" else None)
    series = batch.series[["series_id", "route_id", "ds", "y"]]
    if batch.report.freq != "M":
        series = to_coarser(series, "M")
    return series[period_end(series["ds"], "M") <= pd.Timestamp(as_of)]


def _totals_table(totals: list[pd.DataFrame], exceeds: float | None) -> pd.DataFrame:
    """The routes' totals as printed: dates as dates and, with ``exceeds``, P(total > exceeds) and its bound."""
    if not totals:
        return pd.DataFrame(columns=TOTALS_TABLE_COLUMNS)
    frame = pd.concat(totals, ignore_index=True)
    out = frame[TOTALS_TABLE_COLUMNS].copy()
    out["start"], out["end"] = pd.to_datetime(out["start"]).dt.date, pd.to_datetime(out["end"]).dt.date
    if exceeds is not None:
        found = [exceedance(q, exceeds) for q in frame["quantiles"]]
        out["p_exceeds"] = [p for p, _ in found]
        out["p_bound"] = [bound or "" for _, bound in found]
    return out
