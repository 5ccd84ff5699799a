import math

import numpy as np
import pandas as pd
import pytest

from forecasting.evaluation import (
    CHAMPION,
    MemoFactories,
    SelectionForecaster,
    conformal_totals,
    evaluate_procedure,
    skill,
    window_totals,
)
from forecasting.selection import MODEL_FACTORIES, SelectionConfig
from tests.forecasting.fakes import periodic

WEEK = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
CFG = SelectionConfig(holdout=7, horizon=14, candidates=("naive", "seasonal_naive"), origins=2, ensemble_top=0)


class _Counting:
    """Seasonal naive that counts its fits, to see the memo at work."""

    fits = 0

    def __init__(self, cfg: SelectionConfig) -> None:
        self.inner = MODEL_FACTORIES["seasonal_naive"](cfg)
        self.alias = "counting"

    def fit(self, y: pd.Series) -> "_Counting":
        type(self).fits += 1
        self.inner.fit(y)
        return self

    def predict(self, h, levels=(80, 95)):
        return self.inner.predict(h, levels)


def test_the_procedure_is_scored_beside_the_baselines_on_the_same_cutoffs():
    # A weekly pattern repeated exactly: seasonal naive is perfect, so the procedure must pick it at every cutoff
    # and score MAE 0, while naive (last value) is off.
    y = periodic(WEEK * 8, "2025-01-06", "D")
    cutoffs = [35, 42, 49]
    frame = evaluate_procedure(y, cutoffs, horizon=7, cfg=CFG)
    assert set(frame["method"]) == {CHAMPION, "naive", "seasonal_naive"}
    champion = frame[frame["method"] == CHAMPION]
    assert len(champion) == 3 * 7
    assert set(champion["model"]) == {"seasonal_naive"}
    assert np.allclose(champion["mean"], champion["y"])
    result = skill(frame, baselines=("naive", "seasonal_naive"))
    table = result.table.set_index("method")
    assert table.loc[CHAMPION, "mae"] == 0
    assert table.loc["naive", "mae"] > 0
    # The better baseline is perfect too: no ratio can be taken.
    assert math.isnan(result.champion_vs_best_baseline)


def test_the_procedure_sees_only_data_before_each_cutoff():
    # The series jumps by +1000 right after the first cutoff: a procedure that peeked would forecast the jump.
    values = WEEK * 6 + [v + 1000 for v in WEEK * 2]
    y = periodic(values, "2025-01-06", "D")
    frame = evaluate_procedure(y, [42], horizon=7, cfg=CFG, baselines=())
    assert frame["mean"].max() <= 70


def test_the_memo_fits_each_model_and_window_once():
    _Counting.fits = 0
    factories = MemoFactories({"counting": _Counting, "naive": MODEL_FACTORIES["naive"]})
    cfg = SelectionConfig(holdout=7, horizon=7, candidates=("counting", "naive"), origins=3, step=7, ensemble_top=0)
    y = periodic(WEEK * 10, "2025-01-06", "D")
    cutoffs = [49, 56, 63]
    evaluate_procedure(y, cutoffs, horizon=7, cfg=cfg, baselines=(), factories=factories)
    # Inner origins at c-7, c-14, c-21 and the refit at c for c in 49, 56, 63: windows 28..63 every 7 days,
    # six distinct ones; without the memo 3 cutoffs x 4 fits = 12.
    assert _Counting.fits == 6


def test_a_procedure_whose_every_candidate_fails_is_a_recorded_error():
    class Broken:
        alias = "broken"

        def __init__(self, cfg):
            pass

        def fit(self, y):
            raise RuntimeError("solver diverged")

        def predict(self, h, levels=(80, 95)):
            raise AssertionError("unreachable")

    cfg = SelectionConfig(holdout=7, horizon=7, candidates=("broken",), ensemble_top=0)
    y = periodic(WEEK * 6, "2025-01-06", "D")
    factories = {"broken": Broken, **MODEL_FACTORIES}
    frame = evaluate_procedure(y, [35], horizon=7, cfg=cfg, baselines=("naive",), factories=factories)
    champion = frame[frame["method"] == CHAMPION]
    assert champion["mean"].isna().all()
    assert champion["error"].str.contains("solver diverged").all()
    assert frame.loc[frame["method"] == "naive", "error"].isna().all()


def test_selection_forecaster_refuses_levels_it_cannot_calibrate():
    model = SelectionForecaster(CFG).fit(periodic(WEEK * 6, "2025-01-06", "D"))
    with pytest.raises(ValueError, match="80, 95"):
        model.predict(7, levels=(50,))


def _totals_frame(actual: list[float], forecast: list[float], k: int) -> pd.DataFrame:
    cutoffs = pd.date_range("2025-01-05", periods=len(actual), freq="7D")
    return pd.DataFrame(
        {"window": k, "cutoff": cutoffs, "method": CHAMPION, "model": "m", "y": actual, "mean": forecast}
    )


def test_window_totals_sum_the_first_k_steps_and_leave_incomplete_windows_unscored():
    frame = pd.DataFrame(
        {
            "cutoff": pd.Timestamp("2025-01-05"),
            "step": [1, 2, 3],
            "ds": pd.date_range("2025-01-06", periods=3),
            "y": [1.0, 2.0, 3.0],
            "method": CHAMPION,
            "model": "m",
            "mean": [2.0, 2.0, 2.0],
            "error": None,
        }
    )
    totals = window_totals(frame, [2, 7]).set_index("window")
    assert totals.loc[2, "y"] == 3 and totals.loc[2, "mean"] == 4
    assert math.isnan(totals.loc[7, "y"]) and totals.loc[7, "mean"] == 6


def test_conformal_totals_use_only_windows_that_had_ended():
    # Forecasts always 100; actuals 100 * e^{r} - 1 with r the ranks 1..20 / 100 (on log1p, scores are exactly r).
    r = np.arange(1, 21) / 100
    actual = list(np.expm1(np.log1p(100.0) + r))
    totals = conformal_totals(_totals_frame(actual, [100.0] * 20, k=7), levels=(80,), min_scores=8)
    # Windows of 7 days end by the next weekly cutoff: cutoff i sees the scores of cutoffs 0..i-1.
    assert totals["lo-80"].iloc[:8].isna().all()
    ninth = totals.iloc[8]  # 8 earlier scores 0.01..0.08: n=8, lower rank floor(9 * 0.1)=0 -> 1, upper ceil(8.1)=8 -> 8
    assert ninth["lo-80"] == pytest.approx(np.expm1(np.log1p(100.0) + 0.01))
    assert ninth["hi-80"] == pytest.approx(np.expm1(np.log1p(100.0) + 0.08))


def test_conformal_totals_cover_about_as_promised_on_noise():
    rng = np.random.default_rng(3)
    n = 400
    forecast = np.full(n, 500.0)
    actual = np.expm1(np.log1p(forecast) + rng.normal(0, 0.3, n))
    totals = conformal_totals(_totals_frame(list(actual), list(forecast), k=7), levels=(80,), min_scores=20)
    have = totals.dropna(subset=["lo-80"])
    covered = ((have["y"] >= have["lo-80"]) & (have["y"] <= have["hi-80"])).mean()
    assert 0.75 <= covered <= 0.85
