"""A published store to serve: two releases (so alerts can check the latest observation against the previous
forecast) with history and cells, written by the real publish step; and tokens for every role and scope."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from contracts.series import PEOPLE_SOURCE, series_id
from forecasting.tracking import RunInfo
from geo.cells import corridor_cells, int_to_cell
from jobs.stages import publish
from jobs.stages.series import series_keys
from serving.app import create_app
from serving.auth import create_token
from serving.settings import ServingSettings

AS_OF = dt.date(2025, 3, 1)
HORIZON = 28
HISTORY_DAYS = 60
MIN_DEVICES = 15
CELL_RES = (5, 7)
CENTRAL_MED, CHANNEL = "central_mediterranean", "channel"
SERVED = (CENTRAL_MED, CHANNEL)  # routes with density forecasts; the others have none
# The last observation of every density series jumps to this many times its usual level: the previous release's
# 95 % interval for that day did not see it coming, and it is above every series' history quantile.
JUMP = 3.0


def density_keys(catalogue) -> pd.DataFrame:
    keys = pd.DataFrame(series_keys(catalogue), columns=["series_id", "level", "route_id", "segment_id"])
    return keys.assign(freq="D", source="density")


def level_of(n: int) -> float:
    return 100.0 * (n + 1)


def forecast_rows(catalogue, route_ids, as_of=AS_OF, horizon=HORIZON) -> pd.DataFrame:
    keys = density_keys(catalogue)
    keys = keys[keys.route_id.isin(route_ids)]
    days = pd.date_range(as_of + dt.timedelta(days=1), periods=horizon)
    rows = []
    for n, sid in enumerate(keys.series_id):
        for i, d in enumerate(days):
            y = level_of(n) + i
            rows.append((sid, d, y, y * 0.9, y * 1.1, y * 0.8, y * 1.2, "seasonal_naive"))
    return pd.DataFrame(rows, columns=["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])


def history_rows(forecasts: pd.DataFrame, as_of=AS_OF) -> pd.DataFrame:
    """HISTORY_DAYS of observations before each forecast, level with it, the last day JUMP times higher."""
    rows = []
    for sid, g in forecasts.groupby("series_id", sort=False):
        level = float(g["yhat"].iloc[0])
        days = pd.date_range(end=as_of, periods=HISTORY_DAYS)
        ys = np.full(len(days), level)
        ys[-1] = level * JUMP
        rows.extend(zip([sid] * len(days), days.date, ys, strict=True))
    return pd.DataFrame(rows, columns=["series_id", "ds", "y"])


def frontex_rows(route_id: str, months: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A monthly official-count forecast for one route, and its key."""
    sid = f"frontex/route:{route_id}"
    days = pd.date_range("2024-05-01", periods=months, freq="MS")
    rows = [(sid, d, 1000.0 + i, 900.0, 1100.0 + i, 800.0, 1200.0 + i, "prophet") for i, d in enumerate(days)]
    forecasts = pd.DataFrame(rows, columns=["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])
    key = pd.DataFrame([(sid, "route", route_id, None, "M", "frontex")], columns=list(KEY_COLUMNS))
    return forecasts, key


KEY_COLUMNS = ("series_id", "level", "route_id", "segment_id", "freq", "source")

# Forecast totals: the release publishes them for the Central Mediterranean's series only (the Channel has none), over
# these windows where the series' forecast is long enough. A total's quantiles are its yhat times these factors (at
# contracts.published.TOTAL_QUANTILES): median yhat, 80 % interval ±5 %, 95 % interval ±10 %.
TOTAL_WINDOWS = (7, 28)
TOTAL_FACTORS = (0.90, 0.92, 0.95, 0.96, 0.97, 0.98, 1.00, 1.02, 1.03, 1.04, 1.05, 1.08, 1.10)


def n_scores_of(window: int) -> int:
    return 60 - window


def total_rows(forecasts: pd.DataFrame, series_ids) -> pd.DataFrame:
    """The totals (forecasting.totals.TOTALS_COLUMNS) of ``series_ids``: the sum of each forecast's first ``window``
    yhat."""
    rows = []
    for sid, g in forecasts[forecasts.series_id.isin(list(series_ids))].groupby("series_id"):
        g = g.sort_values("ds")
        for window in TOTAL_WINDOWS:
            if window > len(g):
                continue
            y = float(g["yhat"].iloc[:window].sum())
            quantiles = [y * f for f in TOTAL_FACTORS]
            start, end = g["ds"].iloc[0], g["ds"].iloc[window - 1]
            model = g["model"].iloc[0]
            rows.append(
                (
                    sid,
                    window,
                    start,
                    end,
                    y,
                    y * 0.95,
                    y * 1.05,
                    y * 0.9,
                    y * 1.1,
                    quantiles,
                    n_scores_of(window),
                    model,
                )
            )
    columns = ["series_id", "window", "start", "end", "yhat", "lo80", "hi80", "lo95", "hi95", "quantiles", "n_scores"]
    return pd.DataFrame(rows, columns=[*columns, "model"])


def cell_rows(catalogue, route_id: str, as_of=AS_OF) -> pd.DataFrame:
    """Suppressed cells (> MIN_DEVICES devices) of the first two segments of a route, 28 days, at CELL_RES."""
    route = catalogue.route(route_id)
    rows = []
    for seg in route.segments[:2]:
        for res in CELL_RES:
            cells = [int_to_cell(int(c)) for c in sorted(corridor_cells(seg, res))[:4]]
            for k, cell in enumerate(cells):
                for d in pd.date_range(end=as_of, periods=28).date:
                    devices = MIN_DEVICES + 1 + 10 * k
                    rows.append((route_id, seg.id, cell, res, d, devices, devices - 20.0, 0.5))
    cells = pd.DataFrame(rows, columns=["route_id", "segment_id", "cell", "res", "date", "devices", "excess", "zscore"])
    totals = cells.groupby(["route_id", "segment_id", "res"])["devices"].transform("sum")
    per_cell = cells.groupby(["route_id", "segment_id", "res", "cell"])["devices"].transform("sum")
    return cells.assign(share=per_cell / totals)


def publish_release(settings: ServingSettings, catalogue, as_of: dt.date, run_id: str):
    official, official_key = frontex_rows(SERVED[0])
    density = forecast_rows(catalogue, SERVED, as_of=as_of)
    forecasts = pd.concat([density, official], ignore_index=True)
    return publish.publish(
        settings.store_dir,
        forecasts,
        pd.concat([density_keys(catalogue), official_key], ignore_index=True),
        as_of=as_of,
        run=RunInfo(run_id=run_id, model_version=run_id[-1], experiment_id="1", tracking_uri="sqlite:///m.db"),
        min_devices=MIN_DEVICES,
        manifest_extra={"inputs": {"density": {"first": "2024-01-01", "last": str(as_of), "series": 99}}},
        history=history_rows(density, as_of),
        cells=cell_rows(catalogue, SERVED[0], as_of),
        totals=total_rows(density, central_series(catalogue)),
    )


def central_series(catalogue) -> list[str]:
    """The density series of the Central Mediterranean (its route and every segment)."""
    keys = density_keys(catalogue)
    return list(keys.series_id[keys.route_id == CENTRAL_MED])


@pytest.fixture(scope="session")
def published_template(tmp_path_factory, catalogue) -> Path:
    """The var folder of :func:`published`, written once per session by the real publish step."""
    var = tmp_path_factory.mktemp("published") / "var"
    settings = ServingSettings(var_dir=var, reload_interval_s=0)
    publish_release(settings, catalogue, AS_OF - dt.timedelta(days=1), "run-1")
    publish_release(settings, catalogue, AS_OF, "run-2")
    return var


@pytest.fixture
def published(tmp_path, published_template) -> ServingSettings:
    """A store with two releases, the later one current: density forecasts, history and cells for the first two
    routes of the catalogue, and a monthly Frontex forecast for the first.

    Each test gets its own copy (file times and modes kept) of the session's template: a test may publish, revoke
    or audit into it, and ~110 tests no longer run publish twice each."""
    shutil.copytree(published_template, tmp_path / "var")
    return ServingSettings(var_dir=tmp_path / "var", reload_interval_s=0)


def token(settings: ServingSettings, role: str = "admin", routes=None, subject: str = "tester") -> str:
    return create_token(settings, subject=subject, role=role, routes=routes, ttl=dt.timedelta(hours=1))


def bearer(settings: ServingSettings, role: str = "admin", routes=None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, role, routes)}"}


@pytest.fixture
def api(published):
    """A client of the API over the published store (lifespan run), unauthenticated."""
    with TestClient(create_app(published)) as c:
        yield c


@pytest.fixture
def client(api, published):
    """The same client with an admin token for every route."""
    api.headers.update(bearer(published, "admin"))
    return api


# A release with people series (the measurement model's estimate) for the Central Mediterranean only: the route, two
# of its segments and three crossing points, two of them on one segment. The Channel keeps density only (devices).
PEOPLE_HORIZON = 14
PEOPLE_ROUTE_LEVEL = 5000.0
PEOPLE_SEGMENTS = {"zuwara_lampedusa": 1000.0, "tripoli_malta_sicily": 2000.0}
# Crossing point -> (its segment, its first day's people): Valletta and Pozzallo share tripoli_malta_sicily.
PEOPLE_POINTS = {
    "lampedusa": ("zuwara_lampedusa", 30.0),
    "valletta": ("tripoli_malta_sicily", 10.0),
    "pozzallo": ("tripoli_malta_sicily", 20.0),
}
PEOPLE_MODEL = {
    "model_id": "people-2025-03-01-abc123",
    "unit": "people",
    "fitted_on": {"frontex": "2024-01-01..2025-02-28", "uk-channel": "2024-06-01..2025-02-28"},
    "routes": {
        CENTRAL_MED: {
            "feature": "level:sub_saharan",
            "scale": 2.5,
            "days_on_route": 21.0,
            "sigma_log": 0.3,
            "fitted_on": "monthly",
            "periods": 14,
            "reason": "lowest monthly error of 3 candidates",
            "blind": False,
        },
        CHANNEL: {
            "feature": None,
            "scale": 0.0,
            "days_on_route": 7.0,
            "sigma_log": 0.0,
            "fitted_on": "daily",
            "periods": 0,
            "reason": "no group signal above the threshold",
            "blind": True,
        },
    },
}


def people_rows(as_of=AS_OF, horizon=PEOPLE_HORIZON) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily people forecasts (value on day i: first day's value + i; intervals ±10 % and ±20 %) and their keys."""
    route = CENTRAL_MED
    keys = [(series_id("route", route, source=PEOPLE_SOURCE), "route", route, None, PEOPLE_ROUTE_LEVEL)]
    keys += [
        (series_id("segment", route, seg, source=PEOPLE_SOURCE), "segment", route, seg, level)
        for seg, level in PEOPLE_SEGMENTS.items()
    ]
    keys += [
        (series_id("point", route, seg, source=PEOPLE_SOURCE, crossing_point=cp), "point", route, seg, level)
        for cp, (seg, level) in PEOPLE_POINTS.items()
    ]
    days = pd.date_range(as_of + dt.timedelta(days=1), periods=horizon)
    rows = [
        (sid, d, y, y * 0.9, y * 1.1, y * 0.8, y * 1.2, "ets")
        for sid, *_, level in keys
        for i, d in enumerate(days)
        for y in [level + i]
    ]
    forecasts = pd.DataFrame(rows, columns=["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])
    key = pd.DataFrame([(*k[:4], "D", PEOPLE_SOURCE) for k in keys], columns=list(KEY_COLUMNS))
    return forecasts, key


def publish_people_release(settings: ServingSettings, catalogue, as_of: dt.date = AS_OF, run_id: str = "run-p"):
    """A release like :func:`publish_release`'s plus the people series and the manifest's people_model."""
    official, official_key = frontex_rows(SERVED[0])
    density = forecast_rows(catalogue, SERVED, as_of=as_of)
    people, people_key = people_rows(as_of)
    observed = pd.concat([density, people], ignore_index=True)
    return publish.publish(
        settings.store_dir,
        pd.concat([density, official, people], ignore_index=True),
        pd.concat([density_keys(catalogue), official_key, people_key], ignore_index=True),
        as_of=as_of,
        run=RunInfo(run_id=run_id, model_version="7", experiment_id="1", tracking_uri="sqlite:///m.db"),
        min_devices=MIN_DEVICES,
        manifest_extra={
            "inputs": {"density": {"first": "2024-01-01", "last": str(as_of), "series": 99}},
            "people_model": PEOPLE_MODEL,
        },
        history=history_rows(observed, as_of),
        cells=cell_rows(catalogue, SERVED[0], as_of),
        totals=total_rows(
            pd.concat([density, people], ignore_index=True),
            # every people series but Lampedusa's point: its arrivals' total is the sum of its days
            [*central_series(catalogue), *people_key.series_id[~people_key.series_id.str.endswith("/lampedusa")]],
        ),
    )


@pytest.fixture(scope="session")
def people_template(tmp_path_factory, catalogue) -> Path:
    var = tmp_path_factory.mktemp("people") / "var"
    publish_people_release(ServingSettings(var_dir=var, reload_interval_s=0), catalogue)
    return var


@pytest.fixture
def people_store(tmp_path, people_template) -> ServingSettings:
    """A store whose current release holds people series for the Central Mediterranean (not the Channel)."""
    shutil.copytree(people_template, tmp_path / "var")
    return ServingSettings(var_dir=tmp_path / "var", reload_interval_s=0)
