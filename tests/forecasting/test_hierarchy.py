"""Reconciliation across all → route → segment: structure, bottom-up and MinTrace by hand, and a property."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.linalg import hadamard

from forecasting.hierarchy import (
    HIERARCHY_KEY_COLUMNS,
    METHODS,
    RECONCILED_COLUMNS,
    coherence_gap,
    hierarchy_from_keys,
    reconcile,
)
from forecasting.selection import FORECAST_COLUMNS

DS1, DS2 = pd.Timestamp("2025-01-06"), pd.Timestamp("2025-01-07")


def keys_of(*series_ids: str) -> pd.DataFrame:
    """Key rows (series_id, level, route_id, segment_id) of density ids, as jobs.stages.series writes them."""
    rows = []
    for sid in series_ids:
        if sid == "all":
            rows.append((sid, "all", None, None))
        elif sid.startswith("route:"):
            rows.append((sid, "route", sid.removeprefix("route:"), None))
        else:
            route, segment = sid.removeprefix("segment:").split("/")
            rows.append((sid, "segment", route, segment))
    return pd.DataFrame(rows, columns=HIERARCHY_KEY_COLUMNS)


TWO_ROUTES = keys_of("all", "route:a", "route:b", "segment:a/1", "segment:a/2", "segment:b/1")


def forecasts_of(rows: dict[tuple[str, pd.Timestamp], tuple[float, float, float, float, float]]) -> pd.DataFrame:
    """FORECAST_COLUMNS from {(series_id, ds): (yhat, lo80, hi80, lo95, hi95)}; the model is 'm'."""
    return pd.DataFrame(
        [(sid, ds, *map(float, values), "m") for (sid, ds), values in rows.items()], columns=FORECAST_COLUMNS
    )


def by_series(frame: pd.DataFrame, ds: pd.Timestamp = DS1, column: str = "yhat") -> dict[str, float]:
    at = frame.loc[frame["ds"] == ds]
    return dict(zip(at["series_id"], at[column], strict=True))


def one_route(a1: float, a2: float, route: float) -> pd.DataFrame:
    """route:a = segment:a/1 + segment:a/2 on one day, intervals ±1 and ±2."""
    return forecasts_of(
        {
            (sid, DS1): (v, v - 1, v + 1, v - 2, v + 2)
            for sid, v in (("route:a", route), ("segment:a/1", a1), ("segment:a/2", a2))
        }
    )


def orthogonal_residuals(scales: dict[str, float]) -> pd.DataFrame:
    """Residuals whose sample covariance is exactly diagonal, with standard deviation ∝ each series' scale.

    Rows 1.. of a Hadamard matrix are ±1, zero-mean and orthogonal: zero sample correlation, so the shrinkage
    estimate is the diagonal whatever its intensity. The constant 1 added does not change any covariance;
    hierarchicalforecast refuses residuals that all sum to 0 (it takes them for an overfitted model).
    """
    signs = hadamard(8)[1 : len(scales) + 1]
    return pd.DataFrame(
        [
            (sid, key, 1.0 + scale * sign)
            for (sid, scale), row in zip(scales.items(), signs, strict=True)
            for key, sign in enumerate(row)
        ],
        columns=["series_id", "key", "residual"],
    )


# --- structure --------------------------------------------------------------------------------------------


def test_the_summing_matrix_of_two_routes_a_segmentless_route_and_series_outside():
    keys = pd.concat(
        [
            keys_of("all", "route:a", "route:b", "route:c", "segment:a/1", "segment:a/2", "segment:b/1"),
            pd.DataFrame(
                [("frontex/route:a", "route", "a", None), ("flow:a/1>2", "flow", "a", "1")],
                columns=HIERARCHY_KEY_COLUMNS,
            ),
        ]
    )
    hierarchy = hierarchy_from_keys(keys)
    assert hierarchy.aggregates == ("all", "route:a", "route:b")
    # route:c has no segment series: it is a bottom series itself
    assert hierarchy.bottom == ("route:c", "segment:a/1", "segment:a/2", "segment:b/1")
    assert hierarchy.S.to_numpy().tolist() == [
        [1, 1, 1, 1],  # all
        [0, 1, 1, 0],  # route:a
        [0, 0, 0, 1],  # route:b: its one segment
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
    ]
    assert list(hierarchy.S.index) == list(hierarchy.series_ids)
    assert {level: list(ids) for level, ids in hierarchy.tags.items()} == {
        "all": ["all"],
        "route": ["route:a", "route:b", "route:c"],
        "segment": ["segment:a/1", "segment:a/2", "segment:b/1"],
    }


def test_segments_of_a_route_without_its_own_series_add_up_to_all_directly():
    hierarchy = hierarchy_from_keys(keys_of("all", "route:b", "segment:a/1", "segment:a/2", "segment:b/1"))
    assert hierarchy.aggregates == ("all", "route:b")
    assert hierarchy.S.loc["all"].to_dict() == {"segment:a/1": 1, "segment:a/2": 1, "segment:b/1": 1}


def test_a_lone_route_has_nothing_to_reconcile_and_comes_back_unchanged():
    hierarchy = hierarchy_from_keys(keys_of("route:a"))
    assert (hierarchy.aggregates, hierarchy.bottom) == ((), ("route:a",))
    forecasts = forecasts_of({("route:a", DS1): (3.0, 2.0, 4.0, 1.0, 5.0)})
    out = reconcile(forecasts, hierarchy)
    assert out[FORECAST_COLUMNS].equals(forecasts) and out["reconciliation"].tolist() == ["bottom_up"]


def test_a_member_id_that_disagrees_with_its_route_is_refused():
    keys = keys_of("all", "segment:a/1").assign(route_id=["x", "b"])
    with pytest.raises(ValueError, match=r"'segment:a/1' has level='segment', route_id='b'.*'segment:b/1'"):
        hierarchy_from_keys(keys)


# --- bottom-up by hand -------------------------------------------------------------------------------------

BASE = forecasts_of(
    {
        # ds1: route:a 12 but its segments add to 15, route:b 18 but 20, all 40 but 35
        ("all", DS1): (40, 30, 50, 2, 60),
        ("route:a", DS1): (12, 9, 16, 7, 20),
        ("route:b", DS1): (18, 14, 23, 10, 27),
        ("segment:a/1", DS1): (10, 8, 13, 6, 15),
        ("segment:a/2", DS1): (5, 4, 7, 3, 9),
        ("segment:b/1", DS1): (20, 15, 24, 12, 30),
        # ds2: route:a 9 but 8, all 14 but 11; every interval ±1 (80%) and ±2 (95%)
        **{
            (sid, DS2): (v, v - 1, v + 1, v - 2, v + 2)
            for sid, v in (
                ("all", 14),
                ("route:a", 9),
                ("route:b", 3),
                ("segment:a/1", 6),
                ("segment:a/2", 2),
                ("segment:b/1", 3),
            )
        },
    }
)


def test_bottom_up_by_hand_moves_each_interval_with_its_mean():
    hierarchy = hierarchy_from_keys(TWO_ROUTES)
    assert coherence_gap(BASE, hierarchy) == 5  # all: 40 vs 10 + 5 + 20
    out = reconcile(BASE, hierarchy, method="bottom_up")
    assert list(out.columns) == RECONCILED_COLUMNS
    assert out["reconciliation"].unique().tolist() == ["bottom_up"]
    bounds = out.set_index(["series_id", "ds"])[["yhat", "lo80", "hi80", "lo95", "hi95"]]
    assert bounds.loc[("route:a", DS1)].tolist() == [15, 12, 19, 10, 23]  # 12 → 15: every bound +3
    assert bounds.loc[("route:b", DS1)].tolist() == [20, 16, 25, 12, 29]
    # 40 → 35; lo95 was 38 below the mean: 35 - 38 < 0 is clipped to 0
    assert bounds.loc[("all", DS1)].tolist() == [35, 25, 45, 0, 55]
    assert bounds.loc[("route:a", DS2)].tolist() == [8, 7, 9, 6, 10]
    assert bounds.loc[("all", DS2)].tolist() == [11, 10, 12, 9, 13]
    # the bottom series keep their forecasts; so does the model column
    segments = out["series_id"].str.startswith("segment:")
    assert out.loc[segments, FORECAST_COLUMNS].equals(BASE.loc[segments, FORECAST_COLUMNS])
    assert out["model"].equals(BASE["model"])
    assert coherence_gap(out, hierarchy) == 0


# --- MinTrace ----------------------------------------------------------------------------------------------


def test_without_residuals_mint_shrink_falls_back_to_ols_which_splits_the_gap_evenly():
    # min (30 - a1 - a2)² + (10 - a1)² + (10 - a2)²: a1 = a2 = 40/3, route 80/3; each moved by the gap 10 / 3
    out = reconcile(
        one_route(a1=10, a2=10, route=30), hierarchy_from_keys(keys_of("route:a", "segment:a/1", "segment:a/2"))
    )
    assert out["reconciliation"].unique().tolist() == ["ols"]
    assert by_series(out) == pytest.approx({"route:a": 80 / 3, "segment:a/1": 40 / 3, "segment:a/2": 40 / 3})
    assert by_series(out, column="hi95") == pytest.approx(
        {"route:a": 86 / 3, "segment:a/1": 46 / 3, "segment:a/2": 46 / 3}
    )


def test_mint_shrink_moves_the_series_whose_errors_are_large():
    # W = diag(1, 0.01, 100) (up to a common factor): the gap of 10 goes to each series in proportion to its variance
    hierarchy = hierarchy_from_keys(keys_of("route:a", "segment:a/1", "segment:a/2"))
    residuals = orthogonal_residuals({"route:a": 1.0, "segment:a/1": 0.1, "segment:a/2": 10.0})
    out = reconcile(one_route(a1=10, a2=10, route=30), hierarchy, residuals=residuals)
    assert out["reconciliation"].unique().tolist() == ["mint_shrink"]
    total = 1 + 0.01 + 100
    assert by_series(out) == pytest.approx(
        {"route:a": 30 - 10 * 1 / total, "segment:a/1": 10 + 10 * 0.01 / total, "segment:a/2": 10 + 10 * 100 / total}
    )
    # bottom-up would say route:a = 20, ols 26.67; here it barely moves (29.90) and segment:a/2 takes the gap


def test_mint_shrink_is_non_negative_where_its_closed_form_is_not():
    # Unconstrained, segment:a/2 (noisy) would absorb route 0 - segment:a/1 10: about -10. With segment:a/2 held
    # at 0, the trusted route:a (0) and segment:a/1 (10), equally precise, meet half-way: 5.
    hierarchy = hierarchy_from_keys(keys_of("route:a", "segment:a/1", "segment:a/2"))
    residuals = orthogonal_residuals({"route:a": 0.1, "segment:a/1": 0.1, "segment:a/2": 10.0})
    out = reconcile(one_route(a1=10, a2=0, route=0), hierarchy, residuals=residuals)
    assert out["reconciliation"].unique().tolist() == ["mint_shrink"]
    assert by_series(out) == pytest.approx({"route:a": 5, "segment:a/1": 5, "segment:a/2": 0}, abs=1e-4)
    assert (out[["yhat", "lo80", "hi80", "lo95", "hi95"]] >= 0).all().all()


def test_mint_shrink_over_three_levels_adds_up_and_uses_correlated_residuals():
    hierarchy = hierarchy_from_keys(TWO_ROUTES)
    rng = np.random.default_rng(7)
    n = 40
    a1, a2, b1 = rng.normal(0, 2, n), rng.normal(0, 1, n), rng.normal(0, 4, n)
    errors = {
        "segment:a/1": a1,
        "segment:a/2": a2,
        "segment:b/1": b1,
        "route:a": a1 + a2 + rng.normal(0, 1, n),
        "route:b": b1 + rng.normal(0, 1, n),
        "all": a1 + a2 + b1 + rng.normal(0, 2, n),
    }
    residuals = pd.DataFrame(
        [(sid, key, float(e)) for sid, values in errors.items() for key, e in enumerate(values)],
        columns=["series_id", "key", "residual"],
    )
    out = reconcile(BASE, hierarchy, residuals=residuals)
    assert out["reconciliation"].unique().tolist() == ["mint_shrink"]
    assert coherence_gap(out, hierarchy) < 1e-6
    assert (out[["yhat", "lo80", "hi80", "lo95", "hi95"]] >= 0).all().all()
    # not bottom-up: the segments moved too
    assert by_series(out)["segment:b/1"] != pytest.approx(20, abs=0.01)


@pytest.mark.parametrize(
    "residuals",
    [
        pytest.param(orthogonal_residuals({"route:a": 1.0, "segment:a/1": 1.0}), id="a series without residuals"),
        pytest.param(
            orthogonal_residuals({"route:a": 1.0, "segment:a/1": 0.1, "segment:a/2": 10.0}).query("key < 2"),
            id="two aligned keys: a singular covariance",
        ),
        pytest.param(
            orthogonal_residuals({"route:a": 1.0, "segment:a/1": 1.0, "segment:a/2": 1.0}).assign(residual=0.0),
            id="all residuals 0",
        ),
    ],
)
def test_mint_shrink_falls_back_to_ols_when_residuals_cannot_estimate_a_covariance(residuals):
    hierarchy = hierarchy_from_keys(keys_of("route:a", "segment:a/1", "segment:a/2"))
    out = reconcile(one_route(a1=10, a2=10, route=30), hierarchy, residuals=residuals)
    assert out["reconciliation"].unique().tolist() == ["ols"]
    assert by_series(out)["route:a"] == pytest.approx(80 / 3)


# --- what passes through, what is refused ------------------------------------------------------------------


def test_series_outside_the_hierarchy_come_back_unchanged():
    outside = forecasts_of(
        {
            ("frontex/route:a", DS1): (123.0, 100.0, 150.0, 90.0, 160.0),
            ("flow:a/1>2", DS1): (4.0, 3.0, 5.0, 2.0, 6.0),
            ("flow:a/1>2", pd.Timestamp("2025-02-01")): (-1.0, -2.0, 0.0, -3.0, 1.0),  # not even clipped
        }
    )
    forecasts = pd.concat([outside.iloc[:1], BASE, outside.iloc[1:]], ignore_index=True)
    out = reconcile(forecasts, hierarchy_from_keys(TWO_ROUTES), method="bottom_up")
    assert out["series_id"].tolist() == forecasts["series_id"].tolist()
    kept = out.loc[[0, len(forecasts) - 2, len(forecasts) - 1]]
    assert kept[FORECAST_COLUMNS].reset_index(drop=True).equals(outside)
    assert kept["reconciliation"].isna().all() and out["reconciliation"].notna().sum() == len(BASE)


def test_hierarchy_series_forecast_for_other_dates_are_named():
    forecasts = BASE.drop(BASE.index[(BASE["series_id"] == "segment:a/2") & (BASE["ds"] == DS2)])
    with pytest.raises(ValueError, match=r"segment:a/2 \(lacks 2025-01-07"):
        reconcile(forecasts, hierarchy_from_keys(TWO_ROUTES))


def test_a_route_missing_a_segment_forecast_becomes_a_bottom_series():
    # segment:a/2 was not forecast: route:a is no longer the sum of what is there, so it is not imposed;
    # all = route:a + route:b still is, and route:b = segment:b/1.
    forecasts = BASE.loc[BASE["series_id"] != "segment:a/2"].reset_index(drop=True)
    hierarchy = hierarchy_from_keys(TWO_ROUTES)
    restricted = hierarchy.restricted_to(forecasts["series_id"])
    assert restricted.aggregates == ("all", "route:b")
    assert restricted.S.loc["all"].to_dict() == {"route:a": 1, "segment:a/1": 0, "segment:b/1": 1}
    out = reconcile(forecasts, hierarchy, method="bottom_up")
    assert out["series_id"].tolist() == forecasts["series_id"].tolist()
    assert by_series(out) == {"all": 32, "route:a": 12, "route:b": 20, "segment:a/1": 10, "segment:b/1": 20}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: reconcile(BASE, h, method="top_down"), "unknown reconciliation method 'top_down'"),
        (lambda h: reconcile(BASE.drop(columns="lo95"), h), r"column\(s\) lo95 missing"),
        (lambda h: reconcile(pd.concat([BASE, BASE.iloc[:1]]), h), r"1 duplicate \(series_id, ds\) rows, e.g. all"),
        (
            lambda h: reconcile(BASE.assign(yhat=np.where(BASE["series_id"] == "all", np.nan, 1.0)), h),
            "no yhat for all",
        ),
    ],
)
def test_malformed_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(hierarchy_from_keys(TWO_ROUTES))


# --- property ----------------------------------------------------------------------------------------------


@st.composite
def reconciliation_cases(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """Keys, forecasts and residuals of a random small hierarchy (plus a series outside it), and a method."""
    ids = ["all"] if draw(st.booleans()) else []
    for r in range(draw(st.integers(1, 4))):
        segments = [f"segment:r{r}/s{s}" for s in range(draw(st.integers(0, 4)))]
        if not segments or draw(st.booleans()):
            ids.append(f"route:r{r}")
        ids += segments
    n, h = len(ids), draw(st.integers(1, 3))
    ds = pd.date_range(DS1, periods=h)
    yhat = draw(arrays(float, (n, h), elements=st.floats(0, 1000)))
    below = draw(arrays(float, (n, h), elements=st.floats(0, 1000)))
    above = draw(arrays(float, (n, h), elements=st.floats(0, 1000)))
    rows = [
        (sid, d, y, max(y - b / 2, 0), y + a / 2, max(y - b, 0), y + a, "m")
        for sid, ys, bs, as_ in zip(ids, yhat, below, above, strict=True)
        for d, y, b, a in zip(ds, ys, bs, as_, strict=True)
    ]
    rows += [("frontex/route:r0", d, 5.0, 4.0, 6.0, 3.0, 7.0, "m") for d in ds]
    forecasts = pd.DataFrame(rows, columns=FORECAST_COLUMNS)
    n_keys = draw(st.integers(0, 8))
    errors = draw(arrays(float, (n, n_keys), elements=st.floats(-100, 100)))
    residuals = pd.DataFrame(
        [(sid, k, e) for sid, es in zip(ids, errors, strict=True) for k, e in enumerate(es)],
        columns=["series_id", "key", "residual"],
    )
    return keys_of(*ids), forecasts, residuals, draw(st.sampled_from(METHODS[::-1]))


@given(reconciliation_cases())
@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reconciled_forecasts_add_up_are_non_negative_and_keep_every_row(case):
    keys, forecasts, residuals, method = case
    hierarchy = hierarchy_from_keys(keys)
    out = reconcile(forecasts, hierarchy, method=method, residuals=residuals)

    assert out[["series_id", "ds"]].equals(forecasts[["series_id", "ds"]])
    assert coherence_gap(out, hierarchy) <= 1e-6 * max(1.0, forecasts["yhat"].max())
    lo95, lo80, yhat, hi80, hi95 = (out[c].to_numpy() for c in ("lo95", "lo80", "yhat", "hi80", "hi95"))
    assert (lo95 >= 0).all() and (lo95 <= lo80).all() and (lo80 <= yhat).all()
    assert (yhat <= hi80).all() and (hi80 <= hi95).all()
    members = out["series_id"].isin(hierarchy.series_ids)
    assert out.loc[members, "reconciliation"].isin(METHODS).all()
    assert out.loc[~members, FORECAST_COLUMNS].equals(forecasts.loc[~members, FORECAST_COLUMNS])
    assert out.loc[~members, "reconciliation"].isna().all()
