"""Forecast reconciliation across the density hierarchy: all = Σ routes, route = Σ its segments.

Every series is forecast on its own, so the forecasts of ``all``, ``route:<r>`` and ``segment:<r>/<s>`` do not
add up. Reconciliation replaces them with coherent ones: bottom forecasts ``b`` (one per bottom series) and
every series as ``S @ b``, with ``S`` the summing matrix.

- ``bottom_up``: ``b`` = the bottom series' own forecasts; aggregates are their sums.
- ``ols``: MinTrace with ``W = I`` (Wickramasuriya, Athanasopoulos & Hyndman 2019): the coherent forecasts
  closest to all the base forecasts, every series weighted alike.
- ``mint_shrink``: MinTrace with ``W`` the Schäfer–Strimmer shrinkage estimate of the covariance of the base
  forecasts' errors, from aligned residuals (a backtest's): a series whose forecasts have been poor moves
  most, and correlated errors are taken into account.

The two MinTrace methods are non-negative (densities are counts): when the closed-form solution has a negative
bottom forecast, the non-negative quadratic programme of Wickramasuriya, Turlach & Hyndman (2020) is solved
instead (hierarchicalforecast's ``MinTrace(nonnegative=True)``, solver clarabel); when it has none it is already
that programme's optimum. hierarchicalforecast is imported only when a MinTrace method runs (it takes seconds).

Intervals are not reconciled: each series keeps its own (conformally calibrated) lower and upper widths around
its new mean, clipped at 0. That is an approximation — MinTrace's own intervals would typically be narrower, and
these are not coherent — but the widths stay the ones whose coverage was measured.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from contracts.series import series_id
from forecasting.selection import FORECAST_COLUMNS
from forecasting.vocabulary import PUBLISHED_INTERVALS, PUBLISHED_VALUES

__all__ = [
    "HIERARCHY_KEY_COLUMNS",
    "METHODS",
    "MIN_RESIDUAL_KEYS",
    "RECONCILED_COLUMNS",
    "RESIDUAL_COLUMNS",
    "Hierarchy",
    "coherence_gap",
    "hierarchy_from_keys",
    "reconcile",
]

logger = logging.getLogger(__name__)

# The columns of ``keys`` that place a density series in the hierarchy (hierarchy_from_keys).
HIERARCHY_KEY_COLUMNS = ["series_id", "level", "route_id", "segment_id"]
RESIDUAL_COLUMNS = ["series_id", "key", "residual"]
RECONCILED_COLUMNS = [*FORECAST_COLUMNS, "reconciliation"]
METHODS = ("bottom_up", "ols", "mint_shrink")
# Fewer residual keys shared by every series than this and mint_shrink falls back to ols: from 2 keys the
# Schäfer–Strimmer estimate does not shrink at all and the covariance (of rank 1) is singular.
MIN_RESIDUAL_KEYS = 3

# Each method and what is tried after it when it cannot run; bottom_up always can.
_FALLBACKS = {
    "mint_shrink": ("mint_shrink", "ols", "bottom_up"),
    "ols": ("ols", "bottom_up"),
    "bottom_up": ("bottom_up",),
}
_LEVELS = ("all", "route", "segment")
# mint_shrink floors each error variance at this fraction of the largest one, so a series forecast without error
# (a segment that is always 0) is trusted almost exactly instead of making W singular.
_RELATIVE_VARIANCE_FLOOR = 1e-6
# A covariance estimate more ill-conditioned than this is treated as singular (the floor alone allows 1e6).
_MAX_CONDITION = 1e9


class _Unusable(Exception):
    """A reconciliation method cannot run on these inputs; the next one in its fallback chain is tried."""


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """The summing structure of the density series that are reconciled together.

    ``S`` has one row per series (``aggregates`` first, then ``bottom``; index named series_id) and one column per
    bottom series, 1 where the row's series includes that bottom series. ``S.reset_index()`` and ``tags`` (level →
    series ids) are the ``S_df``/``tags`` pair hierarchicalforecast's ``HierarchicalReconciliation`` takes with
    ``id_col="series_id"``.
    """

    aggregates: tuple[str, ...]
    bottom: tuple[str, ...]
    S: pd.DataFrame
    tags: dict[str, np.ndarray]

    @property
    def series_ids(self) -> tuple[str, ...]:
        """Every series of the hierarchy, in the row order of ``S``."""
        return self.aggregates + self.bottom

    def restricted_to(self, series_ids: Iterable[str]) -> Hierarchy:
        """The hierarchy over those of ``series_ids`` that are in this one (others are ignored).

        An aggregate that is no longer the sum of series still present (a segment of its route is missing)
        becomes a bottom series: it still counts in the aggregates above it, but need no longer equal the sum of
        what is left below it, which is reconciled as bottom series of its own.
        """
        wanted = set(series_ids)
        S = self.S
        coverage = {sid: frozenset(S.columns[S.loc[sid].to_numpy() > 0]) for sid in self.series_ids if sid in wanted}
        return _hierarchy_from_coverage(coverage)


def hierarchy_from_keys(keys: pd.DataFrame) -> Hierarchy:
    """The density hierarchy of ``keys`` (columns series_id, level, route_id, segment_id; more are ignored).

    Members are the series ``all``, ``route:<route_id>`` and ``segment:<route_id>/<segment_id>``; anything else
    (another source, ``frontex/route:…``; a flow, ``flow:…``) is not part of it. ``keys`` must list the whole
    catalogue: a route's segments are taken to be all of it. A route without segment series is a bottom series
    itself; a route whose segments are listed but whose own series is not is simply absent, and its segments add
    up directly to ``all``. ``all`` takes part only if listed.

    ValueError when a column is missing, or when a member's id disagrees with its level, route_id and segment_id.
    """
    missing = [c for c in HIERARCHY_KEY_COLUMNS if c not in keys.columns]
    if missing:
        raise ValueError(f"keys: column(s) {', '.join(missing)} missing; expected {', '.join(HIERARCHY_KEY_COLUMNS)}")
    has_all = False
    routes: set[str] = set()
    segments: dict[str, set[str]] = {}  # route_id -> segment series ids
    for sid, level, route, segment in keys[HIERARCHY_KEY_COLUMNS].drop_duplicates().itertuples(index=False):
        if _level_of(sid) is None:
            continue  # another source or a flow: outside the hierarchy
        expected = _member_id(level, route, segment)
        if sid != expected:
            raise ValueError(
                f"keys: series {sid!r} has level={level!r}, route_id={route!r}, segment_id={segment!r}, which "
                f"name {expected or 'no density series'!r}; the id must be all, route:<route_id> or "
                "segment:<route_id>/<segment_id>"
            )
        if level == "all":
            has_all = True
        elif level == "route":
            routes.add(sid)
            segments.setdefault(route, set())
        else:
            segments.setdefault(route, set()).add(sid)
    coverage: dict[str, frozenset[str]] = {}
    leaves: set[str] = set()
    for route, route_segments in segments.items():
        route_id = series_id("route", route)
        for sid in route_segments:
            coverage[sid] = frozenset({sid})
        if route_id in routes:
            coverage[route_id] = frozenset(route_segments or {route_id})
        leaves |= route_segments or {route_id}
    if has_all:
        coverage["all"] = frozenset(leaves or {"all"})
    return _hierarchy_from_coverage(coverage)


def reconcile(
    forecasts: pd.DataFrame,
    hierarchy: Hierarchy,
    method: str = "mint_shrink",
    residuals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Coherent forecasts for the series of ``hierarchy``; every other series passes through unchanged.

    ``forecasts``: FORECAST_COLUMNS, one row per (series_id, ds). Returns its rows in the same order with the same
    columns plus ``reconciliation``: the method that was used, null outside the hierarchy. ``method`` is one of
    METHODS; ``mint_shrink`` needs ``residuals`` (RESIDUAL_COLUMNS, long: ``key`` aligns the same origin and step
    across series, e.g. a backtest's cutoff and step), of which only keys with a residual for every reconciled
    series are used. Fallbacks, recorded in ``reconciliation`` and logged: mint_shrink → ols when there are fewer
    than MIN_RESIDUAL_KEYS such keys, every residual is 0 or the solver fails; ols → bottom_up when its solver
    fails. A hierarchy without aggregates (nothing to add up) is reported as bottom_up: forecasts are unchanged.

    Base forecasts below 0 are taken as 0. Series of the hierarchy missing from ``forecasts`` are left out of it
    (``Hierarchy.restricted_to``). Intervals keep each series' own widths around its new ``yhat``, clipped at 0
    and kept nested.

    ValueError for an unknown method, missing columns, duplicate rows, a missing ``yhat`` in the hierarchy, or
    hierarchy series not forecast for the same dates (naming them).
    """
    if method not in METHODS:
        raise ValueError(f"unknown reconciliation method {method!r}; expected one of {', '.join(METHODS)}")
    frame, hierarchy, ds = _hierarchy_rows(forecasts, hierarchy)
    out = frame.astype(dict.fromkeys(PUBLISHED_VALUES, float))
    out["reconciliation"] = pd.Series([None] * len(out), index=out.index, dtype=object)
    if not hierarchy.series_ids:
        return out
    members = frame["series_id"].isin(hierarchy.series_ids).to_numpy()
    rows = frame.loc[members]
    base = _pivot(rows, hierarchy, ds)
    S = hierarchy.S.to_numpy(dtype=float)
    errors = None if residuals is None or method != "mint_shrink" else _aligned_residuals(residuals, hierarchy)
    bottom, used = _reconciled_bottom(S, np.clip(base, 0.0, None), len(hierarchy.aggregates), method, errors)
    coherent = S @ bottom

    row_of = pd.Index(hierarchy.series_ids).get_indexer(rows["series_id"])
    col_of = pd.Index(ds).get_indexer(rows["ds"])
    for column, values in _moved(rows, coherent[row_of, col_of]).items():
        out.loc[members, column] = values
    out.loc[members, "reconciliation"] = used
    return out


def coherence_gap(forecasts: pd.DataFrame, hierarchy: Hierarchy) -> float:
    """The largest ``|yhat(aggregate) - Σ yhat(its bottom series)|`` over aggregates and dates; 0 when coherent.

    Uses the series of ``hierarchy`` present in ``forecasts`` (``Hierarchy.restricted_to``) and the dates all of
    them are forecast for; the same errors as ``reconcile`` for malformed forecasts.
    """
    frame, hierarchy, ds = _hierarchy_rows(forecasts, hierarchy, require_same_dates=False)
    if not hierarchy.aggregates:
        return 0.0
    rows = frame.loc[frame["series_id"].isin(hierarchy.series_ids)]
    values = _pivot(rows, hierarchy, ds)
    values = values[:, ~np.isnan(values).any(axis=0)]
    n_aggs = len(hierarchy.aggregates)
    S = hierarchy.S.to_numpy(dtype=float)
    gap = values[:n_aggs] - S[:n_aggs] @ values[n_aggs:]
    return float(np.abs(gap).max()) if gap.size else 0.0


# --- the hierarchy -----------------------------------------------------------------------------------------


def _level_of(series_id: str) -> str | None:
    """The level of a density hierarchy id, None for any other series (other sources are prefixed)."""
    if series_id == "all":
        return "all"
    for level in ("route", "segment"):
        if series_id.startswith(f"{level}:"):
            return level
    return None


def _member_id(level: object, route: object, segment: object) -> str | None:
    """The id a density series of that level, route and segment has (``contracts.series``), None if it has none."""
    if level == "all":
        return series_id("all")
    if level == "route" and isinstance(route, str):
        return series_id("route", route)
    if level == "segment" and isinstance(route, str) and isinstance(segment, str):
        return series_id("segment", route, segment)
    return None


def _hierarchy_from_coverage(coverage: Mapping[str, frozenset[str]]) -> Hierarchy:
    """The hierarchy of series given by what each covers (sets of disjoint units, nested like a tree).

    A series' parent is the tightest other series covering it (on a tie, e.g. a route with one segment, the
    higher level). A series is an aggregate when its children cover it exactly, otherwise a bottom series.
    """
    rank = {sid: _LEVELS.index(_level_of(sid)) for sid in coverage}
    ids = sorted(coverage, key=lambda sid: (rank[sid], sid))

    def below(child: str, parent: str) -> bool:
        inner, outer = coverage[child], coverage[parent]
        return child != parent and inner <= outer and (inner != outer or rank[child] > rank[parent])

    children: dict[str, list[str]] = {sid: [] for sid in ids}
    for sid in ids:
        above = [p for p in ids if below(sid, p)]
        if above:
            children[min(above, key=lambda p: (len(coverage[p]), -rank[p]))].append(sid)

    def covered_by_children(sid: str) -> bool:
        parts = [coverage[c] for c in children[sid]]
        return bool(parts) and sum(map(len, parts)) == len(coverage[sid]) and frozenset().union(*parts) == coverage[sid]

    aggregates = tuple(sid for sid in ids if covered_by_children(sid))
    bottom = tuple(sid for sid in ids if sid not in aggregates)

    @cache
    def parts_of(sid: str) -> frozenset[str]:
        if sid in bottom:
            return frozenset({sid})
        return frozenset().union(*(parts_of(c) for c in children[sid]))

    S = pd.DataFrame(
        [[1.0 if b in parts_of(sid) else 0.0 for b in bottom] for sid in aggregates + bottom],
        index=pd.Index(aggregates + bottom, name="series_id"),
        columns=pd.Index(bottom, name="bottom"),
    )
    tags = {
        level: np.array([sid for sid in ids if _level_of(sid) == level], dtype=object)
        for level in _LEVELS
        if any(_level_of(sid) == level for sid in ids)
    }
    return Hierarchy(aggregates=aggregates, bottom=bottom, S=S, tags=tags)


# --- forecasts in and out ----------------------------------------------------------------------------------


def _hierarchy_rows(
    forecasts: pd.DataFrame, hierarchy: Hierarchy, require_same_dates: bool = True
) -> tuple[pd.DataFrame, Hierarchy, list]:
    """The checked forecasts (fresh index), the hierarchy over the series present, and the sorted dates."""
    missing = [c for c in FORECAST_COLUMNS if c not in forecasts.columns]
    if missing:
        raise ValueError(f"forecasts: column(s) {', '.join(missing)} missing; expected {', '.join(FORECAST_COLUMNS)}")
    frame = forecasts.reset_index(drop=True)
    duplicated = frame.duplicated(["series_id", "ds"])
    if duplicated.any():
        first = frame.loc[duplicated].iloc[0]
        raise ValueError(
            f"forecasts: {duplicated.sum()} duplicate (series_id, ds) rows, e.g. {first.series_id} {first.ds}"
        )
    present = set(frame["series_id"])
    if not present.issuperset(hierarchy.series_ids):
        hierarchy = hierarchy.restricted_to(present)
    rows = frame.loc[frame["series_id"].isin(hierarchy.series_ids)]
    no_mean = rows.loc[rows["yhat"].isna(), "series_id"].unique()
    if len(no_mean):
        raise ValueError(f"forecasts: no yhat for {_some(no_mean)}; every series of the hierarchy needs one")
    if require_same_dates:
        _check_same_dates(rows, hierarchy)
    return frame, hierarchy, sorted(rows["ds"].unique())


def _check_same_dates(rows: pd.DataFrame, hierarchy: Hierarchy) -> None:
    dates = rows.groupby("series_id")["ds"].agg(frozenset)
    if dates.nunique() <= 1:
        return
    # The dates most series share are the reference (on a tie, those of the highest-level series).
    order = {sid: i for i, sid in enumerate(hierarchy.series_ids)}
    counts = dates.value_counts()
    reference = min(counts.index, key=lambda d: (-counts[d], min(order[s] for s, v in dates.items() if v == d)))
    odd = sorted((sid for sid in dates.index if dates[sid] != reference), key=order.__getitem__)
    details = []
    for sid in odd[:5]:
        lacking, extra = sorted(reference - dates[sid]), sorted(dates[sid] - reference)
        parts = [f"{label} {_some(values, 3)}" for label, values in (("lacks", lacking), ("adds", extra)) if values]
        details.append(f"{sid} ({'; '.join(parts)})")
    more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
    raise ValueError(
        f"forecasts: the dates of {', '.join(details)}{more} differ from those of the other {len(dates) - len(odd)} "
        "series of the hierarchy; reconciliation needs all, route:* and segment:* forecast for the same dates"
    )


def _moved(rows: pd.DataFrame, new: np.ndarray) -> dict[str, np.ndarray]:
    """yhat and the interval bounds of ``rows`` moved to the reconciled means ``new``, keeping each side's width."""
    yhat = np.clip(rows["yhat"].to_numpy(dtype=float), 0.0, None)
    moved = {"yhat": new}
    for lo_col, hi_col in PUBLISHED_INTERVALS:
        below = np.clip(yhat - rows[lo_col].to_numpy(dtype=float), 0.0, None)
        above = np.clip(rows[hi_col].to_numpy(dtype=float) - yhat, 0.0, None)
        moved[lo_col], moved[hi_col] = np.clip(new - below, 0.0, None), new + above
    # Nested: clipping at 0 can move the 80% bound below the 95% one. A missing (NaN) bound stays missing.
    moved["lo95"] = np.where(moved["lo80"] < moved["lo95"], moved["lo80"], moved["lo95"])
    moved["hi95"] = np.where(moved["hi80"] > moved["hi95"], moved["hi80"], moved["hi95"])
    return moved


def _pivot(rows: pd.DataFrame, hierarchy: Hierarchy, ds: list) -> np.ndarray:
    """yhat as a (series in ``hierarchy`` order) × (ds) array; NaN where a series has no forecast for a date."""
    wide = rows.pivot(index="series_id", columns="ds", values="yhat")
    return wide.reindex(index=list(hierarchy.series_ids), columns=ds).to_numpy(dtype=float)


def _aligned_residuals(residuals: pd.DataFrame, hierarchy: Hierarchy) -> np.ndarray:
    """Residuals as a (series in ``hierarchy`` order) × (key) array, only keys where every series has one."""
    missing = [c for c in RESIDUAL_COLUMNS if c not in residuals.columns]
    if missing:
        raise ValueError(f"residuals: column(s) {', '.join(missing)} missing; expected {', '.join(RESIDUAL_COLUMNS)}")
    ours = residuals.loc[residuals["series_id"].isin(hierarchy.series_ids), RESIDUAL_COLUMNS]
    duplicated = ours.duplicated(["series_id", "key"])
    if duplicated.any():
        first = ours.loc[duplicated].iloc[0]
        raise ValueError(
            f"residuals: {duplicated.sum()} duplicate (series_id, key) rows, e.g. {first.series_id} {first.key}"
        )
    wide = ours.pivot(index="series_id", columns="key", values="residual").reindex(index=list(hierarchy.series_ids))
    values = wide.to_numpy(dtype=float)
    return values[:, np.isfinite(values).all(axis=0)]


def _some(values: Iterable[object], n: int = 5) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:n]) + (f" and {len(values) - n} more" if len(values) > n else "")


# --- the arithmetic ----------------------------------------------------------------------------------------


def _reconciled_bottom(
    S: np.ndarray, base: np.ndarray, n_aggs: int, method: str, errors: np.ndarray | None
) -> tuple[np.ndarray, str]:
    """Non-negative bottom forecasts (bottom × ds) from ``base`` (series × ds, ≥ 0), and the method used."""
    if n_aggs == 0:
        return base, "bottom_up"
    for candidate in _FALLBACKS[method]:
        if candidate == "bottom_up":
            return base[n_aggs:], candidate
        try:
            return _min_trace(S, base, n_aggs, candidate, errors), candidate
        except _Unusable as exc:
            logger.info("reconciliation: %s not used (%s); trying the next method", candidate, exc)
        except Exception as exc:  # hierarchicalforecast raises bare Exception for ill-conditioned problems
            logger.warning("reconciliation: %s failed (%s); trying the next method", candidate, exc)
    raise AssertionError("unreachable: bottom_up ends every fallback chain")


def _min_trace(S: np.ndarray, base: np.ndarray, n_aggs: int, method: str, errors: np.ndarray | None) -> np.ndarray:
    """MinTrace bottom forecasts, non-negative; _Unusable when ``errors`` cannot estimate mint_shrink's W."""
    from hierarchicalforecast.methods import MinTrace

    options: dict = {}
    insample: dict = {}
    if method == "mint_shrink":
        if errors is None:
            raise _Unusable("no residuals")
        if errors.shape[1] < MIN_RESIDUAL_KEYS:
            raise _Unusable(f"{errors.shape[1]} residual key(s) shared by all series, fewer than {MIN_RESIDUAL_KEYS}")
        largest = float(np.var(errors, axis=1).max())
        if largest == 0.0:
            raise _Unusable("every residual variance is 0")
        options = {"mint_shr_ridge": _RELATIVE_VARIANCE_FLOOR * largest}
        insample = {"y_insample": errors, "y_hat_insample": np.zeros_like(errors)}
    with warnings.catch_warnings():
        # qpsolvers warns on every solve that it converted dense matrices to sparse ones.
        warnings.filterwarnings("ignore", module="qpsolvers")
        reconciler = MinTrace(method=method, **options)
        bottom = _reconciled_means(reconciler, S, base, insample)[n_aggs:]
        eigenvalues = np.linalg.eigvalsh(reconciler.W)
        if not eigenvalues.min() > eigenvalues.max() / _MAX_CONDITION:
            raise _Unusable("the covariance estimate of the residuals is singular")
        if not np.isfinite(bottom).all():
            raise _Unusable("non-finite reconciled forecasts")
        if bottom.min() < -1e-9 * max(1.0, float(base.max())):
            # The closed form went negative: solve the constrained programme. Its solution comes back as float32.
            reconciler = MinTrace(method=method, nonnegative=True, **options)
            bottom = _reconciled_means(reconciler, S, base, insample)[n_aggs:]
    return np.clip(bottom, 0.0, None)


def _reconciled_means(reconciler: Any, S: np.ndarray, base: np.ndarray, insample: dict) -> np.ndarray:
    """hierarchicalforecast's reconciled point forecasts (series × ds) of the ``yhat`` in ``base``.

    hierarchicalforecast names them ``mean`` (its methods take ``y_hat`` in and return a dict); this is the one place
    that reads its output.
    """
    return reconciler.fit_predict(S=S, y_hat=base, **insample)["mean"]
