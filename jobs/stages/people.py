"""People: the density split by home-network group → people present and people crossing, in gold.

Every density figure counts phones, most of them residents'. This stage runs the measurement model of
``forecasting.people`` on what the pipeline has published, and writes what it estimates in **people**:

Signal
    Per (route, segment, day): the published devices of each home-network group on the segment's cells at
    ``h3_res`` (silver ``density_by_group``) and the published total (silver ``density``) — only rows above
    ``min_devices``, as the series count them. The MCC never reaches this stage (bronze keeps it).
Coarse figures
    The official counts ingested into gold (``routecast ingest-counts``): route-level monthly arrivals of the
    ``monthly_sources`` (Frontex) and daily arrivals of the ``daily_sources`` (the UK's Channel arrivals), only
    periods that ended on or before the run date. The model is fitted on these and nothing else. Monthly arrivals
    per landing place (``point_sources``) only split a route's arrivals among its entry points.
Priors
    ``people.toml`` beside this module (or ``ROUTECAST_PEOPLE_CONFIG``): W of Little's law per route, the sources,
    what a route nobody can see publishes, the window of the crossing points' shares.
Present (a stock)
    People on each route and segment per day with an 80 % interval (``forecasting.people.estimate``). A blind
    route (no roaming group seen, or no coarse figure overlapping its signal) gets missing people, never 0.
Crossing (a flow)
    People crossing at each entry point (``geo.entry``: where people enter the EU or the UK and official statistics
    count arrivals) and each departure point per day: the route's flow by Little's law (people present ÷ W) times
    the point's share. The people present lead the arrivals they make by W/2 days (Little's law as the model is
    fitted), so day t's crossings come from day t − W/2's people, and the people seen on the run date give the
    crossings of the next W/2 days (``measure="ahead"``): a leading indicator the forecast stage uses for those days
    of the point series. Transit borders and hubs get no figure. The share, in this order (``feature`` says which):

    - an entry point with **monthly landings per place** (``point_sources``: Greece per island, Spain per island and
      city, Italy per region): its share of the route's arrivals over the last ``share_months`` months published
      before the day's month (before the first one: the first months, flagged); the interval adds the share's
      month-to-month error to the route's. The entry points without such a figure (land borders) share what the
      landing places leave;
    - otherwise **its segment's share** of the route's people over the last ``share_days`` days, split evenly among
      the points of the same kind (arrival or departure) on one segment; where none of a kind's segments is seen,
      the kind's points share evenly, and where some are, a point on a segment nobody is seen on has no figure. The
      interval is the route's, scaled: it does not cover an error in the share. The phones cannot tell the
      landings apart (nothing is seen at sea, and the places migrants wait in hold foreign workers too), so on
      the simulated world this share is often far off (experiments/people-model/README.md).

    On the days a **daily count** covers (``daily_sources``: the UK's Channel arrivals), an entry point's crossings
    are the day's count times its share instead of the phones' flow: boats leave on good-weather days, and only a
    count follows them. A **departure point** whose boats reach entry points with published landings
    (``jobs.scenario_network.sea_feeders``) crosses an equal part of those landings the same day: no official
    figure says which beach a boat left from, but the landings bound what left.

Outputs
    gold ``people`` (``contracts.schemas.PEOPLE``), the gold series of source ``people`` (route, segment and point
    levels, the days with an estimate; the forecast stage forecasts them like any series) and
    ``gold/people_model.json``: the fitted parameters per route, the priors and the coarse figures' spans, with a
    ``model_id`` every people row carries (publish puts it in the release's manifest, the lineage).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from contracts import tables
from contracts.schemas import AHEAD, CROSSING, PRESENT
from contracts.series import PEOPLE_SOURCE, crossing_point_of, series_id
from forecasting.people import UNIT, PeopleModel, PeopleModelConfig, RouteParams
from geo.catalogue import Catalogue, load_catalogue
from geo.entry import route_entry_points
from jobs import lake
from jobs.scenario_network import sea_feeders
from jobs.schemas import PEOPLE, SERIES
from jobs.settings import JobSettings
from jobs.stages.series import cell_segments_frame

DEFAULT_CONFIG = Path(__file__).with_name("people.toml")
MODEL_FILE = "people_model.json"
POINT_COLUMNS = ("month", "route_id", "crossing_point_id", "arrivals")


class PeopleConfigError(ValueError):
    """The priors file is missing, unreadable or invalid; the message names the file and the key."""


@dataclass(frozen=True)
class PeoplePriors:
    """The measurement model's priors and sources (``people.toml``)."""

    days_on_route: dict[str, float]
    monthly_sources: tuple[str, ...] = ("frontex",)
    daily_sources: tuple[str, ...] = ("uk-channel",)
    unseen: str = "blind"
    share_days: int = 28
    min_signal: float = 30.0
    point_sources: tuple[str, ...] = ("landings",)
    share_months: int = 3


def load_priors(path: Path | None = None) -> PeoplePriors:
    """Read and check the priors file (default: ``people.toml`` beside this module)."""
    path = path or DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PeopleConfigError(f"{path}: cannot read the people model's priors: {exc}") from exc
    days = raw.get("days_on_route")
    if not isinstance(days, dict) or not days:
        raise PeopleConfigError(f"{path}: [days_on_route] must give W (days, > 0) for at least one route")
    bad = {k: v for k, v in days.items() if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0}
    if bad:
        raise PeopleConfigError(f"{path}: days_on_route must be numbers > 0; got {bad}")
    unseen = raw.get("unseen", "blind")
    if unseen not in ("blind", "excess"):
        raise PeopleConfigError(f"{path}: unseen must be 'blind' or 'excess', got {unseen!r}")
    min_signal = raw.get("min_signal", 30.0)
    if not isinstance(min_signal, int | float) or isinstance(min_signal, bool) or min_signal < 0:
        raise PeopleConfigError(f"{path}: min_signal must be a number of devices ≥ 0, got {min_signal!r}")
    share_days = raw.get("share_days", 28)
    if not isinstance(share_days, int) or isinstance(share_days, bool) or share_days < 1:
        raise PeopleConfigError(f"{path}: share_days must be a whole number ≥ 1, got {share_days!r}")
    share_months = raw.get("share_months", 3)
    if not isinstance(share_months, int) or isinstance(share_months, bool) or share_months < 1:
        raise PeopleConfigError(f"{path}: share_months must be a whole number ≥ 1, got {share_months!r}")
    sources = {}
    for key in ("monthly_sources", "daily_sources", "point_sources"):
        value = raw.get(key, list(getattr(PeoplePriors, key)))
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise PeopleConfigError(f"{path}: {key} must be a list of source names, got {value!r}")
        sources[key] = tuple(value)
    known = {
        "days_on_route",
        "unseen",
        "share_days",
        "share_months",
        "min_signal",
        "monthly_sources",
        "daily_sources",
        "point_sources",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PeopleConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    return PeoplePriors(
        {k: float(v) for k, v in days.items()},
        unseen=unseen,
        share_days=share_days,
        share_months=share_months,
        min_signal=float(min_signal),
        **sources,
    )


@dataclass
class PeopleReport:
    """What one run estimated: rows written, routes measured and blind (with why), the model's id."""

    model_id: str = ""
    present_rows: int = 0
    crossing_rows: int = 0
    ahead_rows: int = 0  # crossings expected after the run date from people already on the route
    series_rows: int = 0
    measured: list[str] = field(default_factory=list)
    blind: dict[str, str] = field(default_factory=dict)  # route -> why
    not_fitted: list[str] = field(default_factory=list)  # routes with signal but no coarse figure
    coarse: str = ""  # the coarse figures fitted on, e.g. "12 monthly, 90 daily"


@dataclass(frozen=True)
class PeopleEstimate:
    """The pandas result of :func:`estimate_people`: gold ``people`` rows, the params and the model's document."""

    rows: pd.DataFrame  # PEOPLE columns
    params: dict[str, RouteParams]
    model: dict


# --- pure part (pandas) ----------------------------------------------------------------------------------------


def _route_flow_shares(present: pd.DataFrame, route, share_days: int) -> pd.DataFrame:
    """Per (date, crossing point) of ``route``: the point's share of the route's arrivals (or departures).

    ``present``: the route's segment rows (``date, segment_id, people``). A point's weight is its segment's mean
    people over the last ``share_days`` days, divided by the points of its kind on that segment; shares are the
    weights over their sum within the kind. Where every weight of a kind is 0 or missing, the kind's points share
    equally; otherwise a point whose segment shows nobody has no share (missing, "not seen"): the signal cannot tell
    a point nobody uses from one it does not see, and 0 with a 0-wide interval would claim to know.
    """
    entries = {p.id for p in route_entry_points(route)}
    kinds = {p.id: "arrival" if p.id in entries else "departure" for p in route.crossing_points}
    points = [p for p in route.crossing_points if p.id in entries or p.role == "departure"]
    if not points:
        return pd.DataFrame(columns=["date", "crossing_point_id", "share", "how"])
    wide = present.pivot_table(index="date", columns="segment_id", values="people", aggfunc="sum")
    wide = wide.sort_index().asfreq("D")
    trailing = wide.rolling(share_days, min_periods=1).mean()
    frames = []
    for kind in ("arrival", "departure"):
        members = [p for p in points if kinds[p.id] == kind]
        if not members:
            continue
        per_segment: dict[str, int] = {}
        for p in members:
            per_segment[p.segment_id] = per_segment.get(p.segment_id, 0) + 1
        weights = pd.DataFrame(
            {
                p.id: (trailing[p.segment_id] if p.segment_id in trailing else pd.Series(0.0, index=trailing.index))
                / per_segment[p.segment_id]
                for p in members
            }
        ).fillna(0.0)
        total = weights.sum(axis=1)
        even = total <= 0
        shares = weights.div(total.where(~even), axis=0).where(weights > 0)
        shares.loc[even, :] = 1.0 / len(members)
        long = shares.stack(future_stack=True).rename("share").reset_index()
        long.columns = ["date", "crossing_point_id", "share"]
        how = long["date"].map(even).map({True: "even split", False: "segment share"})
        long["how"] = how.where(long["share"].notna(), "segment not seen")
        frames.append(long)
    return pd.concat(frames, ignore_index=True)


SHARE_PRIOR_SIGMA = 0.5  # log-scale error of a point's share when fewer than two months say how much it varies
SHARE_SIGMA_MONTHS = 12  # months back the month-to-month variation of a point's share is measured over
_Z80 = NormalDist().inv_cdf(0.9)


def official_point_shares(
    points: pd.DataFrame, monthly: pd.DataFrame, route_id: str, months: pd.DatetimeIndex, share_months: int
) -> pd.DataFrame:
    """Per month of ``months`` and entry point of ``route_id`` with published landings: its share of the route's
    arrivals in the last ``share_months`` months published before that month, and how much it varies.

    ``points``: ``month, route_id, crossing_point_id, arrivals`` (monthly arrivals per landing place); ``monthly``:
    ``month, route_id, arrivals`` (the route's, as Frontex publishes them). The share is the points' arrivals over
    the route's in those months together (a ratio of sums, steadier than a mean of ratios); where the route's figure
    is missing for a month, the published points stand for the whole route that month. Only months before the
    month asked for are used: the figures a month's days are estimated from were published before the day, so a
    figure scored against the truth is never made from that month's own count. The days before the first
    published month (the start of a history) take the first ``share_months`` months instead (``later``): a backcast,
    so that a point's series does not change method where its landings start. ``sigma``: the standard deviation
    of the log share from month to month over the last ``SHARE_SIGMA_MONTHS`` months (``SHARE_PRIOR_SIGMA`` with
    fewer than two). Returns ``month, crossing_point_id, share, sigma, months, remainder, floor, later``, where
    ``remainder`` is what the points without a figure share (the route's arrivals at its land borders),
    ``floor`` the share one more person in those months would make and ``later`` whether the months came after
    the day.
    """
    columns = ["month", "crossing_point_id", "share", "sigma", "months", "remainder", "floor", "later"]
    mine = points[points["route_id"] == route_id]
    if mine.empty:
        return pd.DataFrame(columns=columns)
    wide = mine.pivot_table(index="month", columns="crossing_point_id", values="arrivals", aggfunc="sum")
    wide = wide.sort_index().fillna(0.0)
    totals = monthly[monthly["route_id"] == route_id].groupby("month")["arrivals"].sum().reindex(wide.index)
    totals = totals.where(totals.notna(), wide.sum(axis=1)).clip(lower=wide.sum(axis=1))
    log_share = np.log((wide + 0.5).div(totals + 0.5, axis=0))
    rows = []
    for month in sorted(set(months)):
        before = wide.index < month
        later = not before.any()
        if later:  # a day before the first published month: the first months stand for it (a backcast)
            before = wide.index <= wide.index[min(share_months, len(wide)) - 1]
        used = wide[before].tail(share_months)
        if used.empty:
            continue
        total = float(totals[before].tail(share_months).sum())
        shares = used.sum() / total if total > 0 else used.sum() * 0.0
        varies = log_share[before].tail(SHARE_SIGMA_MONTHS)
        sigma = varies.std(ddof=1) if len(varies) >= 2 else pd.Series(SHARE_PRIOR_SIGMA, index=wide.columns)
        remainder = max(0.0, 1.0 - float(shares.sum()))
        floor = 1.0 / total if total > 0 else 0.0
        rows += [
            (month, point, float(shares[point]), float(sigma[point]), len(used), remainder, floor, later)
            for point in wide.columns
        ]
    return pd.DataFrame(rows, columns=columns)


def _with_official_shares(out: pd.DataFrame, official: pd.DataFrame, arrivals: set[str], sources: str) -> pd.DataFrame:
    """``out`` (one route's crossing rows: ``date`` the crossing day, ``crossing_point_id``, ``share``, ``how``) with
    the entry points' shares taken from the published landings where there are any for the day's month
    (:func:`official_point_shares`); adds ``share_sigma`` and ``share_floor`` (0 where the share is the segment
    rule's). The entry points without a figure share the remainder in proportion to their segment shares."""
    out = out.assign(share_sigma=0.0, share_floor=0.0)
    if official.empty:
        return out
    month = pd.to_datetime(out["date"]).dt.to_period("M").dt.start_time
    keyed = out.assign(month=month).merge(official, on=["month", "crossing_point_id"], how="left", suffixes=("", "_o"))
    covered = keyed["month"].isin(set(official["month"]))
    is_arrival = keyed["crossing_point_id"].isin(arrivals)
    published = covered & is_arrival & keyed["share_o"].notna()
    others = covered & is_arrival & keyed["share_o"].isna()
    remainder = keyed["month"].map(official.groupby("month")["remainder"].first())
    # The points without a figure: their segment shares, renormalised among themselves, times the remainder.
    among = keyed["share"].where(others).groupby(keyed["date"]).transform("sum")
    keyed.loc[others, "share"] = keyed["share"] / among.where(among > 0) * remainder
    keyed.loc[others, "how"] = "segment share of the arrivals no landing figure covers"
    keyed.loc[published, "share"] = keyed["share_o"]
    keyed.loc[published, "share_sigma"] = keyed["sigma"]
    keyed.loc[published, "share_floor"] = keyed["floor"]
    months = keyed["months"].astype("Int64").astype(str)
    keyed.loc[published, "how"] = np.where(
        keyed["later"].eq(True),
        f"share of the {sources} published for the first " + months + " month(s), after the day",
        f"share of the {sources} published for the last " + months + " month(s)",
    )[published.to_numpy()]
    return keyed[list(out.columns)]


def _with_daily_counts(out: pd.DataFrame, daily: pd.DataFrame, arrivals: set[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """``out`` with the entry points' flow (``people, lo80, hi80``) replaced by the route's counted arrivals on the
    days ``daily`` (``date, arrivals``, one route's) covers, and which rows were: the count is what crossed, so only
    the share is uncertain, and a day's share at least ``SHARE_PRIOR_SIGMA`` (a day's boats land at one place or
    another: a day's share varies more than a month's). The phones' flow is smooth; boats leave on the
    good-weather days, and only a daily count follows them."""
    if daily.empty:
        return out, np.zeros(len(out), dtype=bool)
    per_day = daily.assign(date=pd.to_datetime(daily["date"])).groupby("date")["arrivals"].sum()
    count = pd.to_datetime(out["date"]).map(per_day)
    # Only where the route is measured: a blind route stays blind rather than publish a count split by a guess.
    counted = (out["crossing_point_id"].isin(arrivals) & count.notna() & out["people"].notna()).to_numpy()
    out = out.copy()
    for column in ("people", "lo80", "hi80"):
        out.loc[counted, column] = count[counted].astype("float64")
    out.loc[counted, "share_sigma"] = out.loc[counted, "share_sigma"].clip(lower=SHARE_PRIOR_SIGMA)
    return out, counted


def _share_out(out: pd.DataFrame) -> pd.DataFrame:
    """The route's flow (``people, lo80, hi80``) times each row's ``share``. Where the share has an error
    (``share_sigma``), the interval is log-normal with the route's and the share's errors added in the log, and its
    upper bound is at least the flow's for ``share_floor`` (one more person in the months the share came from: a place
    with no landings for months is not known to get none)."""
    flow, lo, hi, share, sigma = (out[c] for c in ("people", "lo80", "hi80", "share", "share_sigma"))
    people = flow * share
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.log(hi / flow) / _Z80
        down = np.log(flow / lo) / _Z80
    combine = (sigma > 0) & (flow > 0) & (lo > 0)
    wide_lo = people * np.exp(-_Z80 * np.sqrt(down**2 + sigma**2))
    wide_hi = people * np.exp(_Z80 * np.sqrt(up**2 + sigma**2))
    upper = wide_hi.where(combine, hi * share)
    floor = out["share_floor"]
    upper = upper.where(~(floor > 0), np.fmax(upper, hi * floor))
    out = out.assign(people=people, lo80=wide_lo.where(combine, lo * share), hi80=upper)
    return out.drop(columns=["share_sigma", "share_floor"])


def _departures_from_landings(out: pd.DataFrame, feeders: Mapping[str, tuple[str, ...]]) -> pd.DataFrame:
    """``out`` (one route's crossing rows in people) with each departure point whose boats reach entry points with
    published landings (``feeders``: departure point → the entry points it reaches, ``jobs.scenario_network.
    sea_feeders``) crossing an equal part of those landings the same day: no official figure says which beach a
    boat left from, so the landing's arrivals are split evenly among the departure points that sail to it, and the
    interval widened by ``SHARE_PRIOR_SIGMA`` for that guess. Only days on which a reached landing's share came from
    the published landings; otherwise the segment rule stands."""
    official = out["how"].str.startswith("share of the", na=False)
    landed = out[official & out["crossing_point_id"].isin({e for es in feeders.values() for e in es})]
    if landed.empty:
        return out
    fed_by = Counter(e for entries in feeders.values() for e in entries)
    widen = math.exp(_Z80 * SHARE_PRIOR_SIGMA)
    by_day = landed.set_index(["date", "crossing_point_id"])[["people", "lo80", "hi80"]]
    out = out.copy()
    for point, entries in feeders.items():
        rows = out["crossing_point_id"] == point
        parts = [
            by_day.xs(e, level="crossing_point_id") / fed_by[e]
            for e in entries
            if e in by_day.index.get_level_values("crossing_point_id")
        ]
        if not parts or not rows.any():
            continue
        part = pd.concat(parts).groupby(level="date").sum(min_count=1)
        on = rows & out["date"].isin(part.index)
        values = part.reindex(out.loc[on, "date"]).to_numpy()
        out.loc[on, "people"] = values[:, 0]
        out.loc[on, "lo80"] = values[:, 1] / widen
        out.loc[on, "hi80"] = values[:, 2] * widen
        names = ", ".join(entries)
        out.loc[on, "how"] = f"an equal part of the landings at {names} its boats reach"
    return out


def lead_days(days_on_route: float) -> int:
    """How many days the people present lead the arrivals they make: W/2 whole days (at least 1).

    Little's law as the model is fitted: the people present on a route over a window are the arrivals per day × W
    of the window W/2 later (``forecasting.people``), so the people seen today arrive, on average, W/2 days on.
    """
    return max(1, int(days_on_route // 2))


def crossing_rows(
    present: pd.DataFrame,
    catalogue: Catalogue,
    params: dict[str, RouteParams],
    share_days: int,
    points: pd.DataFrame | None = None,
    monthly: pd.DataFrame | None = None,
    share_months: int = 3,
    point_sources: str = "landings",
    daily: pd.DataFrame | None = None,
    daily_sources: str = "uk-channel",
) -> pd.DataFrame:
    """People crossing at each entry and departure point per day (see the module's docstring).

    The crossings of day t come from the people present on day t − ``lead_days(W)``, so the people seen on the last
    day give the crossings of the ``lead_days`` days after it: those rows are ``measure="ahead"`` (an expectation
    from people already on the route, not an estimate of a day that happened). ``points`` (monthly arrivals per
    landing place) and ``monthly`` (the routes' monthly arrivals) give the entry points their shares where they are
    published (:func:`official_point_shares`); the interval then also carries the share's month-to-month error.
    ``daily`` (``date, route_id, arrivals``: a route's arrivals counted each day, as the UK counts the Channel's)
    replaces the flow on the days it covers: an entry point's crossings are then the day's count times its share,
    with the share's error alone (:func:`_with_daily_counts`).
    """
    daily = daily if daily is not None else pd.DataFrame(columns=["date", "route_id", "arrivals"])
    points = points if points is not None else pd.DataFrame(columns=list(POINT_COLUMNS))
    monthly = monthly if monthly is not None else pd.DataFrame(columns=["month", "route_id", "arrivals"])
    by_route = {r.id: r for r in catalogue}
    frames = []
    for route_id, p in params.items():
        route = by_route.get(route_id)
        if route is None or not math.isfinite(p.days_on_route):
            continue  # not in the catalogue, or blind for want of a W: no flow to share out
        rows = present[present["route_id"] == route_id]
        totals = rows[rows["segment_id"].isna()].set_index("date")
        segments = rows[rows["segment_id"].notna()]
        shares = _route_flow_shares(segments, route, share_days)
        if shares.empty:
            continue
        flow = totals[["people", "lo80", "hi80"]] / p.days_on_route
        out = shares.merge(flow, left_on="date", right_index=True, how="inner")
        last = out["date"].max()
        out["date"] = out["date"] + pd.Timedelta(days=lead_days(p.days_on_route))
        months = pd.DatetimeIndex(out["date"]).to_period("M").start_time.unique()
        official = official_point_shares(points, monthly, route_id, months, share_months)
        arrivals = {cp.id for cp in route_entry_points(route)}
        out = _with_official_shares(out, official, arrivals, point_sources)
        out, counted = _with_daily_counts(out, daily[daily["route_id"] == route_id], arrivals)
        out = _share_out(out)
        out = _departures_from_landings(out, sea_feeders(route, arrivals))
        out["route_id"] = route_id
        out["segment_id"] = out["crossing_point_id"].map({cp.id: cp.segment_id for cp in route.crossing_points})
        out["role"] = out["crossing_point_id"].map({cp.id: cp.role for cp in route.crossing_points})
        out["measure"] = np.where(out["date"] > last, AHEAD, CROSSING)
        feature = p.feature or "none"
        out["feature"] = np.where(counted, f"official daily arrivals ({daily_sources}) × ", f"{feature} / W, ")
        out["feature"] = out["feature"] + out["how"]
        frames.append(out)
    if not frames:
        return pd.DataFrame(columns=list(PEOPLE.names))
    return pd.concat(frames, ignore_index=True)


def estimate_people(
    signal: pd.DataFrame,
    monthly: pd.DataFrame,
    daily: pd.DataFrame,
    priors: PeoplePriors,
    catalogue: Catalogue,
    points: pd.DataFrame | None = None,
) -> PeopleEstimate:
    """Fit the measurement model on the coarse figures and estimate people present and crossing.

    ``signal``: ``date, route_id, segment_id, group, devices`` (``forecasting.people``); ``monthly``: ``month,
    route_id, arrivals``; ``daily``: ``date, route_id, arrivals``; ``points`` (optional): ``month, route_id,
    crossing_point_id, arrivals``, the monthly landings per place that split a route's arrivals among its entry
    points. Routes with signal but no coarse figure are not estimated; a route whose figures cannot be fitted is
    blind with the reason (``RouteParams.reason``).
    """
    points = points if points is not None else pd.DataFrame(columns=list(POINT_COLUMNS))
    config = PeopleModelConfig(unseen=priors.unseen, min_signal=priors.min_signal)
    model = PeopleModel(config).fit(signal, monthly, priors.days_on_route, daily, unfittable="blind")
    present = pd.concat([model.estimate(signal, by="route"), model.estimate(signal, by="segment")], ignore_index=True)
    present["segment_id"] = present["segment_id"].replace("", None)
    present["date"] = pd.to_datetime(present["date"])
    document = model_document(model.params_, priors, monthly, daily, points)
    crossing = crossing_rows(
        present,
        catalogue,
        model.params_,
        priors.share_days,
        points=points,
        monthly=monthly,
        share_months=priors.share_months,
        point_sources=" and ".join(priors.point_sources) or "landings",
        daily=daily,
        daily_sources=", ".join(priors.daily_sources),
    )
    present = present.assign(crossing_point_id=None, role=None, measure=PRESENT)
    rows = pd.concat([present, crossing], ignore_index=True)
    rows["model_id"] = document["model_id"]
    rows["date"] = pd.to_datetime(rows["date"]).dt.date
    for column in ("people", "lo80", "hi80"):
        rows[column] = rows[column].astype("float64")
    return PeopleEstimate(rows[list(PEOPLE.names)], model.params_, document)


def _span(frame: pd.DataFrame, column: str) -> str | None:
    if frame.empty:
        return None
    days = pd.to_datetime(frame[column])
    return f"{days.min():%Y-%m-%d}..{days.max():%Y-%m-%d}"


def model_document(
    params: dict[str, RouteParams],
    priors: PeoplePriors,
    monthly: pd.DataFrame,
    daily: pd.DataFrame,
    points: pd.DataFrame | None = None,
) -> dict:
    """What made the people figures, as JSON: per route the fitted parameters, the priors, the coarse figures'
    spans; ``model_id`` is a digest of all of it, so a figure names the exact model that made it."""

    def clean(value: float) -> float | None:
        return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value

    routes = {
        r: {
            "feature": p.feature,
            "scale": clean(p.scale),
            "days_on_route": clean(p.days_on_route),
            "sigma_log": clean(p.sigma_log),
            "fitted_on": p.fitted_on,
            "periods": p.periods,
            "reason": p.reason,
            "blind": p.blind,
            "errors": {k: clean(v) for k, v in p.errors.items()},
        }
        for r, p in sorted(params.items())
    }
    body = {
        "unit": UNIT,
        "model": "forecasting.people (level or excess of the home-network groups × scale, Little's law)",
        "routes": routes,
        "priors": asdict(priors),
        "fitted_on": {
            "monthly": _span(monthly, "month"),
            "daily": _span(daily, "date"),
            **({"points": _span(points, "month")} if points is not None and len(points) else {}),
        },
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return {"model_id": f"people-{digest}", **body}


def people_series(rows: pd.DataFrame) -> pd.DataFrame:
    """The gold series of source ``people``: route and segment presence, point crossings (days with an estimate)."""
    known = rows[rows["people"].notna()]
    present = known[known["measure"] == PRESENT]
    crossing = known[known["measure"] == CROSSING]
    out = pd.DataFrame(
        {
            "series_id": [
                series_id("route", r, source=PEOPLE_SOURCE) if s is None else series_id("segment", r, s, PEOPLE_SOURCE)
                for r, s in zip(present["route_id"], present["segment_id"], strict=True)
            ]
            + [
                series_id("point", r, s, PEOPLE_SOURCE, crossing_point=c)
                for r, s, c in zip(
                    crossing["route_id"], crossing["segment_id"], crossing["crossing_point_id"], strict=True
                )
            ],
            "level": ["route" if s is None else "segment" for s in present["segment_id"]] + ["point"] * len(crossing),
            "route_id": list(present["route_id"]) + list(crossing["route_id"]),
            "segment_id": list(present["segment_id"]) + list(crossing["segment_id"]),
            "ds": list(present["date"]) + list(crossing["date"]),
            "y": list(present["people"]) + list(crossing["people"]),
        }
    )
    out["freq"] = "D"
    out["source"] = PEOPLE_SOURCE
    return out


# --- Spark part: read what was published, write gold ------------------------------------------------------------


def read_signal(spark: SparkSession, settings: JobSettings, catalogue: Catalogue, end: dt.date) -> pd.DataFrame:
    """Per (date, route, segment, group): the published devices of each group and the total, up to ``end``."""
    cells = cell_segments_frame(spark, catalogue, settings.h3_res)

    def published(df: DataFrame) -> DataFrame:
        return df.where(
            (F.col("res") == settings.h3_res)
            & (F.col("date") <= F.lit(end))
            & (F.col("devices") > F.lit(settings.min_devices))
        ).join(F.broadcast(cells), "cell")

    keys = ["date", "route_id", "segment_id", "group"]
    groups = published(lake.read(spark, settings, tables.DENSITY_BY_GROUP))
    total = published(lake.read(spark, settings, tables.DENSITY)).withColumn("group", F.lit("total"))
    signal = (
        groups.select(*keys, "devices")
        .unionByName(total.select(*keys, "devices"))
        .groupBy(*keys)
        .agg(F.sum("devices").cast("double").alias("devices"))
        .toPandas()
    )
    signal["date"] = pd.to_datetime(signal["date"])
    return signal


def coarse_figures(gold: pd.DataFrame, priors: PeoplePriors, end: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The figures the model is fitted on, from official gold series rows (``source, route_id, level, ds, freq,
    y``): monthly (``month, route_id, arrivals``) of the months over by ``end``, and daily (``date, route_id,
    arrivals``) up to ``end``; route level only, summed over the configured sources."""
    gold = gold[gold["level"] == "route"].assign(ds=lambda f: pd.to_datetime(f["ds"]))
    gold = gold[gold["ds"] <= pd.Timestamp(end)]
    monthly = gold[gold["source"].isin(priors.monthly_sources) & (gold["freq"] == "M")]
    # A month's figure counts only once the month is over by the run date.
    monthly = monthly[monthly["ds"] + pd.offsets.MonthEnd(0) <= pd.Timestamp(end)]
    monthly = monthly.groupby(["route_id", "ds"], as_index=False)["y"].sum()
    daily = gold[gold["source"].isin(priors.daily_sources) & (gold["freq"] == "D")]
    daily = daily.groupby(["route_id", "ds"], as_index=False)["y"].sum()
    return (
        monthly.rename(columns={"ds": "month", "y": "arrivals"}),
        daily.rename(columns={"ds": "date", "y": "arrivals"}),
    )


def point_figures(gold: pd.DataFrame, priors: PeoplePriors, end: dt.date) -> pd.DataFrame:
    """The monthly landings per place the entry points' shares come from, from official gold series rows
    (``source, route_id, level, series_id, ds, freq, y``) of the ``point_sources``: ``month, route_id,
    crossing_point_id, arrivals`` of the months over by ``end``."""
    gold = gold[(gold["level"] == "point") & gold["source"].isin(priors.point_sources) & (gold["freq"] == "M")]
    gold = gold.assign(ds=pd.to_datetime(gold["ds"]))
    gold = gold[gold["ds"] + pd.offsets.MonthEnd(0) <= pd.Timestamp(end)]
    point = gold["series_id"].map(crossing_point_of)
    out = gold.assign(crossing_point_id=point).groupby(["ds", "route_id", "crossing_point_id"], as_index=False)["y"]
    return out.sum().rename(columns={"ds": "month", "y": "arrivals"})[list(POINT_COLUMNS)]


def read_coarse(
    spark: SparkSession, settings: JobSettings, priors: PeoplePriors, end: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`coarse_figures` and :func:`point_figures` of the official series in gold."""
    present = official_sources_present(settings, priors)
    columns = ["source", "route_id", "level", "series_id", "ds", "freq", "y"]
    gold = (
        lake.read(spark, settings, tables.SERIES)
        .where(F.col("source").isin(present) & F.col("level").isin("route", "point") & (F.col("ds") <= F.lit(end)))
        .select(*columns)
        .toPandas()
        if present
        else pd.DataFrame(columns=columns)
    )
    return (*coarse_figures(gold, priors, end), point_figures(gold, priors, end))


def official_sources_present(settings: JobSettings, priors: PeoplePriors | None = None) -> list[str]:
    """The configured official sources with gold series (what the people stage can be fitted on)."""
    priors = priors or load_priors(settings.people_config)
    path = settings.lake(tables.SERIES)
    sources = priors.monthly_sources + priors.daily_sources + priors.point_sources
    return [s for s in sources if (path / f"source={s}").exists()]


def write_model(settings: JobSettings, document: dict) -> Path:
    """``gold/people_model.json``, replaced atomically."""
    path = settings.lake_dir / "gold" / MODEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
    os.chmod(staged, 0o640)
    os.replace(staged, path)
    return path


def read_model(settings: JobSettings) -> dict | None:
    """The people model of the last people stage run, or None."""
    path = settings.lake_dir / "gold" / MODEL_FILE
    return json.loads(path.read_text()) if path.exists() else None


def run(
    spark: SparkSession, settings: JobSettings, run_date: dt.date, catalogue: Catalogue | None = None
) -> PeopleReport:
    """Estimate people from what is published up to ``run_date`` and replace gold ``people``, the ``people``
    series and ``people_model.json``. Refuses to run without published groups; where no route has both signal and
    official counts up to ``run_date``, writes no people (and keeps none from an earlier run) and says so."""
    catalogue = catalogue or load_catalogue()
    priors = load_priors(settings.people_config)
    signal = read_signal(spark, settings, catalogue, run_date)
    groups = signal[signal["group"] != "total"]
    if groups.empty:
        raise ValueError(
            f"no published home-network groups up to {run_date} at res {settings.h3_res}: run aggregate first"
        )
    monthly, daily, points = read_coarse(spark, settings, priors, run_date)
    with_signal = set(signal["route_id"])
    fitted = (set(monthly["route_id"]) | set(daily["route_id"])) & with_signal
    if fitted:
        result = estimate_people(signal, monthly, daily, priors, catalogue, points)
    else:  # the official counts are for other routes (or other years): nothing to measure, and nothing stale kept
        rows = pd.DataFrame({c: pd.Series(dtype="object") for c in PEOPLE.names})
        result = PeopleEstimate(rows, {}, model_document({}, priors, monthly, daily, points))
    rows = spark.createDataFrame(result.rows, schema=PEOPLE)
    lake.write(settings, tables.PEOPLE, rows, replace={"measure": [PRESENT, CROSSING, AHEAD]})
    series = people_series(result.rows)
    lake.write(
        settings,
        tables.SERIES,
        spark.createDataFrame(series[list(SERIES.names)], schema=SERIES),
        replace={"source": [PEOPLE_SOURCE]},
    )
    write_model(settings, result.model)
    report = PeopleReport(
        model_id=result.model["model_id"],
        present_rows=int((result.rows["measure"] == PRESENT).sum()),
        ahead_rows=int((result.rows["measure"] == AHEAD).sum()),
        crossing_rows=int((result.rows["measure"] == CROSSING).sum()),
        series_rows=len(series),
        measured=sorted(r for r, p in result.params.items() if not p.blind),
        blind={r: p.reason for r, p in sorted(result.params.items()) if p.blind},
        not_fitted=sorted(with_signal - set(result.params)),
        coarse=f"{len(monthly)} monthly, {len(daily)} daily, {len(points)} landing-place figures up to {run_date}",
    )
    return report


def clear(settings: JobSettings) -> list[str]:
    """Remove what the stage made (gold people, the people series, the model's document), for a run where it does not
    apply any more (differential privacy turned on, official counts removed): no stale people get forecast and
    published. Returns what was removed."""
    removed = [
        f"people/{p}" for p in lake.drop_partitions(settings.lake(tables.PEOPLE), "measure", (PRESENT, CROSSING, AHEAD))
    ]
    removed += [f"series/{p}" for p in lake.drop_partitions(settings.lake(tables.SERIES), "source", [PEOPLE_SOURCE])]
    model = settings.lake_dir / "gold" / MODEL_FILE
    if model.exists():
        model.unlink()
        removed.append(MODEL_FILE)
    return removed


def describe(report: PeopleReport | None) -> str:
    if report is None:
        return ""
    blind = f", blind: {', '.join(report.blind)}" if report.blind else ""
    unfitted = f", no official counts for: {', '.join(report.not_fitted)}" if report.not_fitted else ""
    return (
        f"{len(report.measured)} routes in people ({report.model_id}, fitted on {report.coarse}), "
        f"{report.series_rows:,} series-days{blind}{unfitted}"
    )
