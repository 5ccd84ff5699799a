"""What every model family shares beyond the :class:`forecasting.protocol.Forecaster` protocol itself.

The protocol (fit on one series, predict ``h`` periods as ``ds``, ``mean``, ``lo-<level>``, ``hi-<level>``) and its
helpers live in :mod:`forecasting.protocol`; this module holds what callers do with any forecaster: fit it with a
fallback, and describe its failure the same way everywhere.
"""

from __future__ import annotations

import pandas as pd

from forecasting.protocol import Forecaster

__all__ = ["describe_failure", "fit_with_fallback"]


def fit_with_fallback(model: Forecaster, fallback: Forecaster, y: pd.Series) -> tuple[Forecaster, str | None]:
    """Fit ``model`` on ``y``; if that raises, fit ``fallback`` instead.

    Returns the fitted forecaster and ``None``, or the fitted fallback and the reason the model failed
    (``"<alias>: <ExceptionType>: <message>"``) so the caller can record it. If the fallback fails
    too, its exception propagates.
    """
    try:
        return model.fit(y), None
    except Exception as exc:  # any model failure is recorded and the fallback takes over
        reason = describe_failure(model.alias, exc)
    return fallback.fit(y), reason


def describe_failure(alias: str, exc: BaseException) -> str:
    """Name the model, the exception type and its full message, for metrics tables and run logs."""
    message = str(exc).strip()
    return f"{alias}: {type(exc).__name__}: {message}" if message else f"{alias}: {type(exc).__name__}"
