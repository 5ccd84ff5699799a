import datetime as dt
import json

import pandas as pd
import pytest

from forecasting.tracking import RunInfo
from jobs import publish

AS_OF = dt.date(2025, 3, 1)
RUN = RunInfo(run_id="r1", model_version="3", experiment_id="1", tracking_uri="sqlite:///x.db")
KEYS = pd.DataFrame(
    [("route:a", "route", "a", None, "D", "density"), ("segment:a/s1", "segment", "a", "s1", "D", "density")],
    columns=["series_id", "level", "route_id", "segment_id", "freq", "source"],
)


def _forecasts(bump: float = 0.0) -> pd.DataFrame:
    days = pd.date_range("2025-03-02", periods=3)
    rows = []
    for sid in ("route:a", "segment:a/s1"):
        for i, d in enumerate(days):
            y = 10.0 + i + bump
            rows.append((sid, d, y, y - 1, y + 1, y - 2, y + 2, "seasonal_naive"))
    return pd.DataFrame(rows, columns=["series_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95", "model"])


def _publish(store, forecasts, run=RUN):
    return publish.publish(store, forecasts, KEYS, as_of=AS_OF, run=run, min_devices=15)


def test_release_is_immutable_and_current_moves_atomically(tmp_path):
    store = tmp_path / "store"
    first = _publish(store, _forecasts())
    assert first.created and first.release_id.startswith("20250301-")
    assert (store / "CURRENT").read_text().strip() == first.release_id

    # Same forecasts from another run: same release, not rewritten.
    again = _publish(store, _forecasts(), RunInfo("r2", "4", "1", "sqlite:///x.db"))
    assert again.release_id == first.release_id and not again.created
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["run_id"] == "r1"
    assert manifest["privacy"] == {"suppressed": True, "min_devices": 15}

    changed = _publish(store, _forecasts(bump=1.0))
    assert changed.release_id != first.release_id
    assert (store / "CURRENT").read_text().strip() == changed.release_id
    assert sorted(p.name for p in (store / "releases").iterdir()) == sorted([first.release_id, changed.release_id])


def test_published_rows_carry_hierarchy_and_lineage(tmp_path):
    rel = _publish(tmp_path / "store", _forecasts())
    table = pd.read_parquet(rel.path / "forecasts.parquet")
    assert len(table) == 6
    seg = table[table.series_id == "segment:a/s1"].iloc[0]
    assert (seg.level, seg.route_id, seg.segment_id, seg.run_id, seg.model_version) == ("segment", "a", "s1", "r1", "3")
    assert set(table.release_id) == {rel.release_id}


def test_forecast_for_unknown_series_is_refused(tmp_path):
    bad = _forecasts().assign(series_id="route:zzz")
    with pytest.raises(ValueError, match="outside the hierarchy"):
        _publish(tmp_path / "store", bad)


def test_pointing_at_a_missing_release_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not in"):
        publish.point_current(tmp_path, "20250101-nothere")
