import math
import pickle

import numpy as np
import pandas as pd
import pytest

from forecasting.models.baselines import Drift, Naive, SeasonalWindow, WindowAverage
from forecasting.protocol import Forecaster, NotFittedError
from tests.forecasting.fakes import PANDAS_FREQ, daily, periodic

Z80 = 1.2815515655446004  # standard normal 90% quantile: central 80% interval
Z95 = 1.959963984540054  # 97.5% quantile: central 95% interval

# Small counts with zeros and a weekly shape, as a quiet route has.
SMALL_COUNTS = [0, 2, 3, 1, 4, 0, 0, 1, 3, 2, 2, 5, 1, 0, 0, 2, 4, 3, 3, 0, 0] * 2


def all_baselines(freq: str = "D") -> list[Forecaster]:
    return [Naive(freq=freq), Drift(freq=freq), WindowAverage(freq=freq)]


def test_naive_repeats_the_last_value_and_widens_like_a_random_walk():
    # residuals 2-1 = 1 and 4-2 = 2 -> sigma = sqrt((1 + 4) / 2)
    model = Naive().fit(daily([1, 2, 4]))
    sigma = math.sqrt(2.5)
    assert model.sigma_ == pytest.approx(sigma)
    forecast = model.predict(4)
    assert forecast["mean"].tolist() == [4, 4, 4, 4]
    assert forecast["hi-80"].tolist() == pytest.approx([4 + Z80 * sigma * math.sqrt(h) for h in (1, 2, 3, 4)])
    assert forecast["lo-95"][0] == pytest.approx(4 - Z95 * sigma)  # 0.90...
    assert forecast["lo-95"][3] == 0.0  # 4 - 1.96 * 1.58 * 2 < 0: clipped


def test_drift_extends_a_straight_line_exactly_with_zero_width_intervals():
    forecast = Drift().fit(daily([3, 5, 7, 9])).predict(3)
    assert forecast["mean"].tolist() == [11, 13, 15]
    for column in ["lo-80", "hi-80", "lo-95", "hi-95"]:
        assert forecast[column].tolist() == [11, 13, 15]


def test_drift_sigma_and_bounds_by_hand():
    # T = 4, slope = (6 - 0) / 3 = 2; residuals (1, 2, 3) - 2 = (-1, 0, 1) -> sigma = sqrt(2/3)
    model = Drift().fit(daily([0, 1, 3, 6]))
    assert model.slope_ == 2 and model.sigma_ == pytest.approx(math.sqrt(2 / 3))
    forecast = model.predict(3)
    assert forecast["mean"].tolist() == [8, 10, 12]
    # sigma_h = sigma * sqrt(h * (1 + h / (T - 1))): h=1 -> sqrt(2/3 * 4/3) = 2*sqrt(2)/3; h=3 -> sqrt(2/3 * 6) = 2
    assert forecast["hi-80"][0] == pytest.approx(8 + Z80 * 2 * math.sqrt(2) / 3)
    assert forecast["hi-95"][2] == pytest.approx(12 + Z95 * 2)
    assert forecast["lo-95"][2] == pytest.approx(12 - Z95 * 2)


def test_window_mean_forecasts_the_mean_of_the_last_window_with_flat_intervals():
    # windows (2, 4) -> 3 predicts 6, (4, 6) -> 5 predicts 8: residuals 3 and 3 -> sigma 3; level (6 + 8) / 2 = 7
    model = WindowAverage(window=2).fit(daily([2, 4, 6, 8]))
    assert model.sigma_ == 3
    forecast = model.predict(3)
    assert forecast["mean"].tolist() == [7, 7, 7]
    assert forecast["hi-80"].tolist() == pytest.approx([7 + Z80 * 3] * 3)
    assert forecast["lo-95"].tolist() == pytest.approx([7 - Z95 * 3] * 3)  # 1.12, not clipped


def test_window_mean_default_window_is_four():
    forecast = WindowAverage().fit(daily([100, 1, 2, 3, 6])).predict(1)
    assert forecast["mean"].tolist() == [3]  # (1 + 2 + 3 + 6) / 4; the 100 is outside the window


@pytest.mark.parametrize(
    ("model", "values", "message"),
    [
        (Naive(), [5], "naive: needs at least 2 observations .*got 1"),
        (Drift(), [5, 6], "drift: needs at least 3 observations .*got 2"),
        (WindowAverage(), [1, 2, 3, 4], "window_mean: needs at least 5 observations .*window of 4.*got 4"),
        (WindowAverage(window=2), [1, 2], "window_mean: needs at least 3 observations .*got 2"),
    ],
    ids=["naive", "drift", "window_mean", "window_mean-2"],
)
def test_too_short_series_are_refused_naming_the_model_and_the_minimum(model, values, message):
    with pytest.raises(ValueError, match=message):
        model.fit(daily(values))


@pytest.mark.parametrize("model", all_baselines(), ids=lambda m: m.alias)
def test_predict_before_fit_is_refused(model):
    assert isinstance(model, Forecaster)
    with pytest.raises(NotFittedError, match=f"{model.alias}: call fit"):
        model.predict(3)


@pytest.mark.parametrize("window", [0, -1, 2.5, True])
def test_window_must_be_a_positive_integer(window):
    with pytest.raises(ValueError, match="window=.* must be an integer >= 1"):
        WindowAverage(window=window)


@pytest.mark.parametrize("freq", ["D", "W", "M"])
@pytest.mark.parametrize("index", [0, 1, 2], ids=["naive", "drift", "window_mean"])
def test_forecasts_are_dated_on_the_grid_of_the_freq(freq, index):
    start = {"D": "2025-01-06", "W": "2025-01-06", "M": "2025-01-01"}[freq]
    y = periodic([4, 6, 5, 7, 6, 8], start, freq)
    forecast = all_baselines(freq)[index].fit(y).predict(3)
    expected = pd.date_range(y.index[-1], periods=4, freq=PANDAS_FREQ[freq])[1:]
    pd.testing.assert_index_equal(pd.DatetimeIndex(forecast["ds"]), expected, check_names=False, exact=False)


@pytest.mark.parametrize("model", all_baselines(), ids=lambda m: m.alias)
def test_bounds_are_ordered_and_non_negative_on_small_counts(model):
    forecast = model.fit(daily(SMALL_COUNTS)).predict(14)
    values = forecast[["lo-95", "lo-80", "mean", "hi-80", "hi-95"]].to_numpy()
    assert (values >= 0).all()
    assert (np.diff(values, axis=1) >= 0).all(), "expected lo95 <= lo80 <= mean <= hi80 <= hi95"
    assert (forecast["hi-95"] > forecast["hi-80"]).all()  # sigma > 0 on this series: the bands differ


@pytest.mark.parametrize("levels", [[0], [100], [80.0], [True]])
def test_invalid_levels_are_refused(levels):
    with pytest.raises(ValueError, match="interval level .* must be an integer percentage"):
        Naive().fit(daily([1, 2, 4])).predict(2, levels=levels)


def test_levels_choose_the_interval_columns_in_ascending_order():
    forecast = Drift().fit(daily([0, 1, 3, 6])).predict(2, levels=[95, 50])
    assert list(forecast.columns) == ["ds", "mean", "lo-50", "hi-50", "lo-95", "hi-95"]


@pytest.mark.parametrize("h", [0, -1, 1.5])
def test_horizon_must_be_a_positive_integer(h):
    with pytest.raises(ValueError, match="horizon h="):
        WindowAverage(window=2).fit(daily([2, 4, 6, 8])).predict(h)


@pytest.mark.parametrize("model", all_baselines(), ids=lambda m: m.alias)
def test_a_fitted_baseline_survives_pickling(model):
    model.fit(daily(SMALL_COUNTS))
    restored = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(restored.predict(10), model.predict(10), check_exact=True)


def test_seasonal_window_forecasts_the_mean_around_the_same_periods_a_season_back():
    # Season 10, half width 2: step s is the mean of the 5 values centred on position n - 1 + s - 10.
    values = list(range(30))
    model = SeasonalWindow(season_length=10, half_width=2).fit(daily(values))
    forecast = model.predict(3)
    # n = 30: step 1 is centred on 20 (18..22), step 2 on 21 (19..23), step 3 on 22 (20..24).
    assert forecast["mean"].tolist() == pytest.approx([20, 21, 22])
    # In sample, y_t is predicted by the window centred on t - 10: here always 10 too low, so sigma = 10.
    assert model.sigma_ == pytest.approx(10.0)
    assert forecast["hi-80"].tolist() == pytest.approx([20 + Z80 * 10, 21 + Z80 * 10, 22 + Z80 * 10])


def test_seasonal_window_clips_its_window_at_the_data_end_and_reuses_the_season_before_beyond_it():
    values = [0.0] * 20 + [10.0] * 10  # the last season is all 10
    forecast = SeasonalWindow(season_length=10, half_width=2).fit(daily(values)).predict(14)["mean"]
    # Step 9 is centred on 28: 26..29 are observed (30 is not), all 10.
    assert forecast[8] == pytest.approx(10.0)
    # Step 13 would be centred on 32, wholly beyond the data: the season before (22) is used, also all 10.
    assert forecast[12] == pytest.approx(10.0)
    # Step 1 is centred on 20: 18, 19 are 0 and 20..22 are 10.
    assert forecast[0] == pytest.approx(6.0)


def test_seasonal_window_refuses_a_series_shorter_than_a_season_and_its_window():
    with pytest.raises(ValueError, match=r"seasonal_window: needs at least 13 observations .* got 12"):
        SeasonalWindow(season_length=10, half_width=2).fit(daily(list(range(12))))
    with pytest.raises(ValueError, match="half_width=10 must be shorter than season_length=10"):
        SeasonalWindow(season_length=10, half_width=10)


def test_window_mean_with_a_shortest_window_uses_what_a_short_series_has():
    model = WindowAverage(window=56, shortest=4).fit(daily([1, 2, 3, 4, 5, 6]))
    assert model.predict(1)["mean"].tolist() == [pytest.approx(4.0)]  # the last 5 values
    with pytest.raises(ValueError, match="window_mean: needs at least 5 observations"):
        WindowAverage(window=56, shortest=4).fit(daily([1, 2, 3, 4]))
