from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from forecasting.tracking import RunInfo
from jobs import publish
from jobs.series import series_keys
from serving.settings import ServingSettings

AS_OF = dt.date(2025, 3, 1)
HORIZON = 28


def forecast_rows(catalogue, route_ids, horizon=HORIZON) -> pd.DataFrame:
    keys = pd.DataFrame(series_keys(catalogue), columns=["series_id", "level", "route_id", "segment_id"])
    keys = keys[keys.route_id.isin(route_ids)]
    days = pd.date_range(AS_OF + dt.timedelta(days=1), periods=horizon)
    rows = []
    for n, sid in enumerate(keys.series_id):
        for i, d in enumerate(days):
            y = 100.0 * (n + 1) + i
            rows.append((sid, d, y, y * 0.9, y * 1.1, y * 0.8, y * 1.2, "seasonal_naive"))
    return pd.DataFrame(rows, columns=["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])


@pytest.fixture
def published(tmp_path, catalogue) -> ServingSettings:
    """A store with one release covering the first two routes of the catalogue."""
    settings = ServingSettings(var_dir=tmp_path / "var")
    keys = pd.DataFrame(series_keys(catalogue), columns=["series_id", "level", "route_id", "segment_id"])
    publish.publish(
        settings.store_dir,
        forecast_rows(catalogue, catalogue.route_ids()[:2]),
        keys,
        as_of=AS_OF,
        run=RunInfo(run_id="run-1", model_version="1", experiment_id="1", tracking_uri="sqlite:///m.db"),
        min_devices=15,
    )
    return settings
