import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasting.selection import (
    FORECAST_COLUMNS,
    METRICS_COLUMNS,
    MODEL_FACTORIES,
    PERIOD_DEFAULTS,
    SelectionConfig,
    UnknownModelError,
    as_arrow_table,
    forecast_schema,
    make_model,
    metrics_schema,
    select,
    select_and_forecast,
)
from tests.conftest import SHARED_DATA
from tests.forecasting.fakes import AlwaysFails, Flat, series_frame

WEEK = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
BUMPS = [0.0, 5.0, 10.0, 20.0, 15.0, -5.0, -10.0]
FAKES = {**MODEL_FACTORIES, "always_fails": lambda cfg: AlwaysFails(), "flat": lambda cfg: Flat()}


def weekly(n_days: int) -> list[float]:
    return (WEEK * (n_days // 7 + 1))[:n_days]


def test_a_pure_weekly_pattern_picks_seasonal_naive_and_continues_it():
    rows = series_frame("route:a", weekly(56)).assign(level="route")  # extra columns are ignored
    rows = rows.sample(frac=1.0, random_state=0)  # and row order does not matter
    forecast, metrics = select_and_forecast(rows)

    assert list(forecast.columns) == FORECAST_COLUMNS and list(metrics.columns) == METRICS_COLUMNS
    # 56 days = 8 full weeks starting Monday: the forecast starts on a Monday again.
    assert forecast["yhat"].tolist() == WEEK * 4
    assert forecast["ds"].iloc[0] == pd.Timestamp("2025-03-03") and len(forecast) == 28
    assert (forecast["model"] == "seasonal_naive").all() and (forecast["series_id"] == "route:a").all()
    # No seasonal residuals at all: sigma is 0, so the intervals collapse onto the forecast.
    assert (forecast["lo95"] == forecast["yhat"]).all() and (forecast["hi95"] == forecast["yhat"]).all()

    naive = metrics.set_index("model").loc["seasonal_naive"]
    assert naive["mase"] == 0.0 and naive["mae"] == 0.0 and naive["chosen"]
    assert metrics["chosen"].sum() == 1


def test_a_trend_with_weekly_bumps_picks_prophet():
    t = np.arange(90)
    values = 100 + 3 * t + np.array(BUMPS * 13)[:90]
    forecast, metrics = select_and_forecast(series_frame("route:b", values))
    scores = metrics.set_index("model")

    # Seasonal naive misses the trend by 3/day * 7 days per season: errors 21 for holdout days 1-7 and 42
    # for days 8-14 -> MAE 31.5; the in-sample seasonal differences are all 21 -> MASE 1.5.
    assert scores.loc["seasonal_naive", "mae"] == pytest.approx(31.5)
    assert scores.loc["seasonal_naive", "mase"] == pytest.approx(1.5)
    assert scores.loc["prophet", "mase"] < 1.0
    assert scores.loc["prophet", "chosen"] and not scores.loc["seasonal_naive", "chosen"]
    assert (forecast["model"] == "prophet").all() and len(forecast) == 28
    # The forecast continues upward from the last observed week (about 100 + 3 * 89 = 367).
    assert forecast["yhat"].iloc[-7:].mean() > values[-7:].mean()


def test_a_failing_candidate_is_recorded_and_never_chosen():
    cfg = SelectionConfig(candidates=("always_fails", "seasonal_naive"))
    forecast, metrics = select_and_forecast(series_frame("cell:1", weekly(35)), cfg, FAKES)
    failed = metrics.set_index("model").loc["always_fails"]
    assert failed["error"] == "backtest: always_fails: RuntimeError: solver diverged"
    assert failed["mase"] == math.inf and math.isnan(failed["mae"]) and not failed["chosen"]
    assert (forecast["model"] == "seasonal_naive").all()
    assert metrics.set_index("model").loc["seasonal_naive", "error"] is None


def test_ties_go_to_the_first_candidate():
    # A constant series: both flat and seasonal naive are perfect on the holdout (MASE 0).
    constant = [5.0] * 35
    for candidates in [("flat", "seasonal_naive"), ("seasonal_naive", "flat")]:
        cfg = SelectionConfig(candidates=candidates)
        forecast, metrics = select_and_forecast(series_frame("s", constant), cfg, FAKES)
        # The median of the two ("ensemble", built after the candidates) is perfect too and loses the tie.
        assert metrics["model"].tolist() == [*candidates, "ensemble"]
        assert metrics["mase"].tolist() == [0.0, 0.0, 0.0]
        assert forecast["model"].iloc[0] == candidates[0]


def test_a_champion_that_fails_the_refit_hands_over_to_the_runner_up():
    # Flat fits the 21 training days, wins the tie, then refuses the full 35 days.
    factories = {**FAKES, "flat": lambda cfg: Flat(max_length=21)}
    cfg = SelectionConfig(candidates=("flat", "seasonal_naive"))
    forecast, metrics = select_and_forecast(series_frame("s", [5.0] * 35), cfg, factories)
    flat = metrics.set_index("model").loc["flat"]
    assert flat["mase"] == 0.0 and not flat["chosen"]
    assert flat["error"] == "refit: flat: MemoryError: 35 days is more than this model can hold"
    assert (forecast["model"] == "seasonal_naive").all() and forecast["yhat"].tolist() == [5.0] * 28


def test_when_every_candidate_fails_the_forecast_is_empty_and_nothing_is_chosen():
    cfg = SelectionConfig(candidates=("always_fails",))
    forecast, metrics = select_and_forecast(series_frame("s", weekly(35)), cfg, FAKES)
    assert forecast.empty and list(forecast.columns) == FORECAST_COLUMNS
    assert not metrics["chosen"].any() and metrics["error"].notna().all()


def test_a_missing_day_is_refused_naming_the_series_and_the_first_gap():
    rows = series_frame("segment:x/y", weekly(40))
    rows = rows.drop(index=[10, 11, 30])  # 2025-01-16, 2025-01-17 and 2025-02-05
    with pytest.raises(ValueError, match="'segment:x/y': 3 missing day\\(s\\), first gap at 2025-01-16"):
        select_and_forecast(rows)


def test_days_may_arrive_as_python_dates_as_spark_hands_date_columns_to_pandas():
    rows = series_frame("s", weekly(35))
    rows["ds"] = [d.date() for d in rows["ds"]]
    forecast, _ = select_and_forecast(rows, FAST)
    assert forecast["ds"].iloc[0] == pd.Timestamp("2025-02-10") and forecast["yhat"].tolist() == WEEK * 2


def test_a_repeated_day_is_refused():
    rows = series_frame("s", weekly(35))
    rows = pd.concat([rows, rows.iloc[[3]]])
    with pytest.raises(ValueError, match="'s': day 2025-01-09 appears more than once"):
        select_and_forecast(rows)


def test_a_short_series_is_refused_naming_the_series_and_its_length():
    with pytest.raises(ValueError, match="'cell:9': 27 days is too short.*at least.* 28"):
        select_and_forecast(series_frame("cell:9", weekly(27)))


def test_unknown_aliases_are_a_key_error_listing_the_known_ones():
    known = (
        "adida, auto_arima, auto_ets, auto_theta, croston, drift, imapa, naive, pooled_lgbm, prophet, seasonal_naive, "
        "seasonal_naive_year, seasonal_window, tsb, window_mean"
    )
    with pytest.raises(UnknownModelError, match=f"unknown model alias 'arima'; known: {known}"):
        make_model("arima", SelectionConfig())
    assert issubclass(UnknownModelError, KeyError)
    with pytest.raises(KeyError):
        select_and_forecast(series_frame("s", weekly(35)), SelectionConfig(candidates=("arima",)))


def test_outputs_match_the_declared_arrow_schemas():
    cfg = SelectionConfig(candidates=("always_fails", "seasonal_naive"))
    forecast, metrics = select_and_forecast(series_frame("s", weekly(35)), cfg, FAKES)
    forecast_table = as_arrow_table(forecast, forecast_schema())
    metrics_table = as_arrow_table(metrics, metrics_schema())
    assert forecast_table.schema.equals(forecast_schema()) and forecast_table.num_rows == 28
    assert forecast_table.column("ds")[0].as_py().isoformat() == "2025-02-10"
    # A failed candidate's scores become nulls, not NaN, in Arrow; its MASE stays inf.
    failed = metrics_table.to_pylist()[0]
    assert failed["mae"] is None and failed["mase"] == math.inf and failed["chosen"] is False


FAST = SelectionConfig(holdout=7, horizon=14, season_length=7, candidates=("seasonal_naive",))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=FAST.min_length,
        max_size=60,
    )
)
def test_forecast_bounds_are_ordered_and_non_negative_for_any_counts(values):
    forecast, _ = select_and_forecast(series_frame("s", values), FAST)
    ordered = forecast[["lo95", "lo80", "yhat", "hi80", "hi95"]].to_numpy()
    assert len(forecast) == FAST.horizon
    assert (ordered[:, 0] >= 0).all()
    assert (np.diff(ordered, axis=1) >= 0).all()


# --- weekly and monthly series ------------------------------------------------------------------------------

# A year of months with a summer peak, as sea crossings have.
YEAR = [10.0, 12.0, 20.0, 40.0, 80.0, 120.0, 150.0, 140.0, 90.0, 50.0, 20.0, 12.0]
MONTHLY = SelectionConfig.for_freq("M")
FRONTEX_BY_ROUTE = SHARED_DATA / "frontex_ibc_monthly_by_route.csv"


def test_periods_default_per_freq_and_can_be_overridden():
    assert (MONTHLY.holdout, MONTHLY.horizon, MONTHLY.season_length, MONTHLY.freq) == (6, 6, 12, "M")
    assert SelectionConfig(freq="M") == MONTHLY
    assert PERIOD_DEFAULTS["W"][2] == 52 and SelectionConfig.for_freq("W").min_length == 8 + 2 * 52
    assert SelectionConfig() == SelectionConfig.for_freq("D") == SelectionConfig(14, 28, 7)
    assert SelectionConfig.for_freq("M", holdout=12, horizon=3).min_length == 12 + 2 * 12
    with pytest.raises(ValueError, match="freq='Y' must be one of"):
        SelectionConfig.for_freq("Y")


def test_a_monthly_pattern_gets_its_seasonal_naive_forecast_on_month_starts():
    # Four years from January 2020: the holdout (Jul-Dec 2023) is the pattern again, so seasonal naive is
    # exact (MASE 0) and forecasts January to June 2024 as YEAR[:6].
    forecast, metrics = select_and_forecast(series_frame("route:m", YEAR * 4, "2020-01-01", "M"), MONTHLY)
    naive = metrics.set_index("model").loc["seasonal_naive"]
    assert naive["mase"] == 0.0 and naive["chosen"]
    assert forecast["yhat"].tolist() == YEAR[:6] and (forecast["model"] == "seasonal_naive").all()
    expected = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]
    assert forecast["ds"].dt.strftime("%Y-%m-%d").tolist() == expected


def test_a_weekly_series_forecasts_the_following_mondays():
    weeks = [float(w % 52) for w in range(2 * 52 + 8)]  # 112 Mondays from 6 Jan 2025, a 52-week ramp
    cfg = SelectionConfig.for_freq("W", candidates=("seasonal_naive",))
    forecast, _ = select_and_forecast(series_frame("route:w", weeks, "2025-01-06", "W"), cfg)
    # The last of the 112 Mondays is 22 Feb 2027 (111 weeks after 6 Jan 2025); the forecast starts a week later.
    assert forecast["ds"].iloc[0] == pd.Timestamp("2027-03-01")
    assert (forecast["ds"].dt.dayofweek == 0).all() and len(forecast) == 12
    assert forecast["yhat"].tolist() == [float(w) for w in range(8, 20)]  # week 112 is week 8 of the ramp


def test_a_monthly_series_dated_off_the_first_is_refused():
    rows = series_frame("frontex/route:x", YEAR * 3, "2020-01-01", "M")
    rows.loc[5, "ds"] = pd.Timestamp("2020-06-15")
    with pytest.raises(ValueError, match="'frontex/route:x': ds 2020-06-15 is not the 1st of a month"):
        select_and_forecast(rows, MONTHLY)
    # A daily series handed a monthly config is refused the same way, on its first day (Monday 6 January).
    with pytest.raises(ValueError, match="'s': ds 2025-01-06 is not the 1st of a month"):
        select_and_forecast(series_frame("s", weekly(60)), MONTHLY)


def test_missing_months_are_refused_naming_the_first_gap():
    rows = series_frame("iom-dtm/route:y", YEAR * 3, "2020-01-01", "M").drop(index=[7, 8])  # Aug, Sep 2020
    with pytest.raises(ValueError, match="'iom-dtm/route:y': 2 missing month\\(s\\), first gap at 2020-08-01"):
        select_and_forecast(rows, MONTHLY)


def test_a_short_monthly_series_is_refused_in_months():
    with pytest.raises(ValueError, match="'m': 29 months is too short.*= 30"):
        select_and_forecast(series_frame("m", (YEAR * 3)[:29], "2020-01-01", "M"), MONTHLY)


def test_a_candidate_that_dates_its_forecast_daily_on_a_monthly_series_is_recorded_as_failed():
    cfg = SelectionConfig.for_freq("M", candidates=("flat", "seasonal_naive"))
    forecast, metrics = select_and_forecast(series_frame("m", YEAR * 3, "2020-01-01", "M"), cfg, FAKES)
    flat = metrics.set_index("model").loc["flat"]
    # Training ends on 1 Jun 2022; flat dates its first step the next day instead of 1 Jul.
    assert flat["error"] == (
        "backtest: flat: ValueError: predict dated step 1 2022-06-02; the series' next period is 2022-07-01"
    )
    assert (forecast["model"] == "seasonal_naive").all()


def _frontex_route(name: str) -> pd.DataFrame:
    if not FRONTEX_BY_ROUTE.is_file():
        pytest.skip(f"real data absent: {FRONTEX_BY_ROUTE} (the shared folder beside the repository)")
    frame = pd.read_csv(FRONTEX_BY_ROUTE, dtype={"route": str, "count": "int64"}, parse_dates=["date"])
    rows = frame[frame["route"] == name]
    return pd.DataFrame({"series_id": f"frontex/{name}", "ds": rows["date"], "y": rows["count"].astype(float)})


@pytest.mark.parametrize(
    "route",
    ["Central Mediterranean Route", "Western African Route", "Black Sea Route"],  # busy, bursty, mostly zeros
)
def test_frontex_monthly_detections_forecast_six_months_with_ordered_non_negative_intervals(route):
    rows = _frontex_route(route)
    assert len(rows) == 184  # January 2009 to April 2024
    forecast, metrics = select_and_forecast(rows, MONTHLY)
    assert metrics["error"].isna().all() and metrics["chosen"].sum() == 1
    expected = ["2024-05-01", "2024-06-01", "2024-07-01", "2024-08-01", "2024-09-01", "2024-10-01"]
    assert forecast["ds"].dt.strftime("%Y-%m-%d").tolist() == expected
    ordered = forecast[["lo95", "lo80", "yhat", "hi80", "hi95"]].to_numpy()
    assert (ordered >= 0).all() and (np.diff(ordered, axis=1) >= 0).all()
    # Not degenerate: the 95% band is wider than the 80% band in some month.
    assert (forecast["hi95"] - forecast["lo95"] > forecast["hi80"] - forecast["lo80"]).any()


# --- backtest over rolling origins, ensemble, calibration ----------------------------------------------------


class Const:
    """Forecasts ``value`` whatever the data, ±1 at every level."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.alias = f"const{value:g}"

    def fit(self, y: pd.Series) -> "Const":
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels=(80, 95)) -> pd.DataFrame:
        from forecasting.protocol import forecast_frame, future_dates

        mean = np.full(h, self.value)
        return forecast_frame(future_dates(self.last_ds_, h), mean, {lv: (mean - 1, mean + 1) for lv in levels})


CONSTS = {"const1": lambda cfg: Const(1.0), "const5": lambda cfg: Const(5.0)}


def test_the_median_of_the_best_candidates_competes_and_can_win():
    # Actuals are always 3: each constant misses by 2, their median (here the mean of two) is exact.
    cfg = SelectionConfig(candidates=("const1", "const5"), ensemble_top=2, origins=3, calibrate=False)
    forecast, metrics = select_and_forecast(series_frame("s", [3.0] * 60), cfg, CONSTS)
    scores = metrics.set_index("model")
    assert scores.loc["const1", "mae"] == scores.loc["const5", "mae"] == 2.0
    assert scores.loc["ensemble", "mae"] == 0.0 and scores.loc["ensemble", "chosen"]
    assert (forecast["model"] == "ensemble").all() and (forecast["yhat"] == 3.0).all()
    # No ensemble when asked for none.
    _, metrics = select_and_forecast(
        series_frame("s", [3.0] * 60), SelectionConfig(candidates=("const1", "const5"), ensemble_top=0), CONSTS
    )
    assert "ensemble" not in set(metrics["model"])


def test_calibration_widens_intervals_that_missed_in_the_backtest():
    # Flat's ±1 intervals know nothing of noise with sd 10: calibration from 5 origins x 14 days widens them.
    values = 100 + np.random.default_rng(0).normal(0, 10, 120)
    raw = SelectionConfig(candidates=("flat",), origins=5, ensemble_top=0, calibrate=False)
    calibrated = SelectionConfig(candidates=("flat",), origins=5, ensemble_top=0, calibrate=True)
    before, metrics = select_and_forecast(series_frame("s", values), raw, FAKES)
    after, _ = select_and_forecast(series_frame("s", values), calibrated, FAKES)
    assert metrics.loc[0, "coverage80"] < 0.2  # what the raw intervals achieved in the backtest
    assert ((before["hi80"] - before["yhat"]) == 1.0).all()
    assert ((after["hi80"] - after["yhat"]) > 5.0).all() and (after["yhat"] == before["yhat"]).all()
    assert ((after["hi95"] >= after["hi80"]) & (after["lo95"] <= after["lo80"])).all()


def test_origins_that_would_train_on_less_than_two_seasons_are_skipped():
    # 35 days, holdout 14: one origin has 21 >= 14 training days; asking for 10 origins a week apart still works.
    cfg = SelectionConfig(candidates=("seasonal_naive",), origins=10, step=7)
    forecast, metrics = select_and_forecast(series_frame("s", weekly(35)), cfg)
    assert metrics.loc[0, "mae"] == 0.0 and len(forecast) == 28


@pytest.mark.parametrize("alias", ["naive", "drift", "window_mean", "auto_ets", "auto_theta", "auto_arima"])
def test_every_registered_model_competes_in_selection(alias):
    # A weekly pattern on a level of 100: every model fits it and forecasts 28 days with ordered bounds.
    values = [100 + v for v in weekly(70)]
    cfg = SelectionConfig(candidates=(alias, "seasonal_naive"), ensemble_top=0)
    forecast, metrics = select_and_forecast(series_frame("s", values), cfg)
    row = metrics.set_index("model").loc[alias]
    assert row["error"] is None and np.isfinite(row["mae"])
    assert make_model(alias).alias == alias and len(forecast) == 28


def test_champion_ensemble_is_the_mean_of_the_candidates_even_when_one_of_them_is_perfect():
    # Seasonal naive is exact on a repeated week and would win on MAE; with champion="ensemble" the mean of naive
    # (the last value, 70) and seasonal naive (the week) is published instead, uncalibrated here to check by hand.
    cfg = SelectionConfig(
        holdout=7,
        horizon=7,
        candidates=("naive", "seasonal_naive"),
        ensemble_top=2,
        ensemble_stat="mean",
        champion="ensemble",
        calibrate=False,
    )
    forecast, metrics = select_and_forecast(series_frame("s", WEEK * 5), cfg)
    assert forecast["model"].unique().tolist() == ["ensemble"]
    assert forecast["yhat"].tolist() == [(70 + v) / 2 for v in WEEK]
    chosen = metrics.set_index("model")["chosen"]
    assert chosen["ensemble"] and not chosen["seasonal_naive"] and not chosen["naive"]
    # The default picks the best on the backtest: the perfect one.
    default = SelectionConfig(holdout=7, horizon=7, candidates=("naive", "seasonal_naive"), ensemble_top=2)
    best, _ = select_and_forecast(series_frame("s", WEEK * 5), default)
    assert best["model"].unique().tolist() == ["seasonal_naive"]


@pytest.mark.parametrize("field, value", [("ensemble_stat", "mode"), ("champion", "worst")])
def test_unknown_ensemble_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SelectionConfig(**{field: value})


def test_an_inverse_mae_ensemble_weighs_each_step_by_how_well_each_member_forecast_it():
    # A pure weekly pattern: seasonal naive is exact at every step of its backtest, naive is not, so the weighted
    # ensemble is seasonal naive's forecast; the plain mean of the two is not.
    cfg = SelectionConfig(
        candidates=("naive", "seasonal_naive"), ensemble_top=2, champion="ensemble", origins=4, step=7
    )
    weighted = select(series_frame("s", weekly(84)), replace(cfg, ensemble_stat="inverse_mae")).forecast
    plain = select(series_frame("s", weekly(84)), replace(cfg, ensemble_stat="mean")).forecast
    assert weighted["yhat"].tolist() == pytest.approx(WEEK * 4)
    assert plain["yhat"].tolist() != pytest.approx(WEEK * 4)
    with pytest.raises(ValueError, match="ensemble_stat='weighted' must be 'median', 'mean' or 'inverse_mae'"):
        SelectionConfig(ensemble_stat="weighted")
