"""People present per (route, segment, day) from phone densities split by home-network group: a measurement model.

Everything routecast publishes about density counts phones, most of them residents'. This module turns the
group split of the density into *people present*, with an interval, and fits its few parameters on the coarse
figures a real deployment has: monthly arrivals per route (as Frontex publishes them) and, where there are any,
daily arrivals at one crossing (as the UK publishes the Channel's). It never sees people per segment and day.

The model, per route:

1. **Signal.** ``signal`` is one long frame ``date, route_id, segment_id, group, devices``: the published devices of
   each home-network group on the segment's cells that day, and the published total as ``group = "total"``. A day
   on which a group was not published counts 0 devices (suppressed, or none).
2. **Features.** Per segment and day, two kinds of feature:

   - ``excess:<group>`` (every group but ``visitor``, and the total): devices minus the same-weekday baseline,
     the median of the previous ``baseline_weeks`` same weekdays (at least ``baseline_min_weeks`` of them, else
     missing), clipped at 0. This removes the residents and their weekly rhythm; it also removes any steady stock
     of migrants, so it measures the part of the people that is new against the last weeks.
   - ``level:<group>`` (the groups a roaming migrant's phone can be in: ``ROAMING_GROUPS``) and ``level:roaming``
     (their sum): the devices as published. A trailing baseline would subtract the migrants' own stock, and these
     groups hold no residents of the place, only foreign workers, drivers and migrants. ``visitor`` is left out:
     tourists follow the summer like the migrants do, so it would track them for the wrong reason.

3. **People.** ``people = k × feature`` for one feature per route: ``k`` folds together phones per person (0, 1
   or 2 phones), the share of phones still on their home network (local SIMs), coverage and suppression, and the
   share of the route's people on segments the signal does not see. The route's people are spread over its
   segments in proportion to each segment's feature.
4. **Little's law** ties the stock to the flow: the people on a route on day t are about the arrivals over the
   next ``days_on_route`` days (``W``), so a month's arrivals per day × W is the mean stock over the month shifted
   back by W/2. ``W`` is a documented prior per route (surveys of arrivals ask how long the journey took), or, for
   a route with daily arrivals and no prior, estimated as the W (a week to ``max_days_on_route``) whose forward sum
   of arrivals correlates best with the signal on weekly means.
5. **Fit.** Per route and candidate feature (with at least ``min_signal`` devices a day on the route), ``k`` by least
   squares through the origin of the targets on the feature's means over the same windows; the candidate with the
   smallest relative error on the coarse figures (compared on the same periods) wins. Excess features are
   candidates only on a route where no roaming group's level is seen (``excess_as_fallback``): an excess measures
   change, not the stock. One coarse period cannot choose, so then the first candidate in ``feature_names`` order
   is used (the roaming groups' level, else the total's excess). A route with no candidate is ``blind``: its
   people are missing (NaN), not 0; so is one where no roaming group is seen if ``unseen="blind"``. ``groups`` (the
   arrivals' published nationalities) can narrow the candidates.
6. **Intervals** (80 % by default) are log-normal around the estimate: the scale's error from the log residuals
   of the coarse fit, pooled with a prior (``prior_sigma``, the uncertainty of W and of the phones per
   person) weighing as ``prior_weight`` periods, plus counting noise (1/devices on the log scale). They cover the
   scale's uncertainty and counting noise, not a feature that stops following the people.

An operator refits on real counts by passing the published monthly arrivals per route (``monthly_arrivals``), the
daily arrivals where a source publishes them (``daily_arrivals``), and a prior W per route from surveys of arrivals,
then keeping ``PeopleModel.params_`` (plain dataclasses) beside the release.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from contracts.networks import GROUPS, ROAMING_GROUPS

TOTAL = "total"  # the published total, carried as one more group
ROAMING = "roaming"
UNIT = "people"

SIGNAL_COLUMNS = ("date", "route_id", "segment_id", "group", "devices")
MONTHLY_COLUMNS = ("month", "route_id", "arrivals")
DAILY_COLUMNS = ("date", "route_id", "arrivals")


@dataclass(frozen=True)
class PeopleModelConfig:
    """Settings of the model that are chosen, not fitted."""

    baseline_weeks: int = 4
    baseline_min_weeks: int = 2
    min_signal: float = 5.0  # devices per day on the route below which a feature is not a signal
    min_window_days: int = 7  # days of features a coarse period needs to be used in the fit
    level: int = 80
    excess_as_fallback: bool = True  # excess features only where no roaming group's level is seen
    # Where no roaming group is seen: "excess" reads people from the excess features, "blind" says it cannot see.
    unseen: str = "excess"
    prior_sigma: float = 0.3  # log-scale uncertainty of the scale before any coarse figure is seen
    prior_weight: float = 2.0  # how many coarse periods the prior counts as
    # W tried when estimating it from daily arrivals. Below a week the forward sum of arrivals is the boats'
    # weather, not a stock.
    min_days_on_route: int = 7
    max_days_on_route: int = 60

    def __post_init__(self) -> None:
        if self.baseline_weeks < 1 or not 1 <= self.baseline_min_weeks <= self.baseline_weeks:
            raise ValueError("baseline_weeks must be ≥ 1 and baseline_min_weeks between 1 and baseline_weeks")
        if not 0 < self.level < 100:
            raise ValueError(f"level={self.level} must be a percentage strictly between 0 and 100")
        if self.min_signal < 0 or self.prior_sigma < 0 or self.prior_weight < 0 or self.min_window_days < 1:
            raise ValueError("min_signal, prior_sigma and prior_weight must be ≥ 0 and min_window_days ≥ 1")
        if self.unseen not in ("excess", "blind"):
            raise ValueError(f"unseen={self.unseen!r} must be 'excess' or 'blind'")
        if not 1 <= self.min_days_on_route <= self.max_days_on_route:
            raise ValueError("min_days_on_route must be between 1 and max_days_on_route")


@dataclass(frozen=True)
class RouteParams:
    """The fitted measurement model of one route.

    ``feature`` is the signal people are read from (``level:<group>``, ``excess:<group>``, or ``None`` when the
    route is blind), ``scale`` people per unit of it, ``days_on_route`` the W of Little's law, ``sigma_log`` the
    log-scale standard error of the scale, ``fitted_on`` ``monthly`` or ``daily``, ``periods`` how many coarse
    figures the fit used, ``errors`` the relative error of each candidate tried (what chose the feature), ``reason``
    how the feature was chosen or why the route is blind.
    """

    route_id: str
    feature: str | None
    scale: float
    days_on_route: float
    sigma_log: float
    fitted_on: str
    periods: int
    baseline_weeks: int
    baseline_min_weeks: int
    errors: Mapping[str, float] = field(default_factory=dict)
    reason: str = ""

    @property
    def blind(self) -> bool:
        return self.feature is None


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame with columns {', '.join(columns)}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: column(s) {', '.join(missing)} missing; expected {', '.join(columns)}")


def _check_signal(signal: pd.DataFrame) -> pd.DataFrame:
    _require(signal, SIGNAL_COLUMNS, "signal")
    if signal.empty:
        raise ValueError("signal is empty: no devices to measure people from")
    unknown = sorted(set(signal["group"].astype(str)) - set(GROUPS) - {TOTAL})
    if unknown:
        raise ValueError(f"signal: unknown group(s) {', '.join(unknown)}; expected {', '.join(GROUPS)} or total")
    devices = pd.to_numeric(signal["devices"], errors="coerce")
    if devices.isna().any() or (devices < 0).any():
        raise ValueError("signal: devices must be numbers ≥ 0 (a group not published that day is 0 or absent)")
    out = signal.loc[:, list(SIGNAL_COLUMNS)].copy()
    out["date"] = pd.to_datetime(out["date"]).dt.normalize()
    out["devices"] = devices.astype("float64")
    return out


def same_weekday_baseline(wide: pd.DataFrame, weeks: int, min_weeks: int) -> pd.DataFrame:
    """Per column of a daily frame (rows: consecutive days), the median of the previous ``weeks`` same weekdays.

    Missing (NaN) where fewer than ``min_weeks`` of them are in the frame.
    """
    values = wide.to_numpy(dtype="float64")
    lagged = np.full((weeks, *values.shape), np.nan)
    for w in range(1, weeks + 1):
        if 7 * w < len(values):
            lagged[w - 1, 7 * w :] = values[: -7 * w]
    enough = np.sum(~np.isnan(lagged), axis=0) >= min_weeks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: the first weeks, marked missing below
        median = np.nanmedian(lagged, axis=0)
    return pd.DataFrame(np.where(enough, median, np.nan), index=wide.index, columns=wide.columns)


def segment_features(signal: pd.DataFrame, baseline_weeks: int = 4, baseline_min_weeks: int = 2) -> pd.DataFrame:
    """Per (route_id, segment_id, date) on a complete daily grid: the ``excess:*`` and ``level:*`` features.

    Refuses a signal without the columns ``date, route_id, segment_id, group, devices`` or with unknown groups.
    """
    signal = _check_signal(signal)
    days = pd.date_range(signal["date"].min(), signal["date"].max(), freq="D")
    keys = signal[["route_id", "segment_id"]].drop_duplicates()
    wide = signal.pivot_table(
        index="date", columns=["route_id", "segment_id", "group"], values="devices", aggfunc="sum"
    ).reindex(days)
    # Every segment gets every group, so that a group published nowhere on a segment reads 0, not missing.
    full = pd.MultiIndex.from_tuples(
        [(r, s, g) for r, s in keys.itertuples(index=False) for g in (*GROUPS, TOTAL)],
        names=["route_id", "segment_id", "group"],
    )
    wide = wide.reindex(columns=full).fillna(0.0)
    baseline = same_weekday_baseline(wide, baseline_weeks, baseline_min_weeks)
    excess = (wide - baseline).clip(lower=0.0)  # NaN where the baseline is missing stays NaN

    def long(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
        out = frame.stack(["route_id", "segment_id"], future_stack=True)
        return out.rename(columns=lambda g: f"{prefix}:{g}")

    level = wide.loc[:, wide.columns.get_level_values("group").isin(ROAMING_GROUPS)]
    features = pd.concat([long(excess, "excess"), long(level, "level")], axis=1)
    features[f"level:{ROAMING}"] = features[[f"level:{g}" for g in ROAMING_GROUPS]].sum(axis=1)
    features.index.names = ["date", "route_id", "segment_id"]
    return features.reorder_levels(["route_id", "segment_id", "date"]).sort_index()


def feature_names() -> list[str]:
    """Every candidate feature, in the order ties are broken (roaming levels first, then excesses).

    No ``visitor`` feature: tourists rise with the summer as the migrants do, so it would follow them for the wrong
    reason.
    """
    return [
        f"level:{ROAMING}",
        *(f"level:{g}" for g in ROAMING_GROUPS),
        f"excess:{TOTAL}",
        *(f"excess:{g}" for g in GROUPS if g != "visitor"),
    ]


def nationality_features(groups: Sequence[str]) -> list[str]:
    """The candidates when the arrivals' nationalities are known to fall in ``groups``: each group's level, their
    sum (``level:a+b``), the excess of each and of the total, and the domestic excess (phones on local SIMs)."""
    unknown = sorted(set(groups) - set(ROAMING_GROUPS))
    if unknown:
        raise ValueError(f"groups {', '.join(unknown)} are not roaming groups; expected some of {ROAMING_GROUPS}")
    ordered = [g for g in ROAMING_GROUPS if g in groups]
    summed = [f"level:{'+'.join(ordered)}"] if len(ordered) > 1 else []
    return [
        *summed,
        *(f"level:{g}" for g in ordered),
        f"excess:{TOTAL}",
        "excess:domestic",
        *(f"excess:{g}" for g in ordered),
    ]


def feature_column(features: pd.DataFrame, feature: str) -> pd.Series:
    """One feature of a features frame; ``level:a+b`` is the sum of ``level:a`` and ``level:b``."""
    kind, _, groups = feature.partition(":")
    if kind == "level" and "+" in groups:
        return features[[f"level:{g}" for g in groups.split("+")]].sum(axis=1)
    if feature not in features.columns:
        raise ValueError(f"unknown feature {feature!r}; expected one of {', '.join(feature_names())} or level:a+b")
    return features[feature]


def _route_daily(features: pd.DataFrame, route_id: str) -> pd.DataFrame:
    one = features.xs(route_id, level="route_id")
    # A route-day's feature is missing only when every segment's is (the baseline's first weeks).
    return one.groupby(level="date").sum(min_count=1)


def _monthly_targets(monthly: pd.DataFrame, route_id: str) -> pd.DataFrame:
    rows = monthly[monthly["route_id"] == route_id]
    return rows.assign(rate=rows["arrivals"] / rows["days"])


def _check_monthly(monthly: pd.DataFrame) -> pd.DataFrame:
    _require(monthly, MONTHLY_COLUMNS, "monthly_arrivals")
    out = monthly.copy()
    out["month"] = pd.to_datetime(out["month"]).dt.to_period("M").dt.to_timestamp()
    if "days" not in out.columns:
        out["days"] = out["month"].dt.days_in_month
    arrivals = pd.to_numeric(out["arrivals"], errors="coerce")
    if arrivals.isna().any() or (arrivals < 0).any() or (out["days"] <= 0).any():
        raise ValueError("monthly_arrivals: arrivals must be numbers ≥ 0 and days (the days covered) > 0")
    if out.duplicated(["route_id", "month"]).any():
        raise ValueError("monthly_arrivals: one row per route and month, please (sum the crossing points first)")
    return out.assign(arrivals=arrivals.astype("float64"))


def _check_daily(daily: pd.DataFrame | None) -> pd.DataFrame:
    if daily is None:
        return pd.DataFrame(columns=list(DAILY_COLUMNS))
    _require(daily, DAILY_COLUMNS, "daily_arrivals")
    out = daily.copy()
    out["date"] = pd.to_datetime(out["date"]).dt.normalize()
    if out.duplicated(["route_id", "date"]).any():
        raise ValueError("daily_arrivals: one row per route and day, please (sum the crossing points first)")
    return out


def _monthly_pairs(x: pd.Series, targets: pd.DataFrame, days_on_route: float, min_days: int) -> pd.DataFrame:
    """Per coarse month: the target (arrivals per day × W) and the feature's mean over the month shifted back W/2."""
    shift = pd.Timedelta(days=int(days_on_route // 2))  # half of W, in whole days
    rows = []
    for month, rate in targets[["month", "rate"]].itertuples(index=False):
        end = month + pd.offsets.MonthEnd(0)
        window = x.loc[month - shift : end - shift].dropna()
        if len(window) >= min_days:
            rows.append((month, rate * days_on_route, float(window.mean())))
    return pd.DataFrame(rows, columns=["period", "target", "x"])


def _daily_pairs(x: pd.Series, arrivals: pd.Series, days_on_route: int) -> pd.DataFrame:
    """Per day: the stock Little's law implies (arrivals over the next W days) and the feature that day."""
    arrivals = arrivals.asfreq("D", fill_value=0.0)
    forward = arrivals[::-1].rolling(days_on_route, min_periods=days_on_route).sum()[::-1]
    pairs = pd.concat([forward.rename("target"), x.rename("x")], axis=1, join="inner").dropna()
    return pairs.rename_axis("period").reset_index()


def _scale_and_error(pairs: pd.DataFrame) -> tuple[float, float]:
    """k of target ≈ k·x through the origin, and the root-mean-square relative error of that fit."""
    x, y = pairs["x"].to_numpy(), pairs["target"].to_numpy()
    if len(x) == 0 or np.dot(x, x) <= 0:
        return math.nan, math.inf
    k = float(np.dot(x, y) / np.dot(x, x))
    relative = (k * x - y) / np.maximum(y, 1.0)
    return k, float(np.sqrt(np.mean(relative**2)))


def _sigma_log(pairs: pd.DataFrame, k: float, config: PeopleModelConfig) -> float:
    x, y = pairs["x"].to_numpy(), pairs["target"].to_numpy()
    ok = (x > 0) & (y > 0)
    residuals = np.log(y[ok] / (k * x[ok])) if k > 0 else np.empty(0)
    pooled = (np.sum(residuals**2) + config.prior_weight * config.prior_sigma**2) / (
        len(residuals) + config.prior_weight
    )
    return float(math.sqrt(pooled)) if pooled > 0 else 0.0


class RouteFitError(ValueError):
    """One route cannot be fitted (no W, or coarse figures that do not overlap its signal); the message says why."""


class PeopleModel:
    """Fit per route on coarse arrivals; estimate people per (route, segment, day) with an interval."""

    alias = "people"

    def __init__(self, config: PeopleModelConfig | None = None) -> None:
        self.config = config or PeopleModelConfig()

    def fit(
        self,
        signal: pd.DataFrame,
        monthly_arrivals: pd.DataFrame,
        days_on_route: Mapping[str, float],
        daily_arrivals: pd.DataFrame | None = None,
        unfittable: str = "raise",
        groups: Mapping[str, Sequence[str]] | None = None,
    ) -> PeopleModel:
        """Fit every route of ``signal`` that has coarse arrivals.

        ``monthly_arrivals``: ``month, route_id, arrivals`` (optional ``days``: the days the figure covers, default
        the month's); ``daily_arrivals``: ``date, route_id, arrivals`` where a source publishes them (then W is
        estimated for that route unless ``days_on_route`` gives it); ``days_on_route``: the prior W per route;
        ``groups``: per route, the roaming groups the arrivals' published nationalities fall in where they are seen,
        which narrows the candidates to ``nationality_features`` (default: every feature).
        Refuses missing columns; a route with arrivals but no W, or whose coarse figures and signal share no period,
        raises :class:`RouteFitError`, or with ``unfittable="blind"`` is kept as blind with the reason.
        """
        if unfittable not in ("raise", "blind"):
            raise ValueError(f"unfittable={unfittable!r} must be 'raise' or 'blind'")
        config = self.config
        features = segment_features(signal, config.baseline_weeks, config.baseline_min_weeks)
        monthly = _check_monthly(monthly_arrivals)
        daily = _check_daily(daily_arrivals)
        routes = sorted(set(features.index.get_level_values("route_id")))
        with_figures = sorted((set(monthly["route_id"]) | set(daily["route_id"])) & set(routes))
        if not with_figures:
            raise ValueError(
                f"no route has both signal and coarse arrivals: signal has {', '.join(routes)}; "
                "pass monthly_arrivals (or daily_arrivals) for them"
            )
        self.params_: dict[str, RouteParams] = {}
        for route_id in with_figures:
            x = _route_daily(features, route_id)
            route_daily = daily[daily["route_id"] == route_id]
            route_groups = None if groups is None or route_id not in groups else tuple(groups[route_id])
            try:
                if len(route_daily):
                    arrivals = route_daily.set_index("date")["arrivals"].astype("float64").sort_index()
                    params = self._fit_daily(route_id, x, arrivals, days_on_route.get(route_id), route_groups)
                else:
                    if route_id not in days_on_route:
                        raise RouteFitError(
                            f"route {route_id}: monthly arrivals need a prior days_on_route (W of Little's law); "
                            "give one from surveys of arrivals, or daily arrivals to estimate it"
                        )
                    targets = _monthly_targets(monthly, route_id)
                    params = self._fit_monthly(route_id, x, targets, days_on_route[route_id], route_groups)
            except RouteFitError as exc:
                if unfittable == "raise":
                    raise
                params = self._blind(route_id, days_on_route.get(route_id, math.nan), "none", str(exc))
            self.params_[route_id] = params
        return self

    def _candidates(self, x: pd.DataFrame, groups: Sequence[str] | None) -> list[str]:
        names = feature_names() if groups is None else nationality_features(groups)
        seen = [f for f in names if feature_column(x, f).mean(skipna=True) >= self.config.min_signal]
        if self.config.excess_as_fallback and any(f.startswith("level:") for f in seen):
            # An excess measures what is new against the last weeks, not the stock: only where no group the
            # migrants roam in is seen is it the signal.
            return [f for f in seen if f.startswith("level:")]
        if self.config.unseen == "blind" and not any(f.startswith("level:") for f in seen):
            return []
        return seen

    def _choose(self, route_id: str, pairs_of: Mapping[str, pd.DataFrame], fitted_on: str, days: float) -> RouteParams:
        config = self.config
        order = list(pairs_of)  # the candidates in preference order
        errors, scales = {}, {}
        for feature, pairs in pairs_of.items():
            scales[feature], errors[feature] = _scale_and_error(pairs)
        usable = {f for f, e in errors.items() if math.isfinite(e) and scales[f] > 0}
        # Candidates are compared on the same coarse periods: an excess misses its baseline's first weeks, and
        # one period fewer is one error fewer, not a better fit.
        periods = max((len(pairs_of[f]) for f in usable), default=0)
        usable = {f for f in usable if len(pairs_of[f]) == periods}
        if not pairs_of and config.unseen == "blind":
            reason = f"no roaming group has {config.min_signal:g} devices a day on the route (unseen='blind')"
            return self._blind(route_id, days, fitted_on, reason, errors)
        if not usable:
            reason = "no feature with enough devices on the route overlaps the coarse figures"
            return self._blind(route_id, days, fitted_on, reason, errors)
        if periods < 2:
            # One coarse figure fits any feature exactly: the candidates' order decides (roaming levels first).
            feature = next(f for f in order if f in usable)
            reason = f"one coarse {'month' if fitted_on == 'monthly' else 'day'}: chosen by rule, not by fit"
        else:
            feature = min(usable, key=lambda f: (errors[f], order.index(f)))
            reason = f"smallest relative error over {periods} coarse periods"
        k = scales[feature]
        sigma = _sigma_log(pairs_of[feature], k, config)
        return RouteParams(
            route_id,
            feature,
            k,
            days,
            sigma,
            fitted_on,
            periods,
            config.baseline_weeks,
            config.baseline_min_weeks,
            errors,
            reason,
        )

    def _blind(
        self, route_id: str, days: float, fitted_on: str, reason: str, errors: Mapping[str, float] | None = None
    ) -> RouteParams:
        config = self.config
        return RouteParams(
            route_id,
            None,
            math.nan,
            days,
            math.nan,
            fitted_on,
            0,
            config.baseline_weeks,
            config.baseline_min_weeks,
            dict(errors or {}),
            reason,
        )

    def _fit_monthly(
        self, route_id: str, x: pd.DataFrame, targets: pd.DataFrame, days: float, groups: Sequence[str] | None
    ) -> RouteParams:
        if days <= 0:
            raise RouteFitError(f"route {route_id}: days_on_route must be > 0, got {days}")
        pairs_of = {
            f: _monthly_pairs(feature_column(x, f), targets, days, self.config.min_window_days)
            for f in self._candidates(x, groups)
        }
        if pairs_of and all(p.empty for p in pairs_of.values()):
            raise RouteFitError(
                f"route {route_id}: no month of monthly_arrivals overlaps the signal's days "
                f"({x.index.min():%Y-%m-%d}..{x.index.max():%Y-%m-%d}) shifted back by W/2"
            )
        return self._choose(route_id, pairs_of, "monthly", days)

    def _fit_daily(
        self, route_id: str, x: pd.DataFrame, arrivals: pd.Series, days: float | None, groups: Sequence[str] | None
    ) -> RouteParams:
        candidates = self._candidates(x, groups)
        if days is not None:
            w = max(1, round(days))
            pairs_of = {f: _daily_pairs(feature_column(x, f), arrivals, w) for f in candidates}
            if candidates and all(len(p) < self.config.min_window_days for p in pairs_of.values()):
                raise RouteFitError(
                    f"route {route_id}: daily_arrivals and the signal share fewer than "
                    f"{self.config.min_window_days} days with W = {w} days of arrivals after them"
                )
            return self._choose(route_id, pairs_of, "daily", float(w))
        grid = list(range(self.config.min_days_on_route, self.config.max_days_on_route + 1))
        best: tuple[float, int] | None = None
        for w in grid:
            # W by correlation: the scale is free, so only the shape of the implied stock can choose it.
            for f in candidates:
                pairs = _daily_pairs(feature_column(x, f), arrivals, w)
                if len(pairs) < 3 * self.config.min_window_days or pairs["x"].std() == 0:
                    continue
                # Weekly means: the residents' weekday rhythm and single boat days say nothing about W.
                weekly = pairs[["x", "target"]].rolling(7).mean().dropna()
                r = float(np.corrcoef(weekly["x"], weekly["target"])[0, 1]) if weekly["x"].std() > 0 else math.nan
                if math.isfinite(r) and (best is None or r > best[0]):
                    best = (r, w)
        if candidates and best is None:
            raise RouteFitError(
                f"route {route_id}: daily_arrivals and the signal share too few days to estimate W "
                f"(need {3 * self.config.min_window_days} beyond the W tried); give a prior days_on_route"
            )
        w = best[1] if best is not None else grid[0]
        pairs_of = {f: _daily_pairs(feature_column(x, f), arrivals, w) for f in candidates}
        return self._choose(route_id, pairs_of, "daily", float(w))

    def estimate(self, signal: pd.DataFrame, by: str = "segment") -> pd.DataFrame:
        """People per (date, route_id, segment_id) (``by="route"``: per route, ``segment_id`` empty)."""
        if not hasattr(self, "params_"):
            raise RuntimeError("estimate called before fit (or pass params to people.estimate)")
        return estimate(signal, self.params_, by=by, level=self.config.level)


def estimate(
    signal: pd.DataFrame, params: Mapping[str, RouteParams], by: str = "segment", level: int = 80
) -> pd.DataFrame:
    """People present with a ``level`` % interval (columns lo80/hi80 for the default level).

    Columns: ``date, route_id, segment_id, people, lo<level>, hi<level>, unit ("people"), feature``. Routes of the
    signal without params are left out; a blind route's people are NaN. Refuses ``by`` other than segment or route.
    """
    if by not in ("segment", "route"):
        raise ValueError(f"by={by!r} must be 'segment' or 'route'")
    if not params:
        raise ValueError("no fitted params: fit the model on coarse arrivals first")
    settings = {(p.baseline_weeks, p.baseline_min_weeks) for p in params.values()}
    if len(settings) > 1:
        raise ValueError("params were fitted with different baselines; estimate them separately")
    weeks, min_weeks = settings.pop()
    features = segment_features(signal, weeks, min_weeks)
    z = NormalDist().inv_cdf(0.5 + level / 200.0)
    frames = []
    for route_id, p in params.items():
        if route_id not in features.index.get_level_values("route_id"):
            continue
        one = features.xs(route_id, level="route_id", drop_level=False)
        if p.feature is None:
            x = pd.Series(np.nan, index=one.index)
        else:
            x = feature_column(one, p.feature)
        if by == "route":
            x = x.groupby(level="date").sum(min_count=1)
            x.index = pd.MultiIndex.from_arrays(
                [[route_id] * len(x), [""] * len(x), x.index], names=["route_id", "segment_id", "date"]
            )
        people = p.scale * x
        # Counting noise: a feature of n devices is known to about 1/sqrt(n) relative.
        sigma = np.sqrt(p.sigma_log**2 + 1.0 / np.maximum(x, 1.0))
        frames.append(
            pd.DataFrame(
                {
                    "people": people,
                    f"lo{level}": people * np.exp(-z * sigma),
                    f"hi{level}": people * np.exp(z * sigma),
                    "feature": p.feature,
                }
            )
        )
    if not frames:
        raise ValueError("the signal holds none of the fitted routes: " + ", ".join(sorted(params)))
    out = pd.concat(frames).reset_index()
    out["unit"] = UNIT
    columns = ["date", "route_id", "segment_id", "people", f"lo{level}", f"hi{level}", "unit", "feature"]
    return out[columns].sort_values(["route_id", "segment_id", "date"], ignore_index=True)


LEADING_MODEL = "leading: people present ÷ W"


def lead_forecasts(forecasts: pd.DataFrame, ahead: pd.DataFrame, level: int = 80) -> pd.DataFrame:
    """Replace the first days of forecasts with crossings already implied by the people present (a leading indicator).

    ``forecasts``: published forecast rows (``series_id, ds, yhat, lo80, hi80, lo95, hi95, model``); ``ahead``:
    ``series_id, ds, people, lo<level>, hi<level>`` — crossings expected from people already on the route. Where a
    series and day is in both, the forecast becomes the expectation, its ``level`` % interval the people's, the
    95 % interval the same log-normal widened (people × exp(±z95·σ), σ from the ``level`` % bound), and ``model``
    names the leading indicator and the univariate model it replaced. Other rows are returned unchanged.
    """
    if ahead.empty:
        return forecasts
    lo, hi = f"lo{level}", f"hi{level}"
    known = ahead.dropna(subset=["people", lo, hi])
    merged = forecasts.merge(
        known[["series_id", "ds", "people", lo, hi]].rename(columns={lo: "_lo", hi: "_hi"}),
        on=["series_id", "ds"],
        how="left",
    )
    lead = merged["people"].notna()
    if not lead.any():
        return forecasts
    z, z95 = NormalDist().inv_cdf(0.5 + level / 200.0), NormalDist().inv_cdf(0.975)
    people = merged.loc[lead, "people"].to_numpy()
    upper = merged.loc[lead, "_hi"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(people > 0, np.log(np.maximum(upper, people) / people) / z, 0.0)
    out = forecasts.copy()
    out.loc[lead.to_numpy(), "yhat"] = people
    out.loc[lead.to_numpy(), "lo80" if level == 80 else f"lo{level}"] = merged.loc[lead, "_lo"].to_numpy()
    out.loc[lead.to_numpy(), "hi80" if level == 80 else f"hi{level}"] = upper
    out.loc[lead.to_numpy(), "lo95"] = people * np.exp(-z95 * sigma)
    out.loc[lead.to_numpy(), "hi95"] = people * np.exp(z95 * sigma)
    out.loc[lead.to_numpy(), "model"] = LEADING_MODEL + " (then " + out.loc[lead.to_numpy(), "model"].astype(str) + ")"
    return out
