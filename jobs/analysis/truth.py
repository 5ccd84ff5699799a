"""The people estimates and their forecasts scored against the simulator's truth: ``routecast truth``.

Only a simulated world has a truth (``routecast simulate`` writes it under ``var/truth``). Three tables, each per
route or crossing point, over the days both the gold people table (``contracts.tables.PEOPLE``) and the truth cover
(or a range given):

- presence: people on each route per day (gold ``present`` rows with no segment) against ``segment_people`` summed
  over the route's segments;
- crossing: people crossing at each point per day (gold ``crossing`` rows) against the truth's ``arrivals`` at a
  landing, border or hub, ``departures`` at a departure point; the busiest arrival points ranked by true arrivals;
- forecasts: the current release's people series (route and point levels) against the truth on the days after the
  release's ``as_of`` that the truth covers, by horizon (days 1-7, 8-28), beside the naive and the seasonal naive
  forecasts made from the release's own history, and whether each true next-7-day total lies in the interval of the
  release's published 7-day total (``totals.parquet``).

The figures are those of ``experiments/people-model/measure.py`` (which imports them from here): Pearson r of the
daily figures, the median absolute percentage error of weekly totals over complete Monday-Sunday weeks, and the share
of days the truth falls inside the 80 % interval. Targets are in :data:`TARGETS` and show as pass/fail columns (NA
where there is no figure). Reads Parquet with pandas; no Spark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from rich.table import Table
from rich.text import Text

from contracts import tables
from contracts.published import CURRENT, FORECASTS, HISTORY, MANIFEST, RELEASES, TOTALS
from contracts.schemas import CROSSING, PRESENT
from contracts.series import PEOPLE_SOURCE, crossing_point_of
from jobs.settings import JobSettings

if TYPE_CHECKING:  # imported where used: the command without --mlflow does not load MLflow
    from mlflow.tracking import MlflowClient

# The truth a crossing point's figure is scored against, by the point's role (a departure point counts people setting
# sail from it; every other role counts people passing it).
DEPARTURE_ROLE = "departure"
# Horizon buckets of the forecast scores: (label, first day ahead, last day ahead).
HORIZONS = (("1-7", 1, 7), ("8-28", 8, 28))
EXPERIMENT = "routecast-truth"


@dataclass(frozen=True)
class Targets:
    """What the people figures should reach in the simulated world."""

    presence_r: float = 0.9  # at least
    presence_weekly_ape: float = 0.15  # at most
    crossing_weekly_ape: float = 0.20  # at most, at the busiest arrival points
    crossing_r: float = 0.8  # at least, at the busiest arrival points
    crossing_coverage80: tuple[float, float] = (0.75, 0.85)  # 80 % interval coverage within, at the busiest
    busiest: int = 10  # how many arrival points the crossing targets hold for
    forecast_mae_ratio: float = 0.8  # next-7-day arrival forecasts: MAE at most this times the better naive's


TARGETS = Targets()


class TruthMissing(FileNotFoundError):
    """No simulated truth: it exists only for a simulated world."""


class PeopleMissing(FileNotFoundError):
    """No gold people table: the nightly's people stage has not run."""


@dataclass(frozen=True)
class Scores:
    """The three score tables over ``date_from .. date_to``, the release the forecasts came from, and notes."""

    date_from: dt.date
    date_to: dt.date
    presence: pd.DataFrame  # PRESENCE_COLUMNS, one row per route
    crossing: pd.DataFrame  # CROSSING_COLUMNS, one row per crossing point
    forecasts: pd.DataFrame  # FORECAST_SCORE_COLUMNS, one row per series and horizon bucket
    release_id: str | None = None
    as_of: dt.date | None = None
    notes: list[str] = field(default_factory=list)

    def busiest(self, n: int = TARGETS.busiest) -> pd.DataFrame:
        """The ``n`` arrival points with the most true arrivals over the days scored, busiest first."""
        return self.crossing[self.crossing["rank"] <= n].sort_values("rank").reset_index(drop=True)


SCORE_COLUMNS = ["days", "true_per_day", "est_per_day", "r", "weeks", "weekly_ape", "coverage80"]
PRESENCE_COLUMNS = ["route_id", *SCORE_COLUMNS, "feature", "pass_r", "pass_weekly_ape", "note"]
CROSSING_COLUMNS = [
    "route_id",
    "crossing_point_id",
    "role",
    "truth",
    *SCORE_COLUMNS,
    "rank",
    "pass_r",
    "pass_weekly_ape",
    "pass_coverage80",
    "note",
]
FORECAST_SCORE_COLUMNS = [
    "series_id",
    "level",
    "route_id",
    "crossing_point_id",
    "role",
    "horizon",
    "days",
    "true_per_day",
    "mae",
    "mae_naive",
    "mae_seasonal_naive",
    "mae_ratio",
    "coverage80",
    "coverage95",
    "true_7d",
    "yhat_7d",
    "ape_7d",
    # whether the true 7-day total lies in the published total's 80 % / 95 % interval (the release's totals.parquet)
    "in80_7d",
    "in95_7d",
    "pass_mae_ratio",
]


# --- The figures (shared with experiments/people-model/measure.py) -------------------------------------------------


def pearson_r(x: pd.Series, y: pd.Series) -> float:
    """Pearson r of two aligned series; NaN with fewer than 3 values or when either is constant."""
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 0 and y.std() > 0 else float("nan")


def weekly_ape(est: pd.Series, true: pd.Series) -> tuple[int, float]:
    """(complete weeks, median APE of their totals) of two series on the same days (a DatetimeIndex).

    A week is complete when all seven days, Monday to Sunday, are present; a week whose true total is 0 has no APE.
    """
    both = pd.DataFrame({"est": est, "true": true})
    complete = both.groupby(both.index.to_period("W-SUN")).filter(lambda w: len(w) == 7)
    totals = complete.groupby(complete.index.to_period("W-SUN")).sum()
    ape = (totals["est"] - totals["true"]).abs() / totals["true"].where(totals["true"] > 0)
    return len(totals), float(ape.median()) if len(ape.dropna()) else float("nan")


def coverage(true: pd.Series, lo: pd.Series, hi: pd.Series) -> float:
    """Share of values inside [lo, hi] (a missing bound counts as a miss); NaN for no values."""
    inside = (true >= lo) & (true <= hi)
    return float(inside.mean()) if len(true) else float("nan")


def score_days(est: pd.DataFrame, true: pd.Series) -> dict[str, float]:
    """SCORE_COLUMNS of one estimate (``people``, ``lo80``, ``hi80`` by day) against the truth on the same days.

    Only days with both an estimate and a true value count.
    """
    seen = est["people"].notna() & true.notna()
    weeks, ape = weekly_ape(est["people"][seen], true[seen])
    return {
        "days": int(seen.sum()),
        "true_per_day": true[seen].mean(),
        "est_per_day": est["people"][seen].mean(),
        "r": pearson_r(est["people"][seen], true[seen]),
        "weeks": weeks,
        "weekly_ape": ape,
        "coverage80": coverage(true[seen], est["lo80"][seen], est["hi80"][seen]) if seen.any() else float("nan"),
    }


# --- Reading -------------------------------------------------------------------------------------------------------


def _dates(frame: pd.DataFrame, column: str = "date") -> pd.DataFrame:
    return frame.assign(**{column: pd.to_datetime(frame[column].astype(str))})


def read_truth(settings: JobSettings) -> dict[str, pd.DataFrame]:
    """The truth tables scored against (segment_people, arrivals, departures), dates as Timestamps.

    :class:`TruthMissing` when the world was not simulated; departures may be absent (an empty table).
    """
    people = settings.lake(tables.TRUTH_SEGMENT_PEOPLE)
    if not people.exists():
        raise TruthMissing(
            f"no simulated truth under {settings.truth_dir}: the truth exists only for a simulated world; "
            "run routecast simulate, then routecast nightly, first"
        )
    out = {}
    for table in (tables.TRUTH_SEGMENT_PEOPLE, tables.TRUTH_ARRIVALS, tables.TRUTH_DEPARTURES):
        path = settings.lake(table)
        frame = pd.read_parquet(path) if path.exists() else table.schema.empty_table().to_pandas()
        out[table.name] = _dates(frame[list(table.columns)])
    return out


def read_people(settings: JobSettings) -> pd.DataFrame:
    """The gold people table, dates as Timestamps; :class:`PeopleMissing` when the people stage has not run."""
    path = settings.lake(tables.PEOPLE)
    if not path.exists() or not any(path.glob("measure=*")):
        raise PeopleMissing(
            f"no gold people table at {path}: run the nightly (routecast nightly --date D, its people stage) first"
        )
    frame = pd.read_parquet(path)
    frame["measure"] = frame["measure"].astype(str)
    return _dates(frame[list(tables.PEOPLE.columns)])


@dataclass(frozen=True)
class PublishedPeople:
    """The people series of one release: forecasts and the observed history published with them."""

    release_id: str
    as_of: dt.date
    forecasts: pd.DataFrame  # PUBLISHED_FORECAST columns, ds as Timestamp
    history: pd.DataFrame  # PUBLISHED_HISTORY columns, ds as Timestamp
    # The published 7-day totals of these series (series_id, start, lo80, hi80, lo95, hi95); empty without totals.
    totals: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["series_id", "start", "lo80", "hi80", "lo95", "hi95"])
    )


def read_release(settings: JobSettings, release_id: str | None = None) -> PublishedPeople | None:
    """The people series (route and point levels) of ``release_id`` or of the current release; None when nothing
    has been published."""
    store = settings.store_dir
    if release_id is None:
        if not (store / CURRENT).is_file():
            return None
        release_id = (store / CURRENT).read_text().strip()
    folder = store / RELEASES / release_id
    manifest = json.loads((folder / MANIFEST).read_text())
    forecasts = pd.read_parquet(folder / FORECASTS)
    keep = (forecasts["source"] == PEOPLE_SOURCE) & forecasts["level"].isin(["route", "point"])
    forecasts = _dates(forecasts[keep], "ds")
    history = (
        pd.read_parquet(folder / HISTORY)
        if (folder / HISTORY).exists()
        else tables.PUBLISHED_HISTORY.schema.empty_table().to_pandas()
    )
    history = _dates(history[history["series_id"].isin(forecasts["series_id"])], "ds")
    found = PublishedPeople(release_id, dt.date.fromisoformat(manifest["as_of"]), forecasts, history)
    if (folder / TOTALS).exists():
        totals = pd.read_parquet(folder / TOTALS)
        week = totals[(totals["window"] == 7) & totals["series_id"].isin(forecasts["series_id"])]
        found = dataclasses.replace(found, totals=_dates(week[list(found.totals.columns)], "start"))
    return found


# --- Scoring -------------------------------------------------------------------------------------------------------


def _passed(value: float, ok: bool) -> object:
    return pd.NA if pd.isna(value) else bool(ok)


def _true_per_route(truth: dict[str, pd.DataFrame]) -> pd.Series:
    people = truth["segment_people"]
    return people.groupby(["route_id", "date"])["people"].sum().astype("float64")


def _true_per_point(truth: dict[str, pd.DataFrame]) -> dict[str, pd.Series]:
    """Per truth table (arrivals, departures): the daily count by (route_id, crossing_point_id, date)."""
    keys = ["route_id", "crossing_point_id", "date"]
    return {name: truth[name].groupby(keys)[name].sum().astype("float64") for name in ("arrivals", "departures")}


def truth_table_for(role: str | None) -> str:
    """The truth table a crossing point's figure is scored against: departures at a departure point, else arrivals."""
    return "departures" if role == DEPARTURE_ROLE else "arrivals"


def presence_scores(people: pd.DataFrame, truth: dict[str, pd.DataFrame], days: pd.DatetimeIndex) -> pd.DataFrame:
    """PRESENCE_COLUMNS per route over ``days``: the route's people (gold present, no segment) against the truth's
    people on its segments. A blind route (no figure on any day) has NaN scores, its true people a day over
    ``days``, and a note."""
    present = people[(people["measure"] == PRESENT) & people["segment_id"].isna()]
    true = _true_per_route(truth)
    rows = []
    for route_id in sorted(set(present["route_id"]) | set(true.index.get_level_values("route_id"))):
        est = present[present["route_id"] == route_id]
        t = true.loc[route_id].reindex(days) if route_id in true.index else pd.Series(np.nan, index=days)
        row = {"route_id": route_id, **score_days(_by_day(est, days), t)}
        figured = est[est["people"].notna()].sort_values("date")
        row["feature"] = figured["feature"].iloc[-1] if len(figured) else "blind"
        row["note"] = _note(est, t, row, "route")
        if row["days"] == 0:
            row["true_per_day"] = t.mean()
        row["pass_r"] = _passed(row["r"], row["r"] >= TARGETS.presence_r)
        row["pass_weekly_ape"] = _passed(row["weekly_ape"], row["weekly_ape"] <= TARGETS.presence_weekly_ape)
        rows.append(row)
    return _frame(rows, PRESENCE_COLUMNS)


def crossing_scores(people: pd.DataFrame, truth: dict[str, pd.DataFrame], days: pd.DatetimeIndex) -> pd.DataFrame:
    """CROSSING_COLUMNS per crossing point of the gold table over ``days``; ``rank`` orders the arrival points
    (every role but departure) by their true arrivals over ``days`` (1 the busiest), NA for departure points and
    points with no true arrivals."""
    crossing = people[people["measure"] == CROSSING]
    true = _true_per_point(truth)
    rows = []
    points = crossing[["route_id", "crossing_point_id", "role"]].drop_duplicates(["route_id", "crossing_point_id"])
    for point in points.sort_values(["route_id", "crossing_point_id"]).itertuples(index=False):
        name = truth_table_for(point.role)
        key = (point.route_id, point.crossing_point_id)
        t = true[name].loc[key].reindex(days) if key in true[name].index else pd.Series(np.nan, index=days)
        est = crossing[(crossing["route_id"] == point.route_id) & (crossing["crossing_point_id"] == key[1])]
        row = {**point._asdict(), "truth": name, **score_days(_by_day(est, days), t)}
        row["note"] = _note(est, t, row, "point")
        row["total"] = t.sum()  # over the range, to rank the busiest
        if row["days"] == 0:
            row["true_per_day"] = t.mean()
        lo, hi = TARGETS.crossing_coverage80
        row["pass_r"] = _passed(row["r"], row["r"] >= TARGETS.crossing_r)
        row["pass_weekly_ape"] = _passed(row["weekly_ape"], row["weekly_ape"] <= TARGETS.crossing_weekly_ape)
        row["pass_coverage80"] = _passed(row["coverage80"], lo <= row["coverage80"] <= hi)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return _frame(rows, CROSSING_COLUMNS)
    arrivals = frame[(frame["truth"] == "arrivals") & (frame["total"] > 0)]
    ranks = arrivals.sort_values(["total", "crossing_point_id"], ascending=[False, True]).index
    frame["rank"] = pd.Series(range(1, len(ranks) + 1), index=ranks, dtype="Int64")
    return _frame(frame.to_dict("records"), CROSSING_COLUMNS)


def _by_day(est: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    return est.drop_duplicates("date", keep="last").set_index("date")[["people", "lo80", "hi80"]].reindex(days)


def _note(est: pd.DataFrame, true: pd.Series, row: dict, what: str) -> str:
    if est.empty:
        return f"no estimate: the {what} is not in the gold people table"
    if est["people"].isna().all():
        return f"blind: the model does not measure this {what}"
    if true.isna().all():
        return "no truth for these days"
    if row["days"] == 0:
        return "no day with both an estimate and the truth"
    return ""


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column.startswith("pass_"):
            frame[column] = frame[column].astype("boolean")
    for column in ("days", "weeks"):
        if column in frame:
            frame[column] = frame[column].astype("int64")
    if "rank" in frame:
        frame["rank"] = frame["rank"].astype("Int64")
    return frame


def _series_truth(
    forecasts: pd.DataFrame, people: pd.DataFrame, truth: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Per people series of the release: its keys (series_id, level, route_id, crossing_point_id, role) and its true
    daily values (people on the route, or the point's arrivals or departures)."""
    roles = (
        people[people["measure"] == CROSSING]
        .drop_duplicates(["route_id", "crossing_point_id"])
        .set_index(["route_id", "crossing_point_id"])["role"]
    )
    per_route, per_point = _true_per_route(truth), _true_per_point(truth)
    keys, values = [], {}
    for (series_id, level, route_id), _ in forecasts.groupby(["series_id", "level", "route_id"]):
        point, role = None, None
        if level == "route":
            true = per_route.loc[route_id] if route_id in per_route.index else pd.Series(dtype="float64")
        else:  # people/point:<route>/<crossing point>
            point = crossing_point_of(series_id)
            role = roles.get((route_id, point))
            name = truth_table_for(role)
            found = (route_id, point) in per_point[name].index
            true = per_point[name].loc[(route_id, point)] if found else pd.Series(dtype="float64")
        keys.append(
            {"series_id": series_id, "level": level, "route_id": route_id, "crossing_point_id": point, "role": role}
        )
        values[series_id] = true
    return pd.DataFrame(keys), values


def forecast_scores(
    release: PublishedPeople, people: pd.DataFrame, truth: dict[str, pd.DataFrame], date_to: dt.date | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """FORECAST_SCORE_COLUMNS per people series of ``release`` and horizon bucket, and notes.

    Scored on the days after the release's ``as_of`` up to ``date_to`` (default: all) that the truth covers. The
    naive forecast is the last value of the series' published history (at or before ``as_of``); the seasonal naive
    is the history's value on the same weekday of the last observed week (ds minus 7 days, 14 days beyond the first
    week, and so on). ``mae_ratio`` is the model's MAE over the better of the two baselines' MAE. The ``*_7d``
    columns (on the 1-7 row) compare the forecast's next-7-day total with the true total when the truth covers all
    seven days. ``pass_mae_ratio`` holds the next-7-day target for arrival points only.
    """
    as_of = pd.Timestamp(release.as_of)
    last_true = max((t["date"].max() for t in truth.values() if len(t)), default=pd.NaT)
    if release.forecasts.empty:
        return _frame([], FORECAST_SCORE_COLUMNS), [f"release {release.release_id} has no people forecasts"]
    if pd.isna(last_true) or last_true <= as_of or (date_to is not None and pd.Timestamp(date_to) <= as_of):
        ends = "no truth" if pd.isna(last_true) else f"the truth ends {last_true:%Y-%m-%d}"
        return _frame([], FORECAST_SCORE_COLUMNS), [
            f"no truth after as_of {release.as_of} of release {release.release_id} ({ends}): forecasts not scored"
        ]
    keys, true_by_series = _series_truth(release.forecasts, people, truth)
    history = release.history.set_index(["series_id", "ds"])["y"].sort_index()
    week_totals = {t.series_id: t for t in release.totals.itertuples(index=False)}
    rows = []
    for key in keys.itertuples(index=False):
        fc = release.forecasts[release.forecasts["series_id"] == key.series_id].set_index("ds").sort_index()
        fc = fc[fc.index > as_of]
        if date_to is not None:
            fc = fc[fc.index <= pd.Timestamp(date_to)]
        true = true_by_series[key.series_id].reindex(fc.index)
        past = history.loc[key.series_id] if key.series_id in history.index.get_level_values(0) else pd.Series()
        past = past[past.index <= as_of]
        ahead = pd.Series((fc.index - as_of).days, index=fc.index)
        naive = pd.Series(past.iloc[-1] if len(past) else np.nan, index=fc.index)
        weeks_back = pd.to_timedelta(7 * np.ceil(ahead.to_numpy() / 7), unit="D")
        seasonal = pd.Series(past.reindex(fc.index - weeks_back).to_numpy(), index=fc.index)
        for label, first, last in HORIZONS:
            days = ahead[(ahead >= first) & (ahead <= last)].index
            days = days[true.reindex(days).notna()]
            row = {**key._asdict(), "horizon": label, "days": len(days), "true_per_day": true[days].mean()}
            y = true[days]
            row["mae"] = _mae(fc["yhat"][days], y)
            row["mae_naive"] = _mae(naive[days], y)
            row["mae_seasonal_naive"] = _mae(seasonal[days], y)
            best = np.nanmin([row["mae_naive"], row["mae_seasonal_naive"], np.inf])
            row["mae_ratio"] = row["mae"] / best if 0 < best < np.inf else float("nan")
            row["coverage80"] = coverage(y, fc["lo80"][days], fc["hi80"][days]) if len(days) else float("nan")
            row["coverage95"] = coverage(y, fc["lo95"][days], fc["hi95"][days]) if len(days) else float("nan")
            row["true_7d"] = row["yhat_7d"] = row["ape_7d"] = row["in80_7d"] = row["in95_7d"] = float("nan")
            if label == HORIZONS[0][0] and len(days) == last:
                row["true_7d"], row["yhat_7d"] = float(y.sum()), float(fc["yhat"][days].sum())
                if row["true_7d"] > 0:
                    row["ape_7d"] = abs(row["yhat_7d"] - row["true_7d"]) / row["true_7d"]
                total = week_totals.get(key.series_id)
                if total is not None and total.start == days[0]:
                    row["in80_7d"] = float(total.lo80 <= row["true_7d"] <= total.hi80)
                    row["in95_7d"] = float(total.lo95 <= row["true_7d"] <= total.hi95)
            arrival_point = key.level == "point" and truth_table_for(key.role) == "arrivals"
            row["pass_mae_ratio"] = (
                _passed(row["mae_ratio"], row["mae_ratio"] <= TARGETS.forecast_mae_ratio)
                if arrival_point and label == HORIZONS[0][0]
                else pd.NA
            )
            if row["days"]:
                rows.append(row)
    notes = [] if rows else [f"no day after as_of {release.as_of} with both a forecast and the truth"]
    return _frame(rows, FORECAST_SCORE_COLUMNS), notes


def _mae(forecast: pd.Series, true: pd.Series) -> float:
    errors = (forecast - true).abs().dropna()
    return float(errors.mean()) if len(errors) else float("nan")


def score_against_truth(
    settings: JobSettings,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    release_id: str | None = None,
) -> Scores:
    """The three score tables over ``date_from .. date_to`` (default: the days both the gold people table and the
    truth cover), and the forecasts of ``release_id`` (default the current release) on the days after its ``as_of``
    up to ``date_to``.

    :class:`TruthMissing` without a simulated truth, :class:`PeopleMissing` without the gold people table.
    """
    truth = read_truth(settings)
    people = read_people(settings)
    notes: list[str] = []
    covered = truth["segment_people"]["date"]
    first = max(people["date"].min(), covered.min()) if len(covered) else people["date"].min()
    last = min(people["date"].max(), covered.max()) if len(covered) else people["date"].max()
    first = max(first, pd.Timestamp(date_from)) if date_from else first
    last = min(last, pd.Timestamp(date_to)) if date_to else last
    days = pd.date_range(first, last, freq="D")
    if days.empty:
        notes.append(f"no day with both gold people and the truth in {date_from or '…'} .. {date_to or '…'}")
    release = read_release(settings, release_id)
    if release is None:
        forecasts, release_notes = (
            _frame([], FORECAST_SCORE_COLUMNS),
            ["no release published yet: forecasts not scored"],
        )
    else:
        forecasts, release_notes = forecast_scores(release, people, truth, date_to)
    return Scores(
        date_from=first.date(),
        date_to=last.date(),
        presence=presence_scores(people, truth, days),
        crossing=crossing_scores(people, truth, days),
        forecasts=forecasts,
        release_id=None if release is None else release.release_id,
        as_of=None if release is None else release.as_of,
        notes=notes + release_notes,
    )


# --- MLflow --------------------------------------------------------------------------------------------------------


def summary_metrics(scores: Scores) -> dict[str, float]:
    """The finite figures as MLflow metrics: ``truth.presence.<figure>.<route>``,
    ``truth.crossing.<figure>.<point>``, ``truth.forecast.<figure>.h<bucket>.<route>[.<point>]`` and the counts of
    targets met (``truth.targets.<target>.passed`` out of ``.scored``)."""
    out: dict[str, float] = {}
    for row in scores.presence.itertuples():
        for figure in ("r", "weekly_ape", "coverage80", "true_per_day", "est_per_day"):
            out[f"truth.presence.{figure}.{row.route_id}"] = getattr(row, figure)
    for row in scores.crossing.itertuples():
        for figure in ("r", "weekly_ape", "coverage80", "true_per_day", "est_per_day"):
            out[f"truth.crossing.{figure}.{row.crossing_point_id}"] = getattr(row, figure)
    for row in scores.forecasts.itertuples():
        name = row.route_id if row.level == "route" else f"{row.route_id}.{row.crossing_point_id}"
        for figure in ("mae", "mae_ratio", "coverage80", "coverage95", "ape_7d", "in80_7d", "in95_7d"):
            out[f"truth.forecast.{figure}.h{row.horizon}.{name}"] = getattr(row, figure)
    busiest = scores.busiest()
    for target, column in (
        ("presence_r", scores.presence["pass_r"]),
        ("presence_weekly_ape", scores.presence["pass_weekly_ape"]),
        ("busiest_r", busiest["pass_r"]),
        ("busiest_weekly_ape", busiest["pass_weekly_ape"]),
        ("busiest_coverage80", busiest["pass_coverage80"]),
        ("forecast_mae_ratio", scores.forecasts["pass_mae_ratio"]),
    ):
        out[f"truth.targets.{target}.passed"] = float(column.sum())
        out[f"truth.targets.{target}.scored"] = float(column.notna().sum())
    return {k: float(v) for k, v in out.items() if v is not None and not pd.isna(v) and math.isfinite(v)}


def markdown(frame: pd.DataFrame) -> str:
    """A table as markdown, floats to 2 decimals, NA as a blank."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.itertuples(index=False):
        cells = ["" if pd.isna(v) else f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def log_to_mlflow(
    scores: Scores, tracking_uri: str, *, run_id: str | None = None, experiment: str | None = None
) -> str:
    """Log ``scores`` into the run ``run_id``, or a new run of ``experiment``; return the run's id.

    Logs :func:`summary_metrics`, the tags ``truth.date_from``, ``truth.date_to`` and ``truth.release_id``, and
    under ``truth/`` the tables as CSV and one ``scores.md``. Exactly one of ``run_id`` and ``experiment``.
    """
    from mlflow.tracking import MlflowClient

    from forecasting.tracking import artifact_location_for

    if (run_id is None) == (experiment is None):
        raise ValueError("log_to_mlflow: give exactly one of run_id (an existing run) and experiment (a new run)")
    client = MlflowClient(tracking_uri=tracking_uri)
    if run_id is not None:
        _log_scores(client, run_id, scores)
        return run_id
    found = client.get_experiment_by_name(experiment)
    if found is not None and found.lifecycle_stage != "active":
        raise ValueError(f"MLflow experiment {experiment!r} at {tracking_uri} is deleted; restore it or log elsewhere")
    experiment_id = (
        found.experiment_id
        if found is not None
        else client.create_experiment(experiment, artifact_location=artifact_location_for(tracking_uri))
    )
    run_id = client.create_run(experiment_id, run_name=f"truth {scores.date_to}").info.run_id
    try:
        _log_scores(client, run_id, scores)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def _log_scores(client: MlflowClient, run_id: str, scores: Scores) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    metrics = [Metric(key, value, now, 0) for key, value in sorted(summary_metrics(scores).items())]
    tags = [
        RunTag("truth.date_from", str(scores.date_from)),
        RunTag("truth.date_to", str(scores.date_to)),
        RunTag("truth.release_id", scores.release_id or ""),
    ]
    client.log_batch(run_id, tags=tags)
    for start in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 values per batch
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    with tempfile.TemporaryDirectory(prefix="routecast-truth-") as tmp:
        folder = Path(tmp)
        for name in ("presence", "crossing", "forecasts"):
            getattr(scores, name).to_csv(folder / f"{name}.csv", index=False)
        (folder / "scores.md").write_text(scores_markdown(scores))
        for path in sorted(folder.iterdir()):
            client.log_artifact(run_id, str(path), artifact_path="truth")


def scores_markdown(scores: Scores) -> str:
    """The three tables and the notes as one markdown document."""
    parts = [f"# People against the simulated truth, {scores.date_from} .. {scores.date_to}\n"]
    parts += ["## Presence per route (people on the route per day)\n", markdown(scores.presence)]
    parts += ["## Crossing per point (people crossing per day)\n", markdown(scores.crossing)]
    release = f"release {scores.release_id}, as of {scores.as_of}" if scores.release_id else "no release"
    parts += [f"## Forecasts of the people series ({release})\n", markdown(scores.forecasts)]
    parts += [f"- {note}\n" for note in scores.notes]
    return "\n".join(parts)


def score_and_log(settings: JobSettings, run_date: dt.date, mlflow_run_id: str) -> Scores | None:
    """For the nightly run: score the days up to ``run_date`` and log them into the run ``mlflow_run_id``.

    None, and nothing logged, when the world was not simulated or the gold people table is missing.
    """
    try:
        scores = score_against_truth(settings, date_to=run_date)
    except (TruthMissing, PeopleMissing):
        return None
    log_to_mlflow(scores, settings.tracking_uri, run_id=mlflow_run_id)
    return scores


# --- For the terminal ----------------------------------------------------------------------------------------------


def _num(value: object, digits: int = 2) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:,.{digits}f}"


def _mark(value: object) -> Text:
    return Text("–") if value is None or pd.isna(value) else Text("✓", "green") if value else Text("✗", "red")


_TEXT_COLUMNS = {"route", "feature", "point", "role", "series", "days ahead", "note"}


def _table(title: str, columns: list[str], caption: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in _TEXT_COLUMNS else "right", no_wrap=True)
    return table


def printable(scores: Scores) -> list[Table | str]:
    """What ``routecast truth`` prints: rich tables of presence per route, the busiest arrival points, the
    other crossing points summed up, the forecasts, the notes, and one line counting what meets the targets (plain
    text, no markup: print with ``markup=False``)."""
    t = TARGETS
    span = f"{scores.date_from} .. {scores.date_to}"
    presence = _table(
        f"Presence per route: people on the route per day, {span}",
        ["route", "feature", "days", "true people/day", "est. people/day", "r", "weeks", "weekly APE", "80 % cov."]
        + [f"r ≥ {t.presence_r:g}", f"APE ≤ {t.presence_weekly_ape:g}", "note"],
    )
    for r in scores.presence.itertuples():
        presence.add_row(
            r.route_id,
            r.feature,
            str(r.days),
            _num(r.true_per_day, 1),
            _num(r.est_per_day, 1),
            _num(r.r),
            str(r.weeks),
            _num(r.weekly_ape),
            _num(r.coverage80),
            _mark(r.pass_r),
            _mark(r.pass_weekly_ape),
            r.note,
        )
    lo, hi = t.crossing_coverage80
    busiest = scores.busiest()
    crossing = _table(
        f"Crossing: the {t.busiest} busiest arrival points, people crossing per day, {span}",
        ["rank", "point", "route", "role", "days", "true people/day", "est. people/day", "r", "weekly APE"]
        + ["80 % cov.", f"r ≥ {t.crossing_r:g}", f"APE ≤ {t.crossing_weekly_ape:g}", f"cov. in [{lo:g}, {hi:g}]"]
        + ["note"],
    )
    for r in busiest.itertuples():
        crossing.add_row(
            str(r.rank),
            r.crossing_point_id,
            r.route_id,
            r.role,
            str(r.days),
            _num(r.true_per_day, 1),
            _num(r.est_per_day, 1),
            _num(r.r),
            _num(r.weekly_ape),
            _num(r.coverage80),
            _mark(r.pass_r),
            _mark(r.pass_weekly_ape),
            _mark(r.pass_coverage80),
            r.note,
        )
    rest = scores.crossing[~scores.crossing["crossing_point_id"].isin(busiest["crossing_point_id"])]
    scored = rest[rest["days"] > 0]
    rest_line = (
        f"The other {len(rest)} crossing points ({int((rest['truth'] == 'departures').sum())} departure points, "
        f"scored against departures): {len(scored)} scored, {len(rest) - len(scored)} without a figure; "
        f"median r {_num(scored['r'].median())}, median weekly APE {_num(scored['weekly_ape'].median())}, "
        f"median 80 % coverage {_num(scored['coverage80'].median())}, "
        f"true {_num(scored['true_per_day'].sum(), 1)} people/day in all."
    )
    out: list[Table | str] = [presence, crossing, rest_line]
    release = f"release {scores.release_id} (as of {scores.as_of})" if scores.release_id else "no release"
    if not scores.forecasts.empty:
        # The routes' series and the busiest arrival points', in that order; the others summed up in one line.
        order = {p: i for i, p in enumerate(busiest["crossing_point_id"])}
        fc = scores.forecasts.assign(
            order=lambda f: np.where(f["level"] == "route", -1, f["crossing_point_id"].map(order).fillna(len(order)))
        )
        shown = fc[fc["order"] < len(order)].sort_values(["order", "series_id", "horizon"], kind="stable")
        forecasts = _table(
            f"Forecasts of the people series of {release} against the truth (MAE in people per day): the routes "
            f"and the {t.busiest} busiest arrival points",
            ["series", "days ahead", "days", "true/day", "MAE", "naive", "seasonal naive", "MAE / best naive"]
            + [
                "80 % cov.",
                "95 % cov.",
                "7-day true",
                "7-day fcst",
                "7-day APE",
                "7-day in 80 %",
                f"≤ {t.forecast_mae_ratio:g} × naive",
            ],
            caption="naive: the last published value; seasonal naive: the same weekday of the last published week; "
            "7-day totals in people; 7-day in 80 %: the true total inside the published total's 80 % interval "
            "(95 %: inside the 95 % one only; –: no published total)",
        )
        for r in shown.itertuples():
            forecasts.add_row(
                r.series_id,
                r.horizon,
                str(r.days),
                _num(r.true_per_day, 1),
                _num(r.mae),
                _num(r.mae_naive),
                _num(r.mae_seasonal_naive),
                _num(r.mae_ratio),
                _num(r.coverage80),
                _num(r.coverage95),
                _num(r.true_7d, 0),
                _num(r.yhat_7d, 0),
                _num(r.ape_7d),
                _inside(r.in80_7d, r.in95_7d),
                _mark(r.pass_mae_ratio),
            )
        out.append(forecasts)
        others = fc[fc["order"] >= len(order)]
        if len(others):
            first = others[others["horizon"] == HORIZONS[0][0]]
            target = first["pass_mae_ratio"]
            out.append(
                f"The other {others['series_id'].nunique()} point series: median MAE / best naive "
                f"{_num(first['mae_ratio'].median())} over days 1-7, {_num(others['mae_ratio'].median())} over all; "
                f"{int(target.sum())} of {int(target.notna().sum())} arrival points within "
                f"{t.forecast_mae_ratio:g} × the better naive over days 1-7."
            )
        week = fc[(fc["horizon"] == HORIZONS[0][0]) & fc["in80_7d"].notna()]
        if len(week):
            out.append(
                f"Published 7-day totals: the true total inside the 80 % interval for {int(week['in80_7d'].sum())} "
                f"and inside the 95 % interval for {int(week['in95_7d'].sum())} of {len(week)} series."
            )
    out += [f"note: {note}" for note in scores.notes]
    out.append(_targets_line(scores))
    return out


def _inside(in80: float, in95: float) -> str:
    """✓ inside the 80 % interval, "95 %" inside the 95 % one only, ✗ outside both, – no published total."""
    if pd.isna(in80):
        return "–"
    return "✓" if in80 else "95 %" if in95 else "✗"


def _targets_line(scores: Scores) -> str:
    busiest = scores.busiest()
    parts = []
    for label, frame, columns in (
        ("presence (r and weekly APE)", scores.presence, ["pass_r", "pass_weekly_ape"]),
        (
            f"the {TARGETS.busiest} busiest arrival points (r, weekly APE, coverage)",
            busiest,
            ["pass_r", "pass_weekly_ape", "pass_coverage80"],
        ),
        ("next-7-day arrival forecasts (MAE against the better naive)", scores.forecasts, ["pass_mae_ratio"]),
    ):
        marks = frame[columns]
        scored = marks.notna().all(axis=1)
        passed = marks[scored].all(axis=1).sum()
        parts.append(f"{label}: {passed} of {scored.sum()} meet every target")
    return "targets — " + "; ".join(parts)
