"""Forecast totals: intervals of the sum of the next k periods, calibrated on past totals' misses."""

from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.published import TOTAL_QUANTILES
from forecasting.backtest import median_point
from forecasting.selection import SelectionConfig, select
from forecasting.totals import (
    MIN_TOTAL_SCORES,
    TOTAL_PROBS,
    TOTALS_COLUMNS,
    forecast_totals,
    total_quantiles,
    total_scores,
    widen_totals,
)
from tests.forecasting.fakes import series_frame


def _backtest(cutoffs: int, steps: int, y: float, mean: float) -> pd.DataFrame:
    rows = [
        {
            "cutoff": pd.Timestamp("2025-01-01") + pd.Timedelta(days=7 * c),
            "step": s,
            "y": y,
            "mean": mean,
            "error": None,
        }
        for c in range(cutoffs)
        for s in range(1, steps + 1)
    ]
    return pd.DataFrame(rows)


def test_the_published_quantiles_are_the_ones_forecasting_makes():
    assert TOTAL_PROBS == TOTAL_QUANTILES


def test_a_totals_score_is_the_relative_miss_of_the_sum_and_needs_every_step():
    bt = _backtest(cutoffs=3, steps=7, y=10.0, mean=5.0)
    bt = bt[~((bt["cutoff"] == bt["cutoff"].max()) & (bt["step"] == 7))]  # the last cutoff lacks its 7th day
    scores = total_scores(bt, 7)
    assert scores.tolist() == pytest.approx([np.log1p(70) - np.log1p(35)] * 2)
    assert len(total_scores(bt, 6)) == 3


@settings(max_examples=200, deadline=None)
@given(
    total=st.floats(min_value=0, max_value=1e6),
    scores=st.lists(st.floats(min_value=-5, max_value=5), min_size=0, max_size=80),
)
def test_quantiles_of_a_total_are_ordered_and_never_negative(total, scores):
    quantiles = total_quantiles(total, np.array(scores))
    if len(scores) < MIN_TOTAL_SCORES:
        assert quantiles is None
        return
    assert len(quantiles) == len(TOTAL_PROBS)
    assert (np.diff(quantiles) >= 0).all() and (quantiles >= 0).all()


def test_with_many_scores_the_quantiles_are_those_of_the_misses():
    rng = np.random.default_rng(3)
    sigma = 0.4
    quantiles = total_quantiles(1000.0, rng.normal(0, sigma, 4000))
    expected = [np.expm1(np.log1p(1000.0) + sigma * NormalDist().inv_cdf(p)) for p in TOTAL_PROBS]
    assert quantiles == pytest.approx(expected, rel=0.04)


def test_quantiles_beyond_one_sided_ranks_come_from_deviations_around_the_median_miss():
    # 20 scores: the 97.5 % rank (21) is beyond them; the 95 % central deviation rank is ceil(21 x 0.95) = 20.
    scores = np.linspace(-1.0, 1.0, 20) ** 3  # skewed deviations
    quantiles = np.log1p(total_quantiles(1000.0, scores)) - np.log1p(1000.0)  # the scores themselves
    median = float(np.median(scores))
    deviation = np.sort(np.abs(scores - median))[19]
    assert quantiles[TOTAL_PROBS.index(0.975)] == pytest.approx(median + deviation)
    assert quantiles[TOTAL_PROBS.index(0.025)] == pytest.approx(median - deviation)


def test_with_too_few_scores_even_for_deviations_the_80_interval_is_widened_as_a_normal_one():
    # 10 scores: no rank for 97.5 % one-sided (needs 39) nor central (needs 19): z(0.975) / z(0.9) times the 80 %.
    scores = np.linspace(-1.0, 1.0, 10)
    quantiles = np.log1p(total_quantiles(1000.0, scores)) - np.log1p(1000.0)
    q90 = scores[int(np.ceil(11 * 0.9)) - 1]
    median = float(np.median(scores))
    z = NormalDist().inv_cdf(0.975) / NormalDist().inv_cdf(0.9)
    assert quantiles[TOTAL_PROBS.index(0.975)] == pytest.approx(median + (q90 - median) * z)
    assert quantiles[TOTAL_PROBS.index(0.975)] > scores.max()


def test_the_80_and_95_intervals_of_a_total_cover_what_they_say_on_fresh_outcomes():
    # Split conformal: misses drawn from one distribution, 24 past ones calibrate, a new one is covered at the rate
    # (the 95 % interval from the deviations around the median: 24 is too few for its one-sided ranks).
    rng = np.random.default_rng(11)
    hits = {80: 0, 95: 0}
    trials = 3000
    for _ in range(trials):
        past, new = rng.standard_t(4, 24) * 0.3, rng.standard_t(4) * 0.3
        quantiles = np.log1p(total_quantiles(1000.0, past)) - np.log1p(1000.0)
        for level, (lo, hi) in {80: (0.1, 0.9), 95: (0.025, 0.975)}.items():
            hits[level] += quantiles[TOTAL_PROBS.index(lo)] <= new <= quantiles[TOTAL_PROBS.index(hi)]
    assert 0.77 <= hits[80] / trials <= 0.85
    assert 0.93 <= hits[95] / trials <= 0.98


def test_forecast_totals_sum_the_means_and_say_which_days_they_cover():
    bt = _backtest(cutoffs=12, steps=7, y=10.0, mean=10.0)
    bt.loc[bt.index % 3 == 0, "y"] = 14.0  # misses on some days, so the interval has width
    prediction = pd.DataFrame({"ds": pd.date_range("2025-06-02", periods=7), "mean": [10.0] * 7})
    out = forecast_totals("s", "ensemble", bt, prediction, windows=(7, 3, 28), freq="D")
    assert list(out.columns) == TOTALS_COLUMNS
    assert out["window"].tolist() == [3, 7]  # 28 days is longer than the prediction: left out
    week = out.set_index("window").loc[7]
    assert week["yhat"] == 70.0 and week["n_scores"] == 12
    assert (week["start"], week["end"]) == (pd.Timestamp("2025-06-02"), pd.Timestamp("2025-06-08"))
    assert week["lo95"] <= week["lo80"] <= week["yhat"] <= week["hi80"] <= week["hi95"]
    assert len(week["quantiles"]) == len(TOTAL_PROBS)


def test_a_monthly_total_ends_on_the_last_day_of_its_last_month_and_too_few_scores_give_none():
    bt = _backtest(cutoffs=12, steps=3, y=100.0, mean=90.0)
    prediction = pd.DataFrame({"ds": pd.date_range("2025-01-01", periods=3, freq="MS"), "mean": [90.0] * 3})
    out = forecast_totals("s", "m", bt, prediction, windows=(1, 3), freq="M")
    assert out.set_index("window")["end"].tolist() == [pd.Timestamp("2025-01-31"), pd.Timestamp("2025-03-31")]
    few = forecast_totals("s", "m", bt[bt["cutoff"] < bt["cutoff"].unique()[8]], prediction, windows=(1,), freq="M")
    assert few.empty  # 8 past totals < MIN_TOTAL_SCORES


def test_selection_makes_totals_only_as_far_as_its_backtest_reaches():
    rng = np.random.default_rng(5)
    values = rng.poisson(30, 400).astype(float)
    cfg = SelectionConfig(
        candidates=("window_mean", "naive"), holdout=14, horizon=28, origins=20, step=7, totals=(7, 14, 28)
    )
    found = select(series_frame("s", values), cfg)
    assert found.totals["window"].tolist() == [7, 14]  # 28 > holdout: nothing to calibrate it on
    first_week = found.forecast["yhat"].head(7).sum()
    assert found.totals.iloc[0]["yhat"] == pytest.approx(first_week)


def test_the_median_point_of_a_bursty_count_is_below_its_mean_and_inside_its_80_interval():
    # Most days nothing, one day in five a crossing of 50: the backtest's mean of 10 is above most outcomes.
    bt = _backtest(cutoffs=10, steps=5, y=0.0, mean=10.0)
    bt.loc[bt["step"] == 3, "y"] = 50.0
    prediction = pd.DataFrame(
        {"ds": pd.date_range("2025-06-02", periods=2), "mean": [10.0, 10.0], "lo-80": [0.0, 5.0], "hi-80": [40.0] * 2}
    )
    point = median_point(bt, prediction, "log1p")["mean"]
    assert point.tolist() == [pytest.approx(0.0), 5.0]  # the median outcome, kept inside the 80 % interval
    # The totals of a median-point selection are still sums of the expected values.
    with pytest.raises(ValueError, match="space='cubic'"):
        median_point(bt, prediction, "cubic")


def test_widening_by_an_estimates_own_error_covers_a_truth_the_backtest_cannot_see():
    """A series that is an estimate: the forecast follows it (misses ~ 0.1 in log), but the estimate is off the truth
    by a level error ~ 0.3 in log. The backtest's interval covers the estimate, not the truth; widened by sigma 0.3
    it covers the truth at about its rate, and its median stays."""
    rng = np.random.default_rng(5)
    hits = {"raw": 0, "widened": 0}
    trials = 2000
    for _ in range(trials):
        past, new = rng.normal(0, 0.1, 40), rng.normal(0, 0.1)
        level_error = rng.normal(0, 0.3)
        total = 1000.0
        quantiles = total_quantiles(total, past)
        row = {"series_id": "people/route:r", "yhat": total, "quantiles": list(quantiles)}
        row.update({k: np.nan for k in ("lo80", "hi80", "lo95", "hi95")})
        frame = pd.DataFrame([row])
        widened = widen_totals(frame, pd.Series({"people/route:r": 0.3})).iloc[0]
        truth = np.expm1(np.log1p(total) + new + level_error)
        hits["raw"] += quantiles[TOTAL_PROBS.index(0.1)] <= truth <= quantiles[TOTAL_PROBS.index(0.9)]
        hits["widened"] += widened["lo80"] <= truth <= widened["hi80"]
        mid = TOTAL_PROBS.index(0.5)
        assert widened["quantiles"][mid] == pytest.approx(quantiles[mid])
        assert widened["lo95"] <= widened["lo80"] <= total <= widened["hi80"] <= widened["hi95"]
    assert hits["raw"] / trials < 0.45  # the backtest alone: far too narrow for the truth
    assert 0.76 <= hits["widened"] / trials <= 0.84


def test_widening_leaves_series_without_a_sigma_alone():
    quantiles = list(total_quantiles(100.0, np.linspace(-0.2, 0.2, 20)))
    frame = pd.DataFrame(
        [
            {
                "series_id": s,
                "yhat": 100.0,
                "lo80": 90.0,
                "hi80": 110.0,
                "lo95": 80.0,
                "hi95": 120.0,
                "quantiles": quantiles,
            }
            for s in ("a", "b")
        ]
    )
    out = widen_totals(frame, pd.Series({"a": 0.5, "b": float("nan")}))
    assert out.iloc[1].equals(frame.iloc[1])
    assert out.iloc[0]["hi80"] > 110.0 and out.iloc[0]["lo80"] < 90.0
