import datetime as dt
import json
import tempfile
from pathlib import Path

import h3
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from contracts import tables
from contracts.published import SCENARIO_NETWORK
from contracts.schemas import PUBLISHED_TOTALS
from forecasting.tracking import RunInfo
from geo.cells import cell_segment_table
from jobs.lake import write_partitions
from jobs.schemas import DENSITY, PUBLISHED_CELLS, PUBLISHED_HISTORY, arrow_schema
from jobs.stages import publish

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


# History and cells (the release folder's history.parquet and cells.parquet).

CELL_A, CELL_B = "871f24ac5ffffff", "871f24ac4ffffff"


def _history() -> pd.DataFrame:
    days = pd.date_range("2025-02-25", periods=5)
    return pd.DataFrame(
        [(sid, d, float(i)) for sid in ("route:a", "segment:a/s1") for i, d in enumerate(days)],
        columns=["series_id", "ds", "y"],
    )


def _cells(devices=(20, 30, 50)) -> pd.DataFrame:
    rows = [
        ("a", "s1", CELL_A, 7, dt.date(2025, 2, 28), devices[0], 1.5, 0.3),
        ("a", "s1", CELL_A, 7, dt.date(2025, 3, 1), devices[1], None, None),
        ("a", "s1", CELL_B, 7, dt.date(2025, 3, 1), devices[2], -2.0, -0.5),
    ]
    frame = pd.DataFrame(rows, columns=["route_id", "segment_id", "cell", "res", "date", "devices", "excess", "zscore"])
    segment = frame.groupby(["route_id", "segment_id", "res"])["devices"].transform("sum")
    cell = frame.groupby(["route_id", "segment_id", "res", "cell"])["devices"].transform("sum")
    return frame.assign(share=cell / segment)


def _publish_all(store, forecasts=None, history=None, cells=None, min_devices=15):
    return publish.publish(
        store,
        _forecasts() if forecasts is None else forecasts,
        KEYS,
        as_of=AS_OF,
        run=RUN,
        min_devices=min_devices,
        history=_history() if history is None else history,
        cells=_cells() if cells is None else cells,
    )


def test_history_and_cells_are_written_with_their_schemas_and_counted_in_the_manifest(tmp_path):
    rel = _publish_all(tmp_path / "store")
    assert sorted(p.name for p in rel.path.iterdir()) == [
        "cells.parquet",
        "forecasts.parquet",
        "history.parquet",
        "manifest.json",
    ]
    assert pq.read_schema(rel.path / "history.parquet").remove_metadata() == arrow_schema(PUBLISHED_HISTORY)
    assert pq.read_schema(rel.path / "cells.parquet").remove_metadata() == arrow_schema(PUBLISHED_CELLS)
    history = pq.read_table(rel.path / "history.parquet").to_pylist()
    assert len(history) == 10 and history[0] == {"series_id": "route:a", "ds": dt.date(2025, 2, 25), "y": 0.0}
    cells = pd.read_parquet(rel.path / "cells.parquet")
    assert cells["cell"].tolist() == [CELL_B, CELL_A, CELL_A]  # sorted by route, segment, res, cell, date
    assert cells["excess"].isna().tolist() == [False, False, True]
    assert cells.groupby(["route_id", "segment_id", "res", "cell"])["share"].first().sum() == pytest.approx(1.0)
    manifest = json.loads((rel.path / "manifest.json").read_text())
    assert manifest["tables"] == {"forecasts": 6, "history": 10, "cells": 3}
    assert manifest["cell_resolutions"] == [7]
    assert manifest["privacy"] == {"suppressed": True, "min_devices": 15}


def test_manifest_extra_carries_inputs_and_overrides_cell_resolutions(tmp_path):
    inputs = {"density": {"first": "2024-03-01", "last": "2025-03-01", "series": 2}}
    rel = publish.publish(
        tmp_path / "store",
        _forecasts(),
        KEYS,
        as_of=AS_OF,
        run=RUN,
        min_devices=15,
        manifest_extra={"inputs": inputs, "cell_resolutions": [5, 6, 7]},
        history=_history(),
        cells=_cells(),
    )
    manifest = json.loads((rel.path / "manifest.json").read_text())
    assert manifest["inputs"] == inputs and manifest["cell_resolutions"] == [5, 6, 7]


def test_release_id_covers_history_and_cells_but_not_their_row_order(tmp_path):
    store = tmp_path / "store"
    base = _publish_all(store)
    shuffled = _publish_all(store, history=_history().iloc[::-1], cells=_cells().iloc[::-1])
    assert shuffled.release_id == base.release_id and not shuffled.created
    other_history = _publish_all(store, history=_history().assign(y=lambda d: d["y"] + 1))
    other_cells = _publish_all(store, cells=_cells(devices=(20, 30, 51)))
    forecasts_only = _publish(store, _forecasts())
    ids = {base.release_id, other_history.release_id, other_cells.release_id, forecasts_only.release_id}
    assert len(ids) == 4
    assert all(i.startswith("20250301-") for i in ids)


def test_publishing_without_history_and_cells_writes_the_old_release(tmp_path):
    rel = _publish(tmp_path / "store", _forecasts())
    assert sorted(p.name for p in rel.path.iterdir()) == ["forecasts.parquet", "manifest.json"]
    assert rel.release_id == publish.release_id_for(AS_OF, _forecasts())
    manifest = json.loads((rel.path / "manifest.json").read_text())
    assert manifest["tables"] == {"forecasts": 6} and "cell_resolutions" not in manifest


def test_cells_at_or_below_min_devices_are_refused_and_nothing_is_written(tmp_path):
    store = tmp_path / "store"
    with pytest.raises(ValueError, match="15 devices or fewer"):
        _publish_all(store, cells=_cells(devices=(20, 15, 50)))
    assert not store.exists() or not any((store / "releases").glob("*"))
    with pytest.raises(ValueError, match="20 devices or fewer"):
        _publish_all(store, min_devices=20)


def test_a_threshold_below_the_floor_is_refused_before_anything_is_written(tmp_path):
    store = tmp_path / "store"
    with pytest.raises(ValueError, match="min_devices=14 is below the privacy floor of 15"):
        _publish_all(store, min_devices=14)
    assert not store.exists()
    assert _publish_all(store, cells=_cells(devices=(21, 30, 50)), min_devices=20).created


def test_history_of_a_series_without_forecast_is_refused(tmp_path):
    stray = pd.concat([_history(), pd.DataFrame({"series_id": ["route:zzz"], "ds": [AS_OF], "y": [1.0]})])
    with pytest.raises(ValueError, match=r"no published forecast: \['route:zzz'\]"):
        _publish_all(tmp_path / "store", history=stray)


def test_missing_columns_and_nulls_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"cells lacks the columns \['share'\]"):
        _publish_all(tmp_path / "store", cells=_cells().drop(columns="share"))
    with pytest.raises(ValueError, match=r"history has nulls in \['y'\]"):
        _publish_all(tmp_path / "store", history=_history().assign(y=None))


def test_history_start_per_frequency():
    assert publish.history_start(AS_OF, "D") == AS_OF - dt.timedelta(days=365)
    assert publish.history_start(AS_OF, "M") == publish.history_start(AS_OF, "W") == AS_OF - dt.timedelta(days=1825)
    with pytest.raises(ValueError, match="unknown frequency"):
        publish.history_start(AS_OF, "Q")


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    devices=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=12),
    min_devices=st.integers(min_value=15, max_value=40),
)
def test_published_cells_never_hold_counts_at_or_below_min_devices(devices, min_devices):
    cells = pd.DataFrame(
        {
            "route_id": "a",
            "segment_id": "s1",
            "cell": [CELL_A if i % 2 else CELL_B for i in range(len(devices))],
            "res": 7,
            "date": [AS_OF - dt.timedelta(days=i) for i in range(len(devices))],
            "devices": devices,
            "excess": None,
            "zscore": None,
            "share": 0.5,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rel = _publish_all(Path(tmp), cells=cells, min_devices=min_devices)
        except ValueError as exc:
            assert "devices or fewer" in str(exc)
            assert min(devices) <= min_devices
            assert not any(Path(tmp).glob("releases/*/cells.parquet"))
        else:
            assert min(devices) > min_devices
            assert (pd.read_parquet(rel.path / "cells.parquet")["devices"] > min_devices).all()


def test_cells_table_reads_the_segment_cells_of_the_last_28_days_with_their_shares(spark, settings, catalogue):
    routes = catalogue.subset(catalogue.route_ids()[:2])
    r1 = routes.route_ids()[0]
    seg = routes.route(r1).segments[0].id
    at7 = cell_segment_table(routes, 7)
    c1, c2 = (int(c) for c in at7[(at7.route_id == r1) & (at7.segment_id == seg)].cell.iloc[:2])
    at5 = cell_segment_table(routes, 5)
    c5 = int(at5.cell.iloc[0])
    (r5, s5) = at5[["route_id", "segment_id"]].iloc[0]
    c8 = h3.cell_to_center_child(h3.int_to_str(c1), 8)
    first = AS_OF - dt.timedelta(days=27)
    rows = [
        (c1, 7, 20, None, 5.0, 1.0, 2.0, first),
        (c1, 7, 40, None, None, None, None, AS_OF),
        (c2, 7, 60, None, 9.0, -1.0, -0.5, AS_OF),
        (c1, 7, 99, None, None, None, None, first - dt.timedelta(days=1)),  # before the 28 days
        (c1, 7, 99, None, None, None, None, AS_OF + dt.timedelta(days=1)),  # after as_of
        (c2, 7, 12, None, None, None, None, AS_OF - dt.timedelta(days=3)),  # under the threshold: left out
        (1, 7, 99, None, None, None, None, AS_OF),  # in no corridor
        (h3.str_to_int(c8), 8, 99, None, None, None, None, AS_OF),  # res 8 is not published by default
        (c5, 5, 33, None, None, None, None, AS_OF),
    ]
    write_partitions(spark.createDataFrame(rows, DENSITY), settings.lake(tables.DENSITY), ["date", "res"])

    got = publish.cells_table(spark, settings, AS_OF, routes)
    assert got.columns.tolist() == PUBLISHED_CELLS.fieldNames()
    as_tuples = {(r.route_id, r.segment_id, r.cell, r.res, r.date.date(), r.devices) for r in got.itertuples()}
    assert as_tuples == {
        (r1, seg, h3.int_to_str(c1), 7, first, 20),
        (r1, seg, h3.int_to_str(c1), 7, AS_OF, 40),
        (r1, seg, h3.int_to_str(c2), 7, AS_OF, 60),
        (r5, s5, h3.int_to_str(c5), 5, AS_OF, 33),
    }
    share = got.groupby(["cell", "res"])["share"].first()
    assert share[(h3.int_to_str(c1), 7)] == pytest.approx(60 / 120)
    assert share[(h3.int_to_str(c2), 7)] == pytest.approx(60 / 120)
    assert share[(h3.int_to_str(c5), 5)] == 1.0
    assert got.groupby(["route_id", "segment_id", "res", "cell"])["share"].first().groupby(
        level=["route_id", "segment_id", "res"]
    ).sum().tolist() == pytest.approx([1.0, 1.0])

    # What cells_table returns is publishable as it is.
    rel = publish.publish(
        settings.store_dir, _forecasts(), KEYS, as_of=AS_OF, run=RUN, min_devices=settings.min_devices, cells=got
    )
    assert len(pd.read_parquet(rel.path / "cells.parquet")) == 4


def _corridor_parent(routes, res: int, child_res: int) -> tuple[int, list[int], list[int], tuple[str, str]]:
    """A corridor cell at ``res`` with children at ``child_res`` both inside and outside every corridor."""
    inside = set(int(c) for c in cell_segment_table(routes, child_res).cell)
    at_res = cell_segment_table(routes, res)
    for row in at_res.itertuples():
        children = [h3.str_to_int(c) for c in sorted(h3.cell_to_children(h3.int_to_str(int(row.cell)), child_res))]
        ins, outs = [c for c in children if c in inside], [c for c in children if c not in inside]
        if ins and outs:
            return int(row.cell), ins, outs, (row.route_id, row.segment_id)
    raise AssertionError("no corridor cell at the edge of its corridor")


def test_cells_table_suppresses_a_parent_whose_corridor_children_would_reveal_the_rest(spark, settings, catalogue):
    # Silver: a res-5 corridor cell with 40 devices, one res-7 child in a corridor with 30 and one outside every
    # corridor with 20. Silver itself is fine (40 - 50 < 0), but the release holds only corridor cells: 40 - 30 = 10
    # would bound the cells it leaves out. Res-7 cells are what the series add up, so the parent goes, not the child.
    routes = catalogue.subset(catalogue.route_ids()[:2])
    parent, inside, outside, (route_id, segment_id) = _corridor_parent(routes, 5, 7)
    at7 = cell_segment_table(routes, 7).set_index("cell")
    rows = [
        (parent, 5, 40, None, None, None, None, AS_OF),
        (inside[0], 7, 30, None, None, None, None, AS_OF),
        (outside[0], 7, 20, None, None, None, None, AS_OF),
        (parent, 5, 50, None, None, None, None, AS_OF - dt.timedelta(days=1)),  # 50 - 30 = 20 > 15: kept
        (inside[0], 7, 30, None, None, None, None, AS_OF - dt.timedelta(days=1)),
    ]
    write_partitions(spark.createDataFrame(rows, DENSITY), settings.lake(tables.DENSITY), ["date", "res"])
    got = publish.cells_table(spark, settings, AS_OF, routes)
    as_tuples = {(r.cell, r.res, r.date.date(), r.devices) for r in got.itertuples()}
    assert as_tuples == {
        (h3.int_to_str(inside[0]), 7, AS_OF, 30),
        (h3.int_to_str(inside[0]), 7, AS_OF - dt.timedelta(days=1), 30),
        (h3.int_to_str(parent), 5, AS_OF - dt.timedelta(days=1), 50),
    }
    assert (got[got.res == 5][["route_id", "segment_id"]].values.tolist()) == [[route_id, segment_id]]
    assert got[got.res == 7]["segment_id"].tolist() == [at7.loc[inside[0], "segment_id"]] * 2


# Forecast totals (the release folder's totals.parquet).

QUANTILES = [float(q) for q in range(10, 140, 10)]  # 10, 20, ..., 130: one per TOTAL_QUANTILES


def _totals(bump: float = 0.0) -> pd.DataFrame:
    """Totals of the next 1 and 3 days of both series: yhat 33 (+bump), intervals ±3 (80 %) and ±6 (95 %)."""
    rows = [
        (sid, window, dt.date(2025, 3, 2), dt.date(2025, 3, 1 + window), y, y - 3, y + 3, y - 6, y + 6, QUANTILES, n)
        for sid in ("route:a", "segment:a/s1")
        for window, y, n in ((1, 11.0 + bump, 40), (3, 33.0 + bump, 38))
    ]
    columns = ["series_id", "window", "start", "end", "yhat", "lo80", "hi80", "lo95", "hi95", "quantiles", "n_scores"]
    return pd.DataFrame(rows, columns=columns).assign(model="ets")


def _publish_totals(store, totals, forecasts=None):
    forecasts = _forecasts() if forecasts is None else forecasts
    return publish.publish(store, forecasts, KEYS, as_of=AS_OF, run=RUN, min_devices=15, totals=totals)


def test_totals_are_written_with_their_schema_keys_and_lineage_and_counted_in_the_manifest(tmp_path):
    rel = _publish_totals(tmp_path / "store", _totals().iloc[::-1])
    assert pq.read_schema(rel.path / "totals.parquet").remove_metadata() == PUBLISHED_TOTALS
    rows = pq.read_table(rel.path / "totals.parquet").to_pylist()
    assert [(r["series_id"], r["window"]) for r in rows] == [
        ("route:a", 1),
        ("route:a", 3),
        ("segment:a/s1", 1),
        ("segment:a/s1", 3),
    ]
    assert rows[3] == {
        "series_id": "segment:a/s1",
        "level": "segment",
        "route_id": "a",
        "segment_id": "s1",
        "freq": "D",
        "source": "density",
        "window": 3,
        "start": dt.date(2025, 3, 2),
        "end": dt.date(2025, 3, 4),
        "yhat": 33.0,
        "lo80": 30.0,
        "hi80": 36.0,
        "lo95": 27.0,
        "hi95": 39.0,
        "quantiles": QUANTILES,
        "n_scores": 38,
        "model": "ets",
        "run_id": "r1",
        "model_version": "3",
        "release_id": rel.release_id,
    }
    manifest = json.loads((rel.path / "manifest.json").read_text())
    assert manifest["tables"] == {"forecasts": 6, "totals": 4}


def test_release_id_covers_the_totals_but_not_their_row_order(tmp_path):
    store = tmp_path / "store"
    without = _publish(store, _forecasts())
    base = _publish_totals(store, _totals())
    shuffled = _publish_totals(store, _totals().iloc[::-1])
    other = _publish_totals(store, _totals(bump=1.0))
    other_quantile = _publish_totals(store, _totals().assign(quantiles=[[*QUANTILES[:-1], 131.0]] * 4))
    assert shuffled.release_id == base.release_id and not shuffled.created
    ids = [without.release_id, base.release_id, other.release_id, other_quantile.release_id]
    assert len(set(ids)) == 4  # same forecasts, different totals: never one release for both
    # A release without totals keeps the id it had before totals were published.
    assert without.release_id == publish.release_id_for(AS_OF, _forecasts())
    assert not (without.path / "totals.parquet").exists()


def test_release_id_covers_the_scenarios_route_network(tmp_path):
    # The network is built from the history with code that may change: a new network must make a new release, or
    # re-publishing would re-point CURRENT at the old one and scenarios would keep running on the old network.
    store = tmp_path / "store"

    def with_network(share: float):
        network = {"points": [], "links": [], "notes": [f"share {share}"]}
        extra = {SCENARIO_NETWORK: network}
        return publish.publish(store, _forecasts(), KEYS, as_of=AS_OF, run=RUN, min_devices=15, manifest_extra=extra)

    without = _publish(store, _forecasts())
    first, again, other = with_network(0.5), with_network(0.5), with_network(0.6)
    assert again.release_id == first.release_id and not again.created
    assert len({without.release_id, first.release_id, other.release_id}) == 3
    manifest = json.loads((other.path / "manifest.json").read_text())
    assert manifest[SCENARIO_NETWORK]["notes"] == ["share 0.6"]


def _swap(frame: pd.DataFrame, row: int, **values) -> pd.DataFrame:
    out = frame.copy()
    for column, value in values.items():
        out.at[row, column] = value
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.assign(series_id="route:zzz"), r"totals for series outside the hierarchy: \['route:zzz'\]"),
        (lambda t: _swap(t, 1, quantiles=QUANTILES[:-1]), "do not have 13 quantiles"),
        (lambda t: _swap(t, 1, quantiles=[*QUANTILES, 140.0]), "do not have 13 quantiles"),
        (lambda t: _swap(t, 1, quantiles=[QUANTILES[1], QUANTILES[0], *QUANTILES[2:]]), "decreasing quantiles"),
        (lambda t: _swap(t, 1, quantiles=[float("nan"), *QUANTILES[1:]]), "quantiles not finite or < 0"),
        (lambda t: _swap(t, 1, lo95=31.0), r"not nested \(lo95 <= lo80"),  # lo95 above lo80
        (lambda t: _swap(t, 1, lo80=34.0), "not nested"),  # lo80 above yhat
        (lambda t: _swap(t, 1, hi80=32.0), "not nested"),  # hi80 below yhat
        (lambda t: _swap(t, 1, hi95=35.0), "not nested"),  # hi95 below hi80
        (lambda t: _swap(t, 0, lo95=-1.0), "not finite or is < 0"),
        (lambda t: _swap(t, 0, hi95=float("inf")), "not finite or is < 0"),
        (lambda t: _swap(t, 0, window=0), "window that is not a whole number >= 1"),
        (lambda t: _swap(t, 0, end=dt.date(2025, 3, 1)), "end before they start"),
        (lambda t: _swap(t, 0, n_scores=-1), "n_scores not a whole number >= 0"),
        (lambda t: pd.concat([t, t.iloc[[0]]]), "given twice for the same series and window"),
        (lambda t: t.drop(columns="n_scores"), r"totals lack the columns \['n_scores'\]"),
        (lambda t: t.assign(model=None), r"totals have nulls in \['model'\]"),
    ],
)
def test_totals_that_break_the_contract_are_refused_before_anything_is_written(tmp_path, change, message):
    store = tmp_path / "store"
    with pytest.raises(ValueError, match=message):
        _publish_totals(store, change(_totals()))
    assert not store.exists()


def test_the_refusal_names_an_example_total(tmp_path):
    with pytest.raises(ValueError, match=r"1 totals .* \(e.g. route:a over 3 periods from 2025-03-02\)"):
        _publish_totals(tmp_path / "store", _swap(_totals(), 1, hi80=32.0))
