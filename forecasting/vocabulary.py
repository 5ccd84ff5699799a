"""A forecast's five values under their two names, and the one mapping between them.

The values are a point forecast and the bounds of its central 80 % and 95 % prediction intervals. Their names:

- in a *prediction*: what a model's ``predict`` returns (:mod:`forecasting.protocol`) and what backtests,
  calibration and evaluation work with: ``mean``, ``lo-80``, ``hi-80``, ``lo-95``, ``hi-95``;
- once *published*: from the forecast table of :mod:`forecasting.selection` on (reconciliation, plots, the MLflow
  model, the lake, the release files, the API): ``yhat``, ``lo80``, ``hi80``, ``lo95``, ``hi95``, as
  ``contracts.published.FORECAST_VALUES`` declares them.

:data:`PUBLISHED_NAME` maps the first to the second; :func:`to_published` and :func:`from_published` are the only
places it is applied. A library's own names are read once, where it is wrapped:

- statsforecast (``mean``, ``lo-<level>``, ``hi-<level>``, the spelling the protocol borrowed):
  ``forecasting.models.statsforecast._prediction_values``;
- Prophet (``yhat`` on the log scale and predictive samples; its ``yhat_lower``/``yhat_upper`` are not used):
  ``forecasting.models.prophet._prediction_from_prophet``;
- the baselines compute their values themselves and name them with ``forecasting.protocol.forecast_frame``;
- hierarchicalforecast, which reconciles published forecasts and returns ``mean``:
  ``forecasting.hierarchy._reconciled_means``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from contracts.published import FORECAST_VALUES

__all__ = [
    "PREDICTION_VALUES",
    "PUBLISHED_INTERVALS",
    "PUBLISHED_NAME",
    "PUBLISHED_VALUES",
    "from_published",
    "to_published",
]

# Each value's name in a prediction -> its published name, in the published order.
PUBLISHED_NAME: Mapping[str, str] = {
    "mean": "yhat",
    "lo-80": "lo80",
    "hi-80": "hi80",
    "lo-95": "lo95",
    "hi-95": "hi95",
}
# The value columns of a prediction at the published levels: mean, then lo-<level>, hi-<level> per level.
PREDICTION_VALUES: tuple[str, ...] = tuple(PUBLISHED_NAME)
# The value columns of a published forecast.
PUBLISHED_VALUES: tuple[str, ...] = tuple(FORECAST_VALUES)
# (lower, upper) column of each published interval, the 80 % one first.
PUBLISHED_INTERVALS: tuple[tuple[str, str], ...] = (("lo80", "hi80"), ("lo95", "hi95"))


def to_published(prediction: pd.DataFrame) -> dict[str, np.ndarray]:
    """The values of a prediction (its PREDICTION_VALUES columns) as float64 arrays under their published names."""
    return {PUBLISHED_NAME[name]: prediction[name].to_numpy(dtype="float64") for name in PREDICTION_VALUES}


def from_published(forecast: pd.DataFrame) -> pd.DataFrame:
    """A published forecast (``ds`` and PUBLISHED_VALUES columns) as a prediction: ds, then PREDICTION_VALUES."""
    return pd.DataFrame(
        {
            "ds": forecast["ds"].to_numpy(),
            **{name: forecast[PUBLISHED_NAME[name]].to_numpy() for name in PREDICTION_VALUES},
        }
    )
