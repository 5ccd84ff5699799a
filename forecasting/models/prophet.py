"""Prophet behind :class:`forecasting.protocol.Forecaster`: :class:`ProphetForecaster`, fitted on log1p(counts).

Plain pandas/numpy in and out and picklable, so Spark can ship it to executors. Prophet is imported on the first
fit, never at import of this module. Prophet's own output (``yhat`` on the log scale, predictive samples; its
``yhat_lower``/``yhat_upper`` are not used) becomes the protocol's ``mean`` and ``lo-<level>``/``hi-<level>`` in
one function, :func:`_prediction_from_prophet`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from forecasting.protocol import (
    LEVELS,
    NotFittedError,
    check_freq,
    check_horizon,
    check_levels,
    check_training_series,
    forecast_frame,
    future_dates,
)

__all__ = ["ProphetForecaster"]


# Prophet decides "auto" yearly seasonality on the span of history; it enables it from two years on.
_PROPHET_AUTO_YEARLY_DAYS = 730
# Fourier order of the yearly seasonality. Prophet's own default (10) suits daily and weekly data; monthly
# data samples a year 12 times, so terms above order 5 would alias onto lower ones and only add noise.
_YEARLY_FOURIER_ORDER = {"D": 10, "W": 10, "M": 5}
_cmdstanpy_silenced = False


_PROPHET_PLOTTING_NOTICES = frozenset(
    {
        "Importing matplotlib failed. Plotting will not work.",
        "Importing plotly failed. Interactive plots will not work.",
    }
)


class _DropPlottingImportNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in _PROPHET_PLOTTING_NOTICES


def _import_prophet() -> Any:
    """Import Prophet on first use and silence cmdstanpy, which logs every optimisation at INFO."""
    global _cmdstanpy_silenced
    # Forecasting never plots; Prophet's ERROR-level notice about missing plotting libraries would
    # otherwise be printed once by every Spark Python worker.
    plot_logger = logging.getLogger("prophet.plot")
    plot_notice = _DropPlottingImportNotice()
    plot_logger.addFilter(plot_notice)
    try:
        from prophet import Prophet
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ProphetForecaster needs the 'prophet' package: pip install 'prophet>=1.1.5' "
            "(or install routecast with its dependencies)"
        ) from exc
    finally:
        plot_logger.removeFilter(plot_notice)
    if not _cmdstanpy_silenced:
        # cmdstanpy attaches its own stream handler unless the logger already has one, and that handler
        # would print a line per series on every executor.
        cmdstanpy_logger = logging.getLogger("cmdstanpy")
        cmdstanpy_logger.addHandler(logging.NullHandler())
        cmdstanpy_logger.propagate = False
        _cmdstanpy_silenced = True
    return Prophet


class ProphetForecaster:
    """Prophet on log1p(y), intervals from one draw of posterior predictive samples.

    Why log1p: counts are non-negative and their variance grows with the level; on the log scale
    Prophet's Gaussian noise is closer to right and the back-transformed bounds can never go below 0.
    ``mean`` is expm1 of Prophet's yhat on the log scale, i.e. (approximately) the predictive *median*
    of the counts, not their expectation, which would sit higher. Interval bounds are quantiles of
    expm1(samples); one set of samples serves every level.

    Deterministic: the optimiser gets ``seed`` and the sampling runs under numpy's global RNG (which
    Prophet uses) seeded with ``seed``; the caller's global RNG state is restored afterwards.

    ``freq`` (D, W or M) sets the prediction grid and the seasonalities: weekly seasonality only exists
    in daily data (``weekly=None`` turns it on for D only; ``weekly=True`` with W or M is refused), and
    yearly seasonality (``"auto"``: on from two years of history) uses fewer Fourier terms for monthly data.

    ``regressors`` names optional external regressors (columns of ``X`` in fit and ``X_future`` in predict).
    Each enters the log1p-scale model linearly through Prophet's ``add_regressor``, standardised by Prophet
    (binary 0/1 columns are left as they are), so its effect on the counts is multiplicative. Their future
    values must be known when predicting: pass a regressor lagged by at least the horizon, or a plan.
    """

    alias = "prophet"

    def __init__(
        self,
        weekly: bool | None = None,
        yearly: bool | str = "auto",
        seed: int = 0,
        uncertainty_samples: int = 500,
        freq: str = "D",
        regressors: Sequence[str] = (),
    ) -> None:
        freq = check_freq(freq)
        if isinstance(regressors, str):
            raise TypeError(f"regressors={regressors!r} must be a sequence of column names, not one string")
        regressors = tuple(regressors)
        if any(not isinstance(name, str) or not name for name in regressors):
            raise ValueError(f"regressors={list(regressors)!r} must be non-empty column names")
        if len(set(regressors)) != len(regressors):
            raise ValueError(f"regressors={list(regressors)!r} name a column more than once")
        if yearly not in (True, False, "auto"):
            raise ValueError(f"yearly={yearly!r} must be True, False or 'auto'")
        if weekly and freq != "D":
            raise ValueError(f"weekly seasonality needs daily data; freq={freq!r} has one value per period")
        if uncertainty_samples < 1:
            raise ValueError("uncertainty_samples must be >= 1: intervals are taken from the samples")
        self.weekly = freq == "D" if weekly is None else weekly
        self.yearly = yearly
        self.freq = freq
        self.seed = seed
        self.uncertainty_samples = uncertainty_samples
        self.regressors = regressors

    def fit(self, y: pd.Series, X: pd.DataFrame | None = None) -> ProphetForecaster:
        """Fit on ``y``; ``X`` (one column per declared regressor, indexed like ``y``) iff regressors are declared."""
        y = check_training_series(y, self.alias)
        X = self._regressor_values(X, y.index, "fit", "X")
        if (y < 0).any():
            raise ValueError(f"{self.alias}: y must be non-negative counts (fitted on log1p(y))")
        if len(y) < 2:
            raise ValueError(f"{self.alias}: needs at least 2 observations, got {len(y)}")
        Prophet = _import_prophet()
        yearly = self.yearly
        if yearly == "auto":
            # Resolved here rather than by Prophet so it does not log its "Disabling ..." notice per series.
            yearly = (y.index[-1] - y.index[0]).days >= _PROPHET_AUTO_YEARLY_DAYS
        model = Prophet(
            weekly_seasonality=self.weekly,
            yearly_seasonality=_YEARLY_FOURIER_ORDER[self.freq] if yearly else False,
            daily_seasonality=False,
            uncertainty_samples=self.uncertainty_samples,
        )
        history = pd.DataFrame({"ds": y.index, "y": np.log1p(y.to_numpy())})
        for name in self.regressors:
            model.add_regressor(name)
            history[name] = X[name].to_numpy()
        model.fit(history, seed=self.seed)
        self.model_ = model
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS, X_future: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast ``h`` periods; ``X_future`` holds the regressors on exactly those ``h`` dates, iff declared."""
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        levels = check_levels(levels)
        dates = future_dates(self.last_ds_, h, self.freq)
        X_future = self._regressor_values(X_future, dates, "predict", "X_future")
        future = pd.DataFrame({"ds": dates})
        for name in self.regressors:
            future[name] = X_future[name].to_numpy()

        # The point forecast needs no sampling; switching it off avoids drawing a second, unused set.
        samples_setting = self.model_.uncertainty_samples
        self.model_.uncertainty_samples = 0
        try:
            point = self.model_.predict(future)
        finally:
            self.model_.uncertainty_samples = samples_setting

        rng_state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            samples = self.model_.predictive_samples(future)
        finally:
            np.random.set_state(rng_state)

        return _prediction_from_prophet(future["ds"], point, samples, levels)

    def _regressor_values(
        self, X: pd.DataFrame | None, dates: pd.DatetimeIndex, method: str, arg: str
    ) -> pd.DataFrame | None:
        """The declared regressor columns of ``X`` on ``dates``, as float64; refuses what breaks the contract."""
        if not self.regressors:
            if X is not None:
                raise ValueError(
                    f"{self.alias}: {method} got {arg} but no regressors were declared; "
                    "pass regressors=[...] to ProphetForecaster or leave X out"
                )
            return None
        if X is None:
            raise ValueError(f"{self.alias}: {method} needs {arg} with the regressor columns {list(self.regressors)}")
        if not isinstance(X, pd.DataFrame) or not isinstance(X.index, pd.DatetimeIndex):
            raise TypeError(f"{self.alias}: {arg} must be a pandas DataFrame indexed by a DatetimeIndex")
        missing = [name for name in self.regressors if name not in X.columns]
        if missing:
            raise ValueError(f"{self.alias}: {arg} lacks the regressor columns {missing}; it has {list(X.columns)}")
        if not X.index.equals(dates):
            expected = f"{len(dates)} rows from {dates[0].date()} to {dates[-1].date()}"
            got = f"{len(X)} rows" + (f" from {X.index[0].date()} to {X.index[-1].date()}" if len(X) else "")
            raise ValueError(f"{self.alias}: {arg} must be indexed by the {method} dates, {expected}; got {got}")
        values = X[list(self.regressors)].astype("float64")
        if values.isna().any().any():
            column = values.columns[values.isna().any()][0]
            first = values.index[values[column].isna()][0]
            raise ValueError(
                f"{self.alias}: {arg} column {column!r} has missing values (first at {first.date()}); fill them"
            )
        return values


def _prediction_from_prophet(
    ds: pd.Series, point: pd.DataFrame, samples: dict[str, np.ndarray], levels: Sequence[int]
) -> pd.DataFrame:
    """Prophet's output for the dates ``ds``, fitted on log1p, as a protocol prediction (ds, mean, lo-<level>, ...).

    ``point`` is what ``Prophet.predict`` returns: ``mean`` is expm1 of its ``yhat`` column, i.e. (approximately)
    the predictive median of the counts. ``samples`` is what ``Prophet.predictive_samples`` returns: under ``yhat``
    one row per date and one column per sample; each level's bounds are the central quantiles of their expm1, so
    one set of samples serves every level. Prophet's ``yhat_lower``/``yhat_upper`` (a single interval, at its
    ``interval_width``) are not used.
    """
    yhat_log = point["yhat"].to_numpy()
    draws = np.expm1(samples["yhat"])  # shape (dates, samples)
    bounds = {}
    for level in levels:
        tail = (100 - level) / 200.0
        lo, hi = np.quantile(draws, [tail, 1.0 - tail], axis=1)
        bounds[level] = (lo, hi)
    return forecast_frame(ds, np.expm1(yhat_log), bounds)
