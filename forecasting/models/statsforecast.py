"""Nixtla statsforecast's models behind :class:`forecasting.protocol.Forecaster`: the automatic ones (ETS, Theta,
ARIMA: :class:`StatsForecastModel`) and the intermittent-demand ones (Croston, ADIDA, IMAPA, TSB:
:class:`IntermittentModel`).

statsforecast is imported on the first fit, never at import of this module (which does not shadow it: imports are
absolute, so ``statsforecast`` is always the installed package). Its predict output (``mean``, ``lo-<level>``,
``hi-<level>``, the spelling the protocol borrowed) is read in one function, :func:`_prediction_values`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
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
    interval_columns,
    normal_quantile,
)

__all__ = ["INTERMITTENT_KINDS", "KINDS", "TSB_ALPHA_D", "TSB_ALPHA_P", "IntermittentModel", "StatsForecastModel"]

# kind -> the statsforecast.models class it wraps.
_CLASS_NAMES = {"auto_ets": "AutoETS", "auto_theta": "AutoTheta", "auto_arima": "AutoARIMA"}
KINDS: tuple[str, ...] = tuple(_CLASS_NAMES)
TRANSFORMS: tuple[str, ...] = ("log1p", "none")

# Fewest observations each kind fits. statsforecast refuses ETS when n <= parameters + 4 (2 parameters for
# the simplest model, so 7) and Theta when n <= 3; Theta's intervals take sigma from the residuals after a
# burn-in of 3, which needs 5 observations to leave two. ARIMA fits any length, but on 3 points its residual
# variance can divide by zero (infinite intervals).
_MIN_OBSERVATIONS = {"auto_ets": 7, "auto_theta": 5, "auto_arima": 4}


# Intermittent-demand kind -> the statsforecast.models class it wraps.
_INTERMITTENT_CLASS_NAMES = {"croston": "CrostonOptimized", "adida": "ADIDA", "imapa": "IMAPA", "tsb": "TSB"}
INTERMITTENT_KINDS: tuple[str, ...] = tuple(_INTERMITTENT_CLASS_NAMES)
# TSB's smoothing parameters of the demand size (alpha_d) and of the probability of a demand (alpha_p). statsforecast
# does not optimise them; 0.1 is the low end of the 0.1-0.3 range its Croston optimises its own within: a slow
# update, about the last ten periods' weight, which suits daily counts whose zeros and bursts are mostly noise.
TSB_ALPHA_D = 0.1
TSB_ALPHA_P = 0.1


def _import_model_class(kind: str) -> Any:
    try:
        from statsforecast import models
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "StatsForecastModel needs the 'statsforecast' package: pip install 'statsforecast>=2.0,<3' "
            "(or install routecast with its dependencies)"
        ) from exc
    return getattr(models, {**_CLASS_NAMES, **_INTERMITTENT_CLASS_NAMES}[kind])


def _prediction_values(raw: Mapping[str, Any], levels: Sequence[int]) -> dict[str, np.ndarray]:
    """statsforecast's predict output as float64 arrays under the protocol's names (mean, lo-<level>, hi-<level>).

    statsforecast names its point forecast ``mean`` and the bounds of its ``level`` % intervals ``lo-<level>`` and
    ``hi-<level>``, the names the protocol uses, so only the types change: it mixes ndarrays, float32 and pandas
    Series.
    """
    return {key: np.asarray(raw[key], dtype="float64") for key in ("mean", *interval_columns(levels))}


class StatsForecastModel:
    """One of statsforecast's automatic models (``kind``: auto_ets, auto_theta, auto_arima) on one series.

    ``alias`` is the kind. The model is fitted on log1p(y) by default (``transform="log1p"``): counts are
    non-negative and their variance grows with the level, which the log scale stabilises. Interval bounds
    are the model's quantiles on the log scale passed through expm1 (monotone, so they stay quantiles): they
    are skewed upwards and cannot fall below -1, the image of -inf, so clipping at 0 only trims a sliver
    near zero instead of cutting a symmetric band. ``mean`` is expm1 of the log-scale mean, i.e.
    (approximately) the predictive *median* of the counts, not their expectation, which would sit higher.
    ``transform="none"`` fits y as it is; ``mean`` is then the model's mean and bounds below 0 are clipped.
    Negative y under log1p is refused.

    ``season_length`` is a number of periods of ``freq`` (7 days, 52 weeks, 12 months). A series shorter
    than two seasons cannot show a season, so it is fitted non-seasonally; ``season_length_used_`` records
    what was used. Too-short series (see ``min_observations``) and fits whose forecast is not finite raise
    ValueError, so a fallback can take over. Deterministic and picklable after fit.
    """

    def __init__(
        self, kind: str = "auto_ets", season_length: int = 7, freq: str = "D", transform: str = "log1p"
    ) -> None:
        if kind not in _CLASS_NAMES:
            raise ValueError(f"kind={kind!r} must be one of {', '.join(KINDS)}")
        if isinstance(season_length, bool) or not isinstance(season_length, int | np.integer) or season_length < 1:
            raise ValueError(f"season_length={season_length!r} must be an integer >= 1")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform={transform!r} must be 'log1p' (for counts) or 'none'")
        self.kind = kind
        self.alias = kind
        self.season_length = int(season_length)
        self.freq = check_freq(freq)
        self.transform = transform

    @property
    def min_observations(self) -> int:
        """Fewest observations fit accepts for this kind."""
        return _MIN_OBSERVATIONS[self.kind]

    def fit(self, y: pd.Series) -> StatsForecastModel:
        y = check_training_series(y, self.alias)
        if self.transform == "log1p" and (y < 0).any():
            raise ValueError(
                f"{self.alias}: y must be non-negative counts with transform='log1p' "
                f"(first negative at {y.index[y < 0][0].date()}); use transform='none' for signed data"
            )
        if len(y) < self.min_observations:
            raise ValueError(f"{self.alias}: needs at least {self.min_observations} observations, got {len(y)}")
        model_class = _import_model_class(self.kind)
        season_length = self.season_length if len(y) >= 2 * self.season_length else 1
        values = y.to_numpy()
        if self.transform == "log1p":
            values = np.log1p(values)
        # statsforecast divides by zero on flat or tiny series (sigma of a perfect fit) and numpy warns once per
        # series on every executor; a fit that really broke shows up as a non-finite forecast, refused below.
        with np.errstate(divide="ignore", invalid="ignore"):
            model = model_class(season_length=season_length).fit(y=values)
            check = _prediction_values(model.predict(h=1, level=list(LEVELS)), LEVELS)
        if not all(np.isfinite(v).all() for v in check.values()):
            raise ValueError(f"{self.alias}: the fitted model's forecast or intervals are not finite")
        self.model_ = model
        self.season_length_used_ = season_length
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        levels = check_levels(levels)
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = self.model_.predict(h=h, level=levels)
        out = _prediction_values(raw, levels)
        if self.transform == "log1p":
            with np.errstate(over="ignore"):  # an overflow becomes inf, refused just below
                out = {key: np.expm1(values) for key, values in out.items()}
        if not all(np.isfinite(v).all() for v in out.values()):
            raise ValueError(f"{self.alias}: the forecast or its intervals are not finite up to h={h}")
        bounds = {level: (out[f"lo-{level}"], out[f"hi-{level}"]) for level in levels}
        return forecast_frame(future_dates(self.last_ds_, h, self.freq), out["mean"], bounds)


class IntermittentModel:
    """One of statsforecast's intermittent-demand models (``kind``: croston, adida, imapa, tsb) on one series.

    ``alias`` is the kind: ``croston`` is CrostonOptimized (demand sizes and the intervals between demands smoothed
    separately, each with its own optimised alpha), ``adida`` ADIDA (the series summed into blocks of the mean
    interval between demands, forecast by simple exponential smoothing, spread back over the block), ``imapa``
    IMAPA (ADIDA's forecast averaged over every block length up to that one), ``tsb`` TSB (demand size and the
    probability of a demand smoothed every period, with the fixed TSB_ALPHA_D and TSB_ALPHA_P). Each forecasts one
    flat level: the expected value per period, not a typical one.

    These models are made for counts full of zeros, so they are fitted on the raw counts (no log1p: a log would
    turn their demand sizes into something they were not built for); negative y is refused. They have no intervals
    of their own. As the baselines' (forecasting.models.baselines), theirs are normal around the flat forecast with
    sigma the root mean square of the one-step in-sample residuals, y_t minus the model's own fitted value for t
    (statsforecast's ``fitted``; the first period has none), constant over the horizon as for WindowAverage (each
    step is one new fluctuation around the level), then clipped at 0. The procedures recalibrate them from their
    backtest misses. ``season_length`` is not used by these models.

    Cost of a fit on 2,400 days: TSB well under a millisecond, Croston and ADIDA about 0.06 s, IMAPA about 0.6 s
    (statsforecast recomputes its in-sample values block length by block length). A series of one period, or a
    fit whose forecast is not finite, raises ValueError, so a fallback can take over. Deterministic and picklable
    after fit.
    """

    def __init__(self, kind: str = "croston", freq: str = "D") -> None:
        if kind not in _INTERMITTENT_CLASS_NAMES:
            raise ValueError(f"kind={kind!r} must be one of {', '.join(INTERMITTENT_KINDS)}")
        self.kind = kind
        self.alias = kind
        self.freq = check_freq(freq)

    @property
    def min_observations(self) -> int:
        """Fewest observations fit accepts: one to fit and one more for a one-step residual."""
        return 2

    def _new_model(self) -> Any:
        model_class = _import_model_class(self.kind)
        if self.kind == "tsb":
            return model_class(alpha_d=TSB_ALPHA_D, alpha_p=TSB_ALPHA_P)
        return model_class()

    def fit(self, y: pd.Series) -> IntermittentModel:
        y = check_training_series(y, self.alias)
        if (y < 0).any():
            raise ValueError(
                f"{self.alias}: y must be non-negative counts (first negative at {y.index[y < 0][0].date()})"
            )
        if len(y) < self.min_observations:
            raise ValueError(f"{self.alias}: needs at least {self.min_observations} observations, got {len(y)}")
        values = y.to_numpy()
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            # CrostonOptimized warns that its fitted values are expensive (it re-optimises at every demand): they
            # are what the intervals need, and cost about 0.06 s on 2,400 days.
            warnings.filterwarnings("ignore", message="Computing fitted values", category=UserWarning)
            in_sample = np.asarray(self._new_model().forecast(y=values, h=1, fitted=True)["fitted"], dtype="float64")
            model = self._new_model().fit(y=values)
            level = _prediction_values(model.predict(h=1), levels=())["mean"]
        residuals = (values - in_sample)[np.isfinite(in_sample)]
        if not residuals.size:
            raise ValueError(f"{self.alias}: the fit left no in-sample residual to estimate its intervals from")
        sigma = float(np.sqrt(np.mean(residuals**2)))
        if not (np.isfinite(level).all() and np.isfinite(sigma)):
            raise ValueError(f"{self.alias}: the fitted model's forecast or intervals are not finite")
        self.model_ = model
        self.sigma_ = sigma
        self.last_ds_ = y.index[-1]
        return self

    def predict(self, h: int, levels: Sequence[int] = LEVELS) -> pd.DataFrame:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{self.alias}: call fit(y) before predict(h)")
        h = check_horizon(h)
        levels = check_levels(levels)
        # Only the point forecast: without conformal settings statsforecast refuses to give levels for these models.
        mean = _prediction_values(self.model_.predict(h=h), levels=())["mean"]
        if not np.isfinite(mean).all():
            raise ValueError(f"{self.alias}: the forecast is not finite up to h={h}")
        bounds = {}
        for level in levels:
            half = normal_quantile(level) * self.sigma_
            bounds[level] = (mean - half, mean + half)
        return forecast_frame(future_dates(self.last_ds_, h, self.freq), mean, bounds)
