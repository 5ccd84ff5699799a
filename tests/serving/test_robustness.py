"""An empty or corrupt store: the API starts, says so on /readyz and in error bodies, and never answers 500."""

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.conftest import CHANNEL, bearer

PATHS = (
    "/v1/routes",
    f"/v1/routes/{CHANNEL}",
    f"/v1/routes/{CHANNEL}/forecast",
    f"/v1/routes/{CHANNEL}/hexes",
    "/v1/arrivals",
    "/v1/crossing-points/dover/arrivals",
    "/v1/alerts",
    f"/v1/lineage?series_id=route:{CHANNEL}",
    "/v1/releases",
)


def _check(settings: ServingSettings, reason: str) -> None:
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["ready"] is False and reason in ready.json()["detail"]
        c.headers.update(bearer(settings, "admin"))
        for path in PATHS:
            r = c.get(path)
            assert r.status_code < 500 or r.status_code == 503, (path, r.status_code)
            if r.status_code == 503:
                assert reason in r.json()["detail"], path
        assert c.get("/v1/routes").json()["release_id"] is None  # the catalogue still answers


def test_empty_store(tmp_path):
    _check(ServingSettings(var_dir=tmp_path, reload_interval_s=0), "no release published")


def _corrupt(published, how):
    store = published.store_dir
    current = (store / "CURRENT").read_text().strip()
    folder = store / "releases" / current
    if how == "manifest":
        (folder / "manifest.json").write_text("{")
    elif how == "parquet":
        (folder / "forecasts.parquet").write_bytes(b"PAR1 this is not parquet")
    elif how == "columns":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"series_id": ["x"]}), folder / "forecasts.parquet")
    elif how == "pointer":
        (store / "CURRENT").write_text("../../etc\n")
    elif how == "missing":
        (folder / "forecasts.parquet").unlink()
    elif how == "unsuppressed":
        import pandas as pd

        cells = pd.read_parquet(folder / "cells.parquet")
        cells.loc[0, "devices"] = 3
        cells.to_parquet(folder / "cells.parquet")


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("manifest", "unreadable"),
        ("parquet", "unreadable"),
        ("columns", "lacks columns"),
        ("pointer", "invalid release id"),
        ("missing", "unreadable"),
        ("unsuppressed", "refusing to serve"),
    ],
)
def test_corrupt_store(published, how, reason):
    _corrupt(published, how)
    _check(published, reason)


def test_a_table_removed_under_a_running_api_is_a_503_not_a_500(client, published):
    older = client.get("/v1/releases").json()["releases"][1]["release_id"]
    (published.store_dir / "releases" / older / "forecasts.parquet").unlink()
    r = client.get(f"/v1/routes/{CHANNEL}/forecast", params={"release": older})
    assert r.status_code == 503 and "unreadable" in r.json()["detail"]
