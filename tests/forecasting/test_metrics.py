import math

import pytest

from forecasting.metrics import coverage, mae, mase, rmse

TRAIN = [1.0, 3.0, 2.0, 4.0]  # lag-1 differences 2, 1, 2 -> seasonal naive MAE 5/3 with s=1
ACTUAL = [5.0, 6.0]
PREDICTED = [4.0, 8.0]  # errors 1, 2


def test_mae_and_rmse_by_hand():
    assert mae(ACTUAL, PREDICTED) == 1.5
    assert rmse(ACTUAL, PREDICTED) == pytest.approx(math.sqrt((1 + 4) / 2))


def test_mase_divides_mae_by_the_in_sample_seasonal_naive_mae():
    assert mase(ACTUAL, PREDICTED, TRAIN, season_length=1) == pytest.approx(1.5 / (5 / 3))  # 0.9
    # s=2: differences 2-1=1, 4-3=1 -> scale 1
    assert mase(ACTUAL, PREDICTED, TRAIN, season_length=2) == pytest.approx(1.5)


def test_mase_zero_scale_is_zero_for_a_perfect_forecast_and_inf_otherwise():
    flat = [2.0, 2.0, 2.0]
    assert mase([2.0, 2.0], [2.0, 2.0], flat, season_length=1) == 0.0
    assert mase([2.0, 2.0], [2.0, 2.5], flat, season_length=1) == math.inf


def test_mase_needs_more_training_values_than_a_season():
    with pytest.raises(ValueError, match="more than season_length=7"):
        mase(ACTUAL, PREDICTED, TRAIN, season_length=7)


def test_coverage_counts_closed_intervals():
    # 1 in [0,2] yes; 2 in [2,2] yes (closed); 3 in [4,5] no; 4 in [0,3] no
    assert coverage([1, 2, 3, 4], [0, 2, 4, 0], [2, 2, 5, 3]) == 0.5


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="3 values but the prediction has 2"):
        mae([1, 2, 3], [1, 2])
