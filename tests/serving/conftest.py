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


def density_keys(catalogue) -> pd.DataFrame:
    keys = pd.DataFrame(series_keys(catalogue), columns=["series_id", "level", "route_id", "segment_id"])
    return keys.assign(freq="D", source="density")


def forecast_rows(catalogue, route_ids, horizon=HORIZON) -> pd.DataFrame:
    keys = density_keys(catalogue)
    keys = keys[keys.route_id.isin(route_ids)]
    days = pd.date_range(AS_OF + dt.timedelta(days=1), periods=horizon)
    rows = []
    for n, sid in enumerate(keys.series_id):
        for i, d in enumerate(days):
            y = 100.0 * (n + 1) + i
            rows.append((sid, d, y, y * 0.9, y * 1.1, y * 0.8, y * 1.2, "seasonal_naive"))
    return pd.DataFrame(rows, columns=["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])


def frontex_rows(route_id: str, months: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A monthly official-count forecast for one route, and its key."""
    sid = f"frontex/route:{route_id}"
    days = pd.date_range("2024-05-01", periods=months, freq="MS")
    rows = [(sid, d, 1000.0 + i, 900.0, 1100.0 + i, 800.0, 1200.0 + i, "prophet") for i, d in enumerate(days)]
    forecasts = pd.DataFrame(rows, columns=["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])
    key = pd.DataFrame([(sid, "route", route_id, None, "M", "frontex")], columns=list(density_keys_columns()))
    return forecasts, key


def density_keys_columns() -> tuple[str, ...]:
    return ("series_id", "level", "route_id", "segment_id", "freq", "source")


@pytest.fixture
def published(tmp_path, catalogue) -> ServingSettings:
    """A store with one release: density forecasts for the first two routes of the catalogue, and a monthly
    Frontex forecast for the first."""
    settings = ServingSettings(var_dir=tmp_path / "var")
    official, official_key = frontex_rows(catalogue.route_ids()[0])
    publish.publish(
        settings.store_dir,
        pd.concat([forecast_rows(catalogue, catalogue.route_ids()[:2]), official], ignore_index=True),
        pd.concat([density_keys(catalogue), official_key], ignore_index=True),
        as_of=AS_OF,
        run=RunInfo(run_id="run-1", model_version="1", experiment_id="1", tracking_uri="sqlite:///m.db"),
        min_devices=15,
    )
    return settings
