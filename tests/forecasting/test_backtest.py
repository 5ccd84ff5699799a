"""Rolling-origin backtests, their scores and conformal calibration, on series whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from forecasting.backtest import (
    ConformalCalibrator,
    backtest_scores,
    conformal_quantile,
    pinball_loss,
    rolling_origin_backtest,
    rolling_origins,
)
from forecasting.models.baselines import SeasonalNaive
from tests.forecasting.fakes import AlwaysFails, Flat, daily


def test_rolling_origins_end_one_horizon_before_the_end_and_step_back():
    assert rolling_origins(20, horizon=3, origins=4, step=2) == [11, 13, 15, 17]
    # Origins with too little training data are dropped, not shortened.
    assert rolling_origins(10, horizon=3, origins=5, step=2, min_train=4) == [5, 7]
    with pytest.raises(ValueError, match="no origin"):
        rolling_origins(5, horizon=3, origins=2, min_train=3)


def test_backtest_refits_at_each_origin_on_past_data_only():
    y = daily(range(10))  # 0..9
    bt = rolling_origin_backtest(y, Flat, cutoffs=[5, 7], horizon=2)
    # Flat forecasts the last training value: 4 from cutoff 5, 6 from cutoff 7.
    assert bt["mean"].tolist() == [4, 4, 6, 6]
    assert bt["y"].tolist() == [5, 6, 7, 8]
    assert bt["step"].tolist() == [1, 2, 1, 2]
    assert list(bt["cutoff"].dt.day) == [10, 10, 12, 12]  # the last training day: Jan 10 and Jan 12
    assert bt["error"].isna().all()


def test_a_failing_model_gives_nan_rows_with_its_error():
    bt = rolling_origin_backtest(daily(range(10)), AlwaysFails, cutoffs=[5], horizon=2)
    assert bt["mean"].isna().all()
    assert bt["error"].str.contains("solver diverged").all()
    assert np.isnan(backtest_scores(bt, scale=1.0)["mae"])


def test_scores_by_hand():
    y = daily(range(10))
    bt = rolling_origin_backtest(y, Flat, cutoffs=[5, 7], horizon=2)
    scores = backtest_scores(bt, scale=2.0)
    # Errors 1, 2, 1, 2; Flat's intervals are mean ± 1 at every level, so only the step-1 actuals are inside.
    assert scores["mae"] == pytest.approx(1.5)
    assert scores["rmse"] == pytest.approx(np.sqrt(2.5))
    assert scores["mase"] == pytest.approx(0.75)
    assert scores["coverage80"] == scores["coverage95"] == pytest.approx(0.5)
    assert scores["width80"] == pytest.approx(2.0)


def test_pinball_loss_by_hand():
    # q = 0.9, actual 10, forecast 8: under-forecast costs 0.9 * 2; forecast 12: over-forecast costs 0.1 * 2.
    assert pinball_loss(np.array([10.0]), {0.9: np.array([8.0])}) == pytest.approx(1.8)
    assert pinball_loss(np.array([10.0]), {0.9: np.array([12.0])}) == pytest.approx(0.2)


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 11.0)  # 1..10
    assert conformal_quantile(scores, 80) == 9.0  # ceil(11 * 0.8) = 9th smallest
    assert conformal_quantile(scores, 95) == 10.0  # ceil(11 * 0.95) = 11 > n: the largest


def test_calibration_widens_too_narrow_intervals_to_the_target_coverage():
    # Noise the Flat model knows nothing about: its ±1 intervals cover far less than 80 %.
    rng = np.random.default_rng(7)
    y = daily(100 + rng.normal(0, 5, 400))
    cutoffs = rolling_origins(len(y), horizon=1, origins=300, min_train=20)
    bt = rolling_origin_backtest(y, Flat, cutoffs=cutoffs, horizon=1)
    calibrate, held_out = bt.iloc[:200], bt.iloc[200:].reset_index(drop=True)
    assert backtest_scores(held_out, 1.0)["coverage80"] < 0.3
    calibrator = ConformalCalibrator.from_backtest(calibrate)
    calibrated = calibrator.apply(held_out, steps=held_out["step"])
    covered = ((calibrated["lo-80"] <= held_out["y"]) & (held_out["y"] <= calibrated["hi-80"])).mean()
    assert 0.75 <= covered <= 0.85
    assert ((calibrated["lo-95"] <= calibrated["lo-80"]) & (calibrated["hi-80"] <= calibrated["hi-95"])).all()


def test_calibration_uses_per_step_shifts_when_there_are_enough_scores():
    # Seasonal naive on a pure weekly pattern with growing noise: later steps miss by more.
    rng = np.random.default_rng(3)
    pattern = np.tile([10.0, 20, 30, 40, 50, 60, 70], 40)
    y = daily(pattern + rng.normal(0, 1, len(pattern)) * np.tile(np.arange(1, 8), 40))
    cutoffs = rolling_origins(len(y), horizon=7, origins=30, min_train=21)
    bt = rolling_origin_backtest(y, lambda: SeasonalNaive(7), cutoffs=cutoffs, horizon=7)
    calibrator = ConformalCalibrator.from_backtest(bt, min_scores=8)
    assert set(calibrator.shifts[80]) == set(range(1, 8))
    few = ConformalCalibrator.from_backtest(bt.iloc[:35], min_scores=8)  # 5 origins: 5 scores per step
    assert few.shifts[80] == {}
    assert few.shift(80, 3) == few.pooled[80]


def test_a_level_with_too_few_scores_is_left_as_the_model_gave_it():
    # 10 scores: enough for 80 % (rank ceil(11 * 0.8) = 9 <= 10), not for 95 % (rank 11 > 10).
    bt = rolling_origin_backtest(daily(np.arange(40.0) * 3), Flat, cutoffs=list(range(30, 40)), horizon=1)
    calibrator = ConformalCalibrator.from_backtest(bt)
    assert 80 in calibrator.pooled and 95 not in calibrator.pooled
    assert calibrator.shift(95, 1) == 0.0
    # Flat misses a +3/day ramp by 3 at step 1: the 80 % interval (±1) widens by 2 to reach it.
    assert calibrator.shift(80, 1) == pytest.approx(2.0)
    # The 95 % interval is not the model's ±1 clipped to the calibrated 80 % one (lo95 == lo80): it is the calibrated
    # 80 % widened as a normal interval is, ±3 × z95 / z80.
    out = calibrator.apply(Flat().fit(daily(np.full(30, 50.0))).predict(2))
    assert out["lo-80"].tolist() == pytest.approx([47.0, 47.0]) and out["hi-80"].tolist() == pytest.approx([53.0] * 2)
    assert out["lo-95"].tolist() == pytest.approx([50 - 3 * 1.959964 / 1.281552] * 2, rel=1e-5)
    assert out["hi-95"].tolist() == pytest.approx([50 + 3 * 1.959964 / 1.281552] * 2, rel=1e-5)


def test_log1p_calibration_widens_by_a_factor_that_follows_the_level():
    # Every actual sits at 1.5x (on 1 + y) the model's upper bound: on log1p the score is log(1.5) everywhere,
    # so the calibrated upper bound is (1 + hi) * 1.5 - 1 at any level, where an absolute shift would not scale.
    hi = np.array([9.0, 99.0, 999.0] * 10)
    y = (1 + hi) * 1.5 - 1
    bt = pd.DataFrame(
        {
            "cutoff": pd.Timestamp("2025-01-05"),
            "step": np.tile([1, 2, 3], 10),
            "ds": pd.Timestamp("2025-01-06"),
            "y": y,
            "mean": hi / 2,
            "lo-80": hi / 4,
            "hi-80": hi,
            "lo-95": hi / 8,
            "hi-95": hi * 1.2,
            "error": None,
        }
    )
    calibrator = ConformalCalibrator.from_backtest(bt, (80,), space="log1p")
    prediction = pd.DataFrame(
        {
            "ds": pd.date_range("2025-02-03", periods=2),
            "mean": [5.0, 500.0],
            "lo-80": [2.0, 200.0],
            "hi-80": [9.0, 999.0],
        }
    )
    out = calibrator.apply(prediction)
    assert out["hi-80"].to_numpy() == pytest.approx([15.0 - 1, 1500.0 - 1])
    # The lower bound moves down by the same factor: (1 + lo) / 1.5 - 1.
    assert out["lo-80"].to_numpy() == pytest.approx([3 / 1.5 - 1, 201 / 1.5 - 1])
    with pytest.raises(ValueError, match="space"):
        ConformalCalibrator.from_backtest(bt, (80,), space="sqrt")
