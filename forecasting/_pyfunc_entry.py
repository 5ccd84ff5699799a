"""MLflow models-from-code entry point for the published forecast table.

``log_forecast_run`` logs this file instead of a pickled object: loading the model runs it, which sets a
fresh :class:`forecasting.tracking.ForecastTableModel`; the forecasts come from the Parquet artifact.
"""

import mlflow

from forecasting.tracking import ForecastTableModel

mlflow.models.set_model(ForecastTableModel())
