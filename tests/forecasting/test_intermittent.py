"""The intermittent-demand models (croston, adida, imapa, tsb) on real statsforecast fits (no mocks).

The series are small synthetic counts full of zeros, as the Channel's days are: most days nothing, some days a burst.
"""

import pickle

import numpy as np
import pandas as pd
import pytest

from forecasting.models.statsforecast import INTERMITTENT_KINDS, TSB_ALPHA_D, TSB_ALPHA_P, IntermittentModel
from forecasting.protocol import Forecaster, NotFittedError, normal_quantile
from forecasting.selection import MODEL_FACTORIES, SelectionConfig, make_model, select, select_and_forecast
from tests.forecasting.fakes import daily, periodic, series_frame

BOUNDS = ["lo-95", "lo-80", "mean", "hi-80", "hi-95"]


def intermittent(n: int, seed: int = 7, p: float = 0.3, size: float = 40.0) -> list[float]:
    """``n`` days: a crossing day with probability ``p``, then a Poisson count of mean ``size``; else 0."""
    rng = np.random.default_rng(seed)
    return (rng.random(n) < p) * rng.poisson(size, n).astype("float64")


def statsforecast_model(kind: str):
    from statsforecast.models import ADIDA, IMAPA, TSB, CrostonOptimized

    classes = {"croston": CrostonOptimized, "adida": ADIDA, "imapa": IMAPA}
    return TSB(alpha_d=TSB_ALPHA_D, alpha_p=TSB_ALPHA_P) if kind == "tsb" else classes[kind]()


Y = daily(intermittent(84))  # twelve weeks from a Monday


@pytest.mark.parametrize("kind", INTERMITTENT_KINDS)
def test_forecasts_are_finite_non_negative_ordered_and_dated_after_the_last_day(kind):
    model = IntermittentModel(kind).fit(Y)
    forecast = model.predict(14)
    assert isinstance(model, Forecaster) and model.alias == kind
    assert list(forecast.columns) == ["ds", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]
    assert forecast["ds"].tolist() == list(pd.date_range(Y.index[-1] + pd.Timedelta(days=1), periods=14))
    values = forecast[BOUNDS].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all()
    assert (np.diff(values, axis=1) >= 0).all(), "expected lo95 <= lo80 <= mean <= hi80 <= hi95"
    assert forecast["mean"].iloc[0] > 0 and (forecast["hi-95"] > forecast["mean"]).all()


@pytest.mark.parametrize("kind", INTERMITTENT_KINDS)
def test_the_point_forecast_is_statsforecasts_own_on_the_raw_counts(kind):
    ours = IntermittentModel(kind).fit(Y).predict(10)
    theirs = statsforecast_model(kind).fit(y=Y.to_numpy()).predict(h=10)["mean"]
    np.testing.assert_allclose(ours["mean"], theirs, rtol=1e-12)


@pytest.mark.filterwarnings("ignore:Computing fitted values for CrostonOptimized")
@pytest.mark.parametrize("kind", INTERMITTENT_KINDS)
def test_intervals_are_normal_from_the_one_step_in_sample_residuals(kind):
    # sigma is the root mean square of y_t minus statsforecast's own fitted value for t (none for the first day).
    fitted = statsforecast_model(kind).forecast(y=Y.to_numpy(), h=1, fitted=True)["fitted"]
    residuals = (Y.to_numpy() - fitted)[np.isfinite(fitted)]
    sigma = np.sqrt(np.mean(residuals**2))
    forecast = IntermittentModel(kind).fit(Y).predict(5)
    # The upper bounds are never clipped; constant over the horizon, as the level is.
    np.testing.assert_allclose(forecast["hi-80"] - forecast["mean"], normal_quantile(80) * sigma, rtol=1e-9)
    np.testing.assert_allclose(forecast["hi-95"] - forecast["mean"], normal_quantile(95) * sigma, rtol=1e-9)
    # A burst of 40 on a mean near 12: the lower bounds fall below 0 and are clipped there.
    assert (forecast["lo-95"] == 0).all()


@pytest.mark.parametrize("kind", INTERMITTENT_KINDS)
def test_a_fitted_model_pickles_and_predicts_the_same(kind):
    model = IntermittentModel(kind, freq="W").fit(periodic(intermittent(40, seed=3), "2024-01-01", "W"))
    again = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(again.predict(6), model.predict(6))
    assert again.predict(1)["ds"].iloc[0] == pd.Timestamp("2024-10-07")  # the Monday after the 40th week


def test_all_zeros_forecast_zero_with_empty_intervals():
    forecast = IntermittentModel("croston").fit(daily([0.0] * 30)).predict(3)
    assert (forecast[BOUNDS].to_numpy() == 0).all()


def test_refusals_negative_counts_one_day_an_unknown_kind_and_predict_before_fit():
    with pytest.raises(ValueError, match="non-negative counts"):
        IntermittentModel("adida").fit(daily([0.0, 3.0, -1.0, 0.0]))
    with pytest.raises(ValueError, match="at least 2 observations"):
        IntermittentModel("tsb").fit(daily([5.0]))
    with pytest.raises(ValueError, match="must be one of croston, adida, imapa, tsb"):
        IntermittentModel("croston_sba")
    with pytest.raises(NotFittedError):
        IntermittentModel("imapa").predict(3)


@pytest.mark.parametrize("kind", INTERMITTENT_KINDS)
def test_each_alias_is_registered_and_builds_its_model_on_the_configs_grid(kind):
    model = make_model(kind, SelectionConfig.for_freq("W"))
    assert kind in MODEL_FACTORIES and isinstance(model, IntermittentModel)
    assert model.kind == kind and model.freq == "W"


def test_the_aliases_compete_in_a_selection_and_one_is_refitted_and_published():
    cfg = SelectionConfig(holdout=14, horizon=21, candidates=INTERMITTENT_KINDS, origins=3, step=7, ensemble_top=0)
    rows = series_frame("route:c", intermittent(98, seed=11))
    forecast, metrics = select_and_forecast(rows, cfg)
    assert sorted(metrics["model"]) == sorted(INTERMITTENT_KINDS) and metrics["error"].isna().all()
    assert metrics["chosen"].sum() == 1 and len(forecast) == 21
    assert forecast["model"].iloc[0] == metrics.loc[metrics["chosen"], "model"].iloc[0]
    values = forecast[["lo95", "lo80", "yhat", "hi80", "hi95"]].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (np.diff(values, axis=1) >= 0).all()


def test_an_alias_joins_the_daily_counts_procedure_beside_its_members():
    # The shape of counts:D (their mean, calibrated on log1p, median point, totals) with adida added, on a short
    # series (its seasonal window shrinks to a week back so that it fits).
    cfg = SelectionConfig(
        holdout=14,
        horizon=14,
        candidates=("window_mean", "adida"),
        origins=10,
        step=3,
        champion="ensemble",
        ensemble_top=2,
        ensemble_stat="mean",
        calibration_space="log1p",
        point="median",
        totals=(7,),
    )
    found = select(series_frame("uk", intermittent(112, seed=5)), cfg)
    assert (found.forecast["model"] == "ensemble").all() and len(found.forecast) == 14
    assert set(found.metrics["model"]) == {"window_mean", "adida", "ensemble"} and found.metrics["error"].isna().all()
    assert found.totals["window"].tolist() == [7] and np.isfinite(found.totals["yhat"]).all()
