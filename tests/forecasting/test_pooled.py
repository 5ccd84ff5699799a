"""The pooled model (LightGBM on a panel of monthly series) and the anchor that weighs it against the other members.

Real fits on small synthetic panels: three routes with a season and a level of their own. What must hold: it never
sees a month after the one it is fitted up to, of any series; it forecasts only the series it is named after, and
only if that series is the panel's; it is deterministic and ships (pickles); and a procedure that anchors on it
averages it with the median of the other members.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from forecasting.models import pooled
from forecasting.models.pooled import POOLED, Panel, PanelFactory, PooledForecaster
from forecasting.selection import MODEL_FACTORIES, SelectionConfig, select

MONTHS = pd.date_range("2012-01-01", periods=96, freq="MS")


def panel_series(seed: int = 0) -> dict[str, pd.Series]:
    rng = np.random.default_rng(seed)
    t = np.arange(MONTHS.size)
    out = {}
    for i, level in enumerate((300.0, 1200.0, 5000.0)):
        season = 1 + 0.5 * np.sin(2 * np.pi * (t - 2 * i) / 12)
        y = rng.poisson(level * season * np.exp(0.004 * t))
        out[f"frontex/route:r{i}"] = pd.Series(y.astype("float64"), index=MONTHS, name=f"frontex/route:r{i}")
    return out


def cut(y: pd.Series, months: int) -> pd.Series:
    return y.iloc[:months]


@pytest.fixture(autouse=True)
def fresh_fits():
    pooled._FITS.clear()
    yield
    pooled._FITS.clear()


def test_it_forecasts_the_named_series_from_every_series_up_to_the_month_it_is_fitted_to():
    series = panel_series()
    sid = "frontex/route:r1"
    model = PooledForecaster(Panel(series)).fit(cut(series[sid], 80))
    out = model.predict(6)
    assert list(out["ds"]) == list(MONTHS[80:86])
    assert np.isfinite(out[["mean", "lo-80", "hi-80", "lo-95", "hi-95"]].to_numpy()).all()
    assert (out["lo-95"] <= out["lo-80"]).all() and (out["lo-80"] <= out["mean"]).all()
    assert (out["mean"] <= out["hi-80"]).all() and (out["hi-80"] <= out["hi-95"]).all()
    # The level is the series' own (about 1,200 a month and rising), not another route's.
    assert 600 < out["mean"].mean() < 3000


def test_no_month_after_the_origin_of_any_series_changes_the_forecast():
    series = panel_series()
    sid = "frontex/route:r0"
    before = PooledForecaster(Panel(series)).fit(cut(series[sid], 70)).predict(3)
    changed = {k: v.copy() for k, v in series.items()}
    for k in changed:  # every later month of every series, its own included, ten times larger
        changed[k].iloc[70:] *= 10
    after = PooledForecaster(Panel(changed)).fit(cut(changed[sid], 70)).predict(3)
    pd.testing.assert_frame_equal(before, after)
    # An earlier month of another series does change it: the others are learnt from.
    moved = {k: v.copy() for k, v in series.items()}
    moved["frontex/route:r2"].iloc[40:70] *= 3
    assert not PooledForecaster(Panel(moved)).fit(cut(moved[sid], 70)).predict(3)["mean"].equals(before["mean"])


def test_it_is_deterministic_shares_fits_between_copies_and_pickles():
    series = panel_series()
    sid = "frontex/route:r2"
    first = PooledForecaster(Panel(series)).fit(cut(series[sid], 75)).predict(4)
    assert len(pooled._FITS) == 1
    pooled._FITS.clear()
    shipped = pickle.loads(pickle.dumps(PanelFactory(Panel(series))))  # as Spark ships it to a worker
    again = shipped(SelectionConfig.for_freq("M")).fit(cut(series[sid], 75)).predict(4)
    pd.testing.assert_frame_equal(first, again)
    # Another series of the same panel and origin reuses the one global fit.
    PooledForecaster(Panel(series)).fit(cut(series["frontex/route:r0"], 75)).predict(4)
    assert len(pooled._FITS) == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda s: PooledForecaster(Panel(s)).fit(cut(s["frontex/route:r0"], 60).rename("iom-dtm/route:x")),
         "not in the panel"),
        (lambda s: PooledForecaster(Panel(s)).fit(cut(s["frontex/route:r0"], 60) + 1), "is not the panel's series"),
        (lambda s: PooledForecaster(Panel(s)).fit(cut(s["frontex/route:r0"], 10)), "at least 15 months"),
        (lambda s: PooledForecaster(None).fit(cut(s["frontex/route:r0"], 60)), "no panel of series"),
        (lambda s: PooledForecaster(Panel(s), freq="W"), "monthly series only"),
        (lambda s: Panel({"a": pd.Series([1.0, 2.0], index=pd.to_datetime(["2020-01-01", "2020-01-15"]))}),
         "month starts"),
        (lambda s: Panel({"a": pd.Series([1.0, -2.0], index=pd.to_datetime(["2020-01-01", "2020-02-01"]))}),
         "counts must be >= 0"),
        (lambda s: Panel({}), "at least one series"),
    ],
)  # fmt: skip
def test_what_it_cannot_forecast_is_refused_with_the_reason(make, message):
    with pytest.raises(ValueError, match=message):
        make(panel_series())


def frame(y: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"series_id": y.name, "ds": y.index, "y": y.to_numpy()})


def test_an_anchored_ensemble_is_the_mean_of_the_pooled_model_and_the_median_of_the_others():
    series = panel_series()
    sid = "frontex/route:r1"
    cfg = SelectionConfig.for_freq(
        "M", candidates=("naive", "seasonal_naive", "window_mean", POOLED), champion="ensemble", ensemble_top=4,
        anchor=POOLED, origins=3, step=1, calibrate=False,
    )  # fmt: skip
    factories = {**MODEL_FACTORIES, POOLED: PanelFactory(Panel(series))}
    found = select(frame(series[sid]), cfg, factories)
    assert found.forecast["model"].iloc[0] == "ensemble"
    assert set(found.metrics["model"]) == {"naive", "seasonal_naive", "window_mean", POOLED, "ensemble"}
    y = series[sid]
    members = {a: factories[a](cfg).fit(y).predict(cfg.horizon)["mean"].to_numpy() for a in cfg.candidates}
    others = np.median([members[a] for a in ("naive", "seasonal_naive", "window_mean")], axis=0)
    expected = (others + members[POOLED]) / 2
    np.testing.assert_allclose(found.forecast["yhat"].to_numpy(), expected, rtol=1e-9)


def test_without_its_panel_the_pooled_member_fails_and_the_others_carry_on():
    series = panel_series()
    sid = "frontex/route:r0"
    cfg = SelectionConfig.for_freq(
        "M", candidates=("naive", "seasonal_naive", "window_mean", POOLED), champion="ensemble", ensemble_top=4,
        anchor=POOLED, origins=2, step=1,
    )  # fmt: skip
    found = select(frame(series[sid]), cfg, MODEL_FACTORIES)  # no panel given
    row = found.metrics.set_index("model").loc[POOLED]
    assert "no panel of series" in row["error"]
    assert found.forecast["model"].iloc[0] == "ensemble" and len(found.forecast) == cfg.horizon


def test_an_anchor_must_be_a_candidate_of_a_median_or_mean():
    with pytest.raises(ValueError, match="anchor='pooled_lgbm' must be one of the candidates"):
        SelectionConfig.for_freq("M", candidates=("naive", "seasonal_naive"), anchor=POOLED)
    with pytest.raises(ValueError, match="must be one of the candidates"):
        SelectionConfig.for_freq("M", candidates=("naive", POOLED), anchor=POOLED, ensemble_stat="inverse_mae")
