"""Daily intervals of an estimated series: the estimate's level error added (published, ``forecasting.measured``) and
taken out again (the scenario engine's draws, ``forecasting.scenario.engine.without_level``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasting.measured import KNOT_COLUMNS, KNOT_Z, widen_forecasts
from forecasting.scenario.engine import without_level

Z80 = 1.2815515655446004


def _row(sid: str, yhat: float, spread: float) -> dict:
    """A forecast row whose bounds are yhat's log1p plus z x ``spread``."""
    m = math.log1p(yhat)
    bounds = {c: math.expm1(m + z * spread) for c, z in zip(KNOT_COLUMNS, KNOT_Z, strict=True)}
    return {"series_id": sid, "ds": "2025-07-01", "yhat": yhat, **bounds, "model": "x"}


def test_a_level_error_combines_with_the_forecasts_own_spread_as_independent_errors():
    frame = pd.DataFrame([_row("people/point:r/a", 10.0, 0.1), _row("density/route:r", 10.0, 0.1)])
    out = widen_forecasts(frame, pd.Series({"people/point:r/a": 0.3}))
    a, d = out.iloc[0], out.iloc[1]
    assert a["yhat"] == 10.0
    assert math.log1p(a["hi80"]) - math.log1p(10.0) == pytest.approx(Z80 * math.sqrt(0.1**2 + 0.3**2))
    assert a["lo95"] < a["lo80"] < a["yhat"] < a["hi80"] < a["hi95"]
    pd.testing.assert_series_equal(d, frame.iloc[1])  # no level error known: unchanged
    assert list(out.columns) == list(frame.columns)


def test_no_or_bad_level_errors_change_nothing():
    frame = pd.DataFrame([_row("a", 5.0, 0.2), _row("b", 5.0, 0.2)])
    pd.testing.assert_frame_equal(widen_forecasts(frame, pd.Series({"a": float("nan"), "b": 0.0})), frame)
    pd.testing.assert_frame_equal(widen_forecasts(frame, pd.Series(dtype="float64")), frame)


@settings(max_examples=60, deadline=None)
@given(
    yhat=st.floats(0.5, 5000.0),
    width=st.floats(0.0, 1.0),
    own=st.floats(0.0, 1.0),
)
def test_taking_the_level_error_out_again_gives_back_the_forecasts_own_bounds(yhat, width, own):
    # Bounds that stay above 0 people before and after widening (a bound clipped at 0 cannot be read back).
    total = width * math.log1p(yhat) / KNOT_Z[-1]
    spread, sigma = own * total, math.sqrt(total**2 - (own * total) ** 2)
    frame = pd.DataFrame([_row("s", yhat, spread)])
    wide = widen_forecasts(frame, pd.Series({"s": sigma})).iloc[0]
    knots = np.array([[[wide["lo95"], wide["lo80"], wide["yhat"], wide["hi80"], wide["hi95"]]]])
    back = without_level(knots, np.array([sigma]))[0, 0]
    row = frame.iloc[0]
    expected = [row["lo95"], row["lo80"], row["yhat"], row["hi80"], row["hi95"]]
    assert np.allclose(np.log1p(back), np.log1p(expected), atol=1e-7)


def test_a_bound_narrower_than_the_level_error_alone_comes_back_as_the_median():
    knots = np.array([[[8.0, 9.0, 10.0, 11.0, 12.0]]])
    back = without_level(knots, np.array([2.0]))
    assert np.allclose(back, 10.0)
    assert without_level(knots, np.array([0.0])) is knots
