"""The vocabulary of a published forecast: the point forecast and its two central intervals.

``yhat`` is the point forecast; ``lo80``/``hi80`` and ``lo95``/``hi95`` bound the central 80 % and 95 % prediction
intervals. Every model's own names are translated to these where the model is wrapped (``forecasting/``), so the
lake, the release files, the API and the map use only these.
"""

from __future__ import annotations

FORECAST_VALUES = ("yhat", "lo80", "hi80", "lo95", "hi95")

# A store's layout: ``<store>/CURRENT`` names the current release; ``<store>/releases/<id>/`` holds its files.
RELEASES, CURRENT, MANIFEST = "releases", "CURRENT", "manifest.json"
FORECASTS, HISTORY, CELLS = "forecasts.parquet", "history.parquet", "cells.parquet"
