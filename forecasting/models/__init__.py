"""The model families routecast selects from, each behind :class:`forecasting.protocol.Forecaster`.

- :mod:`forecasting.models.baselines`: Naive, SeasonalNaive, Drift, WindowAverage (closed form, normal intervals);
- :mod:`forecasting.models.statsforecast`: StatsForecastModel (statsforecast's AutoETS, AutoTheta, AutoARIMA) and
  IntermittentModel (its Croston, ADIDA, IMAPA and TSB, for counts full of zeros);
- :mod:`forecasting.models.prophet`: ProphetForecaster;
- :mod:`forecasting.models.base`: what callers do with any of them (fit with a fallback, describe a failure).

Import from those modules; this package imports nothing, so loading one family never loads another's library
(statsforecast and Prophet are in any case imported only on the first fit). ``forecasting.selection.MODEL_FACTORIES``
maps each alias to the family that builds it.
"""
