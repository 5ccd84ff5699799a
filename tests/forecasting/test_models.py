import math

import numpy as np
import pandas as pd
import pytest

from forecasting.models.base import fit_with_fallback
from forecasting.models.baselines import SeasonalNaive
from forecasting.models.prophet import ProphetForecaster
from forecasting.protocol import Forecaster, NotFittedError, future_dates
from tests.forecasting.fakes import AlwaysFails, daily, periodic

Z80 = 1.2815515655446004  # standard normal 90% quantile: central 80% interval
Z95 = 1.959963984540054  # 97.5% quantile: central 95% interval

# Three weeks; the last one differs so "the last full season" is observable.
WEEK_1 = [10, 20, 30, 40, 50, 60, 70]
WEEK_2 = [12, 22, 32, 42, 52, 62, 72]
WEEK_3 = [15, 25, 35, 45, 55, 65, 75]

# Small counts with zeros, eight weeks, weekly shape: quiet weekends.
SMALL_COUNTS = [0, 2, 3, 1, 4, 0, 0, 1, 3, 2, 2, 5, 1, 0, 0, 2, 4, 3, 3, 0, 0] * 2 + [1, 2, 2, 3, 5, 0, 1] * 2


def test_seasonal_naive_repeats_the_last_week():
    forecast = SeasonalNaive(season_length=7).fit(daily(WEEK_1 + WEEK_2 + WEEK_3)).predict(10)
    assert forecast["mean"].tolist() == WEEK_3 + WEEK_3[:3]
    expected_days = pd.date_range("2025-01-27", periods=10)  # the day after the last fitted day (Sun 26th)
    pd.testing.assert_index_equal(pd.DatetimeIndex(forecast["ds"]), expected_days, check_names=False)
    assert list(forecast.columns) == ["ds", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]


def test_seasonal_naive_interval_for_the_second_week_is_sqrt2_wider():
    forecast = SeasonalNaive(season_length=7).fit(daily(WEEK_1 + WEEK_2 + WEEK_3)).predict(14)
    half_width = forecast["hi-95"] - forecast["mean"]
    assert half_width[7] == pytest.approx(math.sqrt(2) * half_width[0])  # step 8 vs step 1
    assert half_width[13] == pytest.approx(half_width[7])  # k = floor((h-1)/s) is 1 for steps 8..14


def test_seasonal_naive_sigma_and_bounds_by_hand():
    # s=2, y = 0 0 3 4 3 4: residuals y_t - y_{t-2} = 3, 4, 0, 0 -> sigma = sqrt((9+16)/4) = 2.5
    model = SeasonalNaive(season_length=2).fit(daily([0, 0, 3, 4, 3, 4]))
    assert model.sigma_ == 2.5
    forecast = model.predict(3)
    assert forecast["mean"].tolist() == [3, 4, 3]
    assert forecast["hi-80"].tolist() == pytest.approx([3 + Z80 * 2.5, 4 + Z80 * 2.5, 3 + Z80 * 2.5 * math.sqrt(2)])
    assert forecast["hi-95"][0] == pytest.approx(3 + Z95 * 2.5)
    assert forecast["lo-80"][1] == pytest.approx(4 - Z80 * 2.5)  # 0.796...
    # 3 - 1.28 * 2.5 = -0.20 and 3 - 1.96 * 2.5 = -1.9: counts are clipped at zero
    assert forecast["lo-80"][0] == 0.0 and forecast["lo-95"][0] == 0.0


def test_seasonal_naive_needs_a_season_and_one_residual():
    with pytest.raises(ValueError, match="at least season_length \\+ 1 = 8 observations.*got 7"):
        SeasonalNaive(season_length=7).fit(daily(WEEK_1))


@pytest.mark.parametrize("model", [SeasonalNaive(), ProphetForecaster()], ids=lambda m: m.alias)
def test_predict_before_fit_is_refused(model: Forecaster):
    assert isinstance(model, Forecaster)
    with pytest.raises(NotFittedError, match="call fit"):
        model.predict(3)


def test_prophet_intervals_are_ordered_and_non_negative_on_small_counts():
    forecast = ProphetForecaster().fit(daily(SMALL_COUNTS)).predict(28)
    assert len(forecast) == 28
    columns = ["lo-95", "lo-80", "mean", "hi-80", "hi-95"]
    values = forecast[columns].to_numpy()
    assert (values >= 0).all()
    assert (np.diff(values, axis=1) >= 0).all(), "expected lo95 <= lo80 <= mean <= hi80 <= hi95"
    # Not degenerate: the 95% band is wider than the 80% band somewhere.
    assert (forecast["hi-95"] - forecast["lo-95"] > forecast["hi-80"] - forecast["lo-80"]).any()


def test_prophet_is_deterministic_and_leaves_the_global_rng_alone():
    y = daily(SMALL_COUNTS)
    np.random.seed(123)
    expected_next_draw = np.random.rand()
    np.random.seed(123)
    first = ProphetForecaster(seed=7).fit(y).predict(14)
    assert np.random.rand() == expected_next_draw
    second = ProphetForecaster(seed=7).fit(y).predict(14)
    pd.testing.assert_frame_equal(first, second, check_exact=True)


def test_prophet_refuses_negative_values():
    with pytest.raises(ValueError, match="non-negative"):
        ProphetForecaster().fit(daily([1, 2, -1, 3, 4, 5, 6, 7]))


def test_fit_with_fallback_records_why_the_model_was_replaced():
    y = daily(WEEK_1 + WEEK_2)
    fitted, reason = fit_with_fallback(AlwaysFails(), SeasonalNaive(), y)
    assert isinstance(fitted, SeasonalNaive)
    assert fitted.predict(7)["mean"].tolist() == WEEK_2
    assert reason == "always_fails: RuntimeError: solver diverged"


def test_fit_with_fallback_keeps_a_model_that_fits():
    model = SeasonalNaive()
    fitted, reason = fit_with_fallback(model, AlwaysFails(), daily(WEEK_1 + WEEK_2))
    assert fitted is model and reason is None


# A year of months with a summer peak, as sea crossings have; the third year is 10% higher.
YEAR = [10, 12, 20, 40, 80, 120, 150, 140, 90, 50, 20, 12]


def test_seasonal_naive_repeats_the_last_year_on_month_starts():
    y = periodic(YEAR + YEAR + [1.1 * v for v in YEAR], "2021-01-01", "M")
    forecast = SeasonalNaive(season_length=12, freq="M").fit(y).predict(14)
    assert forecast["mean"].tolist() == pytest.approx([1.1 * v for v in YEAR + YEAR[:2]])
    # The months after Dec 2023, each dated on the 1st.
    expected = pd.DatetimeIndex(["2024-01-01", "2024-02-01", "2024-03-01"])
    pd.testing.assert_index_equal(pd.DatetimeIndex(forecast["ds"][:3]), expected, check_names=False)
    assert (pd.DatetimeIndex(forecast["ds"]).day == 1).all() and forecast["ds"].iloc[-1] == pd.Timestamp("2025-02-01")


def test_seasonal_naive_weekly_data_is_dated_on_the_following_mondays():
    y = periodic([5, 7, 9, 5, 7, 9], "2025-01-06", "W")  # season of 3 weeks, Mondays from 6 Jan
    forecast = SeasonalNaive(season_length=3, freq="W").fit(y).predict(4)
    assert forecast["mean"].tolist() == [5, 7, 9, 5]
    expected = pd.DatetimeIndex(["2025-02-17", "2025-02-24", "2025-03-03", "2025-03-10"])
    pd.testing.assert_index_equal(pd.DatetimeIndex(forecast["ds"]), expected, check_names=False)


@pytest.mark.parametrize(
    ("last", "freq", "expected"),
    [
        ("2024-02-28", "D", ["2024-02-29", "2024-03-01"]),  # a leap day
        ("2024-12-30", "W", ["2025-01-06", "2025-01-13"]),  # Mondays across the year end
        ("2024-12-01", "M", ["2025-01-01", "2025-02-01"]),
    ],
)
def test_future_dates_follow_the_grid_of_the_freq(last, freq, expected):
    got = future_dates(pd.Timestamp(last), 2, freq)
    pd.testing.assert_index_equal(got, pd.DatetimeIndex(expected), check_names=False, exact=False)


def test_unknown_freq_and_weekly_seasonality_on_monthly_data_are_refused():
    with pytest.raises(ValueError, match="freq='Q' must be one of D .*W .*M"):
        SeasonalNaive(freq="Q")
    with pytest.raises(ValueError, match="weekly seasonality needs daily data; freq='M'"):
        ProphetForecaster(weekly=True, freq="M")
    assert ProphetForecaster().weekly and not ProphetForecaster(freq="W").weekly


def test_prophet_on_monthly_counts_forecasts_month_starts_with_ordered_bounds():
    y = periodic(YEAR * 4, "2020-01-01", "M")
    forecast = ProphetForecaster(freq="M").fit(y).predict(6)
    pd.testing.assert_index_equal(
        pd.DatetimeIndex(forecast["ds"]), pd.date_range("2024-01-01", periods=6, freq="MS"), check_names=False
    )
    values = forecast[["lo-95", "lo-80", "mean", "hi-80", "hi-95"]].to_numpy()
    assert (values >= 0).all() and (np.diff(values, axis=1) >= 0).all()
    # Yearly seasonality is on (four years of history): June is forecast well above January.
    assert forecast["mean"].iloc[5] > 3 * forecast["mean"].iloc[0]


# A known regressor: y = 100 + 50·x(t) + noise, x a random walk rescaled to [0, 2] over 12 weeks. Over the
# next two weeks x jumps to the other end of its range, so y moves by about 100 that its own past cannot show.
REGRESSOR_WEEKS, REGRESSOR_H = 12, 14


def _known_regressor_case() -> tuple[pd.Series, pd.DataFrame, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    n = 7 * REGRESSOR_WEEKS
    walk = np.cumsum(rng.normal(0.0, 0.2, n))
    x = 2 * (walk - walk.min()) / (walk.max() - walk.min())
    x_future = np.full(REGRESSOR_H, 0.0 if x[-1] > 1 else 2.0)
    days = pd.date_range("2025-01-06", periods=n + REGRESSOR_H)
    y = pd.Series(100 + 50 * x + rng.normal(0.0, 2.0, n), index=days[:n])
    X = pd.DataFrame({"x": x}, index=days[:n])
    X_future = pd.DataFrame({"x": x_future}, index=days[n:])
    return y, X, X_future, 100 + 50 * x_future


@pytest.fixture(scope="module")
def known_regressor_case() -> tuple[pd.Series, pd.DataFrame, pd.DataFrame, np.ndarray]:
    return _known_regressor_case()


@pytest.fixture(scope="module")
def fitted_with_regressor(known_regressor_case) -> ProphetForecaster:
    y, X, _, _ = known_regressor_case
    return ProphetForecaster(regressors=["x"]).fit(y, X)


def test_prophet_with_a_known_regressor_forecasts_the_change_it_brings(known_regressor_case, fitted_with_regressor):
    y, _, X_future, truth = known_regressor_case
    assert abs(truth[0] - y.iloc[-1]) > 80, "the case needs x to jump: y moves by 50 per unit of x"
    with_x = fitted_with_regressor.predict(REGRESSOR_H, X_future=X_future)
    without_x = ProphetForecaster().fit(y).predict(REGRESSOR_H)
    pd.testing.assert_index_equal(pd.DatetimeIndex(with_x["ds"]), X_future.index, check_names=False)
    mae_with = np.abs(with_x["mean"].to_numpy() - truth).mean()
    mae_without = np.abs(without_x["mean"].to_numpy() - truth).mean()
    assert mae_with < 10 < 50 < mae_without, (mae_with, mae_without)
    values = with_x[["lo-95", "lo-80", "mean", "hi-80", "hi-95"]].to_numpy()
    assert (np.diff(values, axis=1) >= 0).all()


def test_prophet_with_a_regressor_is_deterministic(known_regressor_case, fitted_with_regressor):
    y, X, X_future, _ = known_regressor_case
    again = ProphetForecaster(regressors=["x"]).fit(y, X).predict(REGRESSOR_H, X_future=X_future)
    pd.testing.assert_frame_equal(fitted_with_regressor.predict(REGRESSOR_H, X_future=X_future), again)


def _shifted(frame: pd.DataFrame, days: int) -> pd.DataFrame:
    return frame.set_axis(frame.index + pd.Timedelta(days=days))


def _with_nan(frame: pd.DataFrame, row: int) -> pd.DataFrame:
    frame = frame.copy()
    frame.iloc[row, 0] = np.nan
    return frame


@pytest.mark.parametrize(
    ("make_x", "message"),
    [
        (lambda X: None, r"fit needs X with the regressor columns \['x'\]"),
        (lambda X: X.rename(columns={"x": "density"}), r"X lacks the regressor columns \['x'\]; it has \['density'\]"),
        (
            lambda X: _shifted(X, 1),
            r"X must be indexed by the fit dates, 84 rows from 2025-01-06 to 2025-03-30; got 84 rows from 2025-01-07",
        ),
        (lambda X: X.iloc[:-1], r"84 rows from 2025-01-06 to 2025-03-30; got 83 rows"),
        (lambda X: _with_nan(X, 10), r"X column 'x' has missing values \(first at 2025-01-16\)"),
    ],
    ids=["missing", "wrong-column", "shifted-dates", "short", "nan"],
)
def test_prophet_fit_refuses_regressor_values_that_break_the_contract(known_regressor_case, make_x, message):
    y, X, _, _ = known_regressor_case
    with pytest.raises(ValueError, match=message):
        ProphetForecaster(regressors=["x"]).fit(y, make_x(X))


@pytest.mark.parametrize(
    ("make_x", "message"),
    [
        (lambda X: None, r"predict needs X_future with the regressor columns \['x'\]"),
        (lambda X: X.rename(columns={"x": "X"}), r"X_future lacks the regressor columns \['x'\]"),
        (
            lambda X: _shifted(X, -1),
            r"X_future must be indexed by the predict dates, 14 rows from 2025-03-31 to 2025-04-13",
        ),
        (lambda X: X.iloc[:7], r"14 rows from 2025-03-31 to 2025-04-13; got 7 rows"),
        (lambda X: _with_nan(X, 13), r"X_future column 'x' has missing values \(first at 2025-04-13\)"),
    ],
    ids=["missing", "wrong-column", "shifted-dates", "short", "nan"],
)
def test_prophet_predict_refuses_regressor_values_that_break_the_contract(
    known_regressor_case, fitted_with_regressor, make_x, message
):
    _, _, X_future, _ = known_regressor_case
    with pytest.raises(ValueError, match=message):
        fitted_with_regressor.predict(REGRESSOR_H, X_future=make_x(X_future))


def test_prophet_without_declared_regressors_refuses_regressor_values(known_regressor_case):
    y, X, X_future, _ = known_regressor_case
    with pytest.raises(ValueError, match="fit got X but no regressors were declared"):
        ProphetForecaster().fit(y, X)
    fitted = ProphetForecaster().fit(y.iloc[-28:])
    with pytest.raises(ValueError, match="predict got X_future but no regressors were declared"):
        fitted.predict(REGRESSOR_H, X_future=X_future)


def test_prophet_regressor_names_are_checked():
    with pytest.raises(TypeError, match="sequence of column names, not one string"):
        ProphetForecaster(regressors="density")
    with pytest.raises(ValueError, match="name a column more than once"):
        ProphetForecaster(regressors=["density", "density"])
    assert ProphetForecaster(regressors=["a", "b"]).regressors == ("a", "b")
