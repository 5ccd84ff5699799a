"""Flows on hand-made trajectories placed on real catalogue segments of the Central Mediterranean route:
A = the middle of Agadez → Sabha, B = the middle of Sabha → Tripoli (consecutive), C = the middle of
Tripoli → Zuwara, and OUT = a point in the Atlantic, outside every corridor."""

from __future__ import annotations

import datetime as dt

import h3
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr
from pyspark.sql import functions as F

from contracts import tables
from contracts.series import series_id
from geo.cells import cached_cell_segment_table
from jobs.lake import read_checks, read_table, write_partitions
from jobs.schemas import BRONZE_PINGS, FLOWS_CELL, FLOWS_SEGMENT, SERIES
from jobs.settings import JobSettings
from jobs.stages import flows
from jobs.stages.aggregate import suppress_small_counts

ROUTE = "central_mediterranean"
SEG_A, SEG_B, SEG_C = "agadez_sabha", "sabha_tripoli", "tripoli_zuwara"
H3_RES, FLOW_RES = JobSettings().h3_res, JobSettings().flow_res
D1, D2, D3 = dt.date(2025, 3, 10), dt.date(2025, 3, 11), dt.date(2025, 3, 12)
AB = (ROUTE, SEG_A, ROUTE, SEG_B)
BA = (ROUTE, SEG_B, ROUTE, SEG_A)
BC = (ROUTE, SEG_B, ROUTE, SEG_C)


def _centre(lat: float, lon: float) -> tuple[float, float]:
    """The centre of the H3 cell at H3_RES holding (lat, lon): far from any cell edge."""
    return h3.cell_to_latlng(h3.latlng_to_cell(lat, lon, H3_RES))


@pytest.fixture(scope="module")
def places(catalogue) -> dict[str, tuple[float, float]]:
    route = catalogue.route(ROUTE)
    table = cached_cell_segment_table(H3_RES).set_index("cell")
    out = {}
    for name, seg_id in (("A", SEG_A), ("B", SEG_B), ("C", SEG_C)):
        mid = route.segment(seg_id).line.interpolate(0.5, normalized=True)
        out[name] = _centre(mid.y, mid.x)
        cell = h3.str_to_int(h3.latlng_to_cell(*out[name], H3_RES))
        assert tuple(table.loc[cell, ["route_id", "segment_id"]]) == (ROUTE, seg_id)  # the table agrees
    out["OUT"] = _centre(0.0, -30.0)
    assert h3.str_to_int(h3.latlng_to_cell(*out["OUT"], H3_RES)) not in table.index
    coarse = {h3.latlng_to_cell(*p, FLOW_RES) for p in out.values()}
    assert len(coarse) == len(out)  # four different cells at the flow resolution too
    return out


@pytest.fixture(scope="module")
def cell_segments():
    return cached_cell_segment_table(H3_RES)


def _coarse(places, name: str) -> int:
    return h3.str_to_int(h3.latlng_to_cell(*places[name], FLOW_RES))


def _pings(spark, places, trajectories: dict[str, list[str]], day: dt.date = D1, *, reverse: bool = False):
    """Bronze pings: each device visits its places in list order, ten minutes apart from 08:00."""
    start = dt.datetime.combine(day, dt.time(8))
    rows = [
        (device, start + dt.timedelta(minutes=10 * i), *places[p], None, None, day)
        for device, visits in trajectories.items()
        for i, p in enumerate(visits)
    ]
    return spark.createDataFrame(rows[::-1] if reverse else rows, BRONZE_PINGS)


def _many(tag: str, n: int, visits: list[str]) -> dict[str, list[str]]:
    return {f"{tag}-{i}": visits for i in range(n)}


def _segment_counts(df) -> dict[tuple, int]:
    return {(r.from_route, r.from_segment, r.to_route, r.to_segment): r.devices for r in df.collect()}


def _cell_counts(df) -> dict[tuple[int, int], int]:
    return {(r.from_cell, r.to_cell): r.devices for r in df.collect()}


def test_flow_series_ids():
    assert series_id("flow", ROUTE, SEG_A, to_segment=SEG_B) == f"flow:{ROUTE}/{SEG_A}>{SEG_B}"
    with pytest.raises(ValueError, match="to_segment"):
        series_id("flow", ROUTE, SEG_A)


def test_sixteen_devices_publish_a_flow_of_sixteen_fifteen_do_not(spark, settings, places):
    trajectories = _many("ab", 16, ["A", "B"]) | _many("ba", 15, ["B", "A"])
    write_partitions(_pings(spark, places, trajectories), settings.lake(tables.BRONZE_PINGS), ["date"])

    result = flows.run(spark, settings, D1)

    assert result == flows.FlowCounts(
        device_days=31,
        segment_device_days=31,
        segment_transitions=2,
        segment_published=1,
        segment_suppressed=1,
        cell_device_days=31,
        cell_transitions=2,
        cell_published=1,
        cell_suppressed=1,
        series_rows=1,
    )
    segment = read_table(spark, settings.lake(tables.FLOWS_SEGMENT), FLOWS_SEGMENT)
    assert [tuple(r) for r in segment.collect()] == [(*AB, 16, D1)]
    cell = read_table(spark, settings.lake(tables.FLOWS_CELL), FLOWS_CELL)
    assert [tuple(r) for r in cell.collect()] == [(_coarse(places, "A"), _coarse(places, "B"), FLOW_RES, 16, D1)]
    gold = read_table(spark, settings.lake(tables.SERIES), SERIES)
    assert [tuple(r) for r in gold.collect()] == [
        (f"flow:{ROUTE}/{SEG_A}>{SEG_B}", "flow", ROUTE, SEG_A, D1, 16.0, "D", "flows")
    ]
    checks = read_checks(spark, settings.lake(tables.QA_CHECKS), D1, "flows")
    assert checks["segment_suppressed"] == 1 and checks["cell_published"] == 1 and checks["min_devices"] == 15

    # Device ids never leave bronze: not in the declared schemas, nor in the files as written.
    for path, schema in (
        (settings.lake(tables.FLOWS_SEGMENT), FLOWS_SEGMENT),
        (settings.lake(tables.FLOWS_CELL), FLOWS_CELL),
        (settings.lake(tables.SERIES), SERIES),
    ):
        assert "device_id" not in schema.fieldNames()
        assert "device_id" not in spark.read.parquet(str(path)).columns


def test_the_transform_plans_suppressed_flows_without_the_lake(spark, settings, places, cell_segments):
    trajectories = _many("ab", 16, ["A", "B"]) | _many("ba", 15, ["B", "A"])
    planned = flows.transform(_pings(spark, places, trajectories), cell_segments, settings)
    assert [tuple(r) for r in planned.segment.collect()] == [(*AB, 16, D1)]
    assert _segment_counts(planned.segment_flows) == {AB: 16, BA: 15}  # before suppression, for the accounting
    assert _cell_counts(planned.cell) == {(_coarse(places, "A"), _coarse(places, "B")): 16}
    assert planned.segment_moves.count() == 31
    planned.unpersist()
    assert not settings.var_dir.exists()  # nothing read or written


def test_only_consecutive_legs_within_a_route_become_flow_series(catalogue):
    other_route = (ROUTE, SEG_C, "eastern_mediterranean", "x")
    assert flows.flow_series_keys([BC, BA, AB, other_route], catalogue) == [
        (f"flow:{ROUTE}/{SEG_A}>{SEG_B}", ROUTE, SEG_A, SEG_B),
        (f"flow:{ROUTE}/{SEG_B}>{SEG_C}", ROUTE, SEG_B, SEG_C),
    ]


def test_flows_are_refused_under_differential_privacy(spark, tmp_path):
    # A valid secret: the settings themselves refuse DP with the default one.
    dp = JobSettings(
        var_dir=tmp_path / "var", dp_mechanism="laplace", dp_secret=SecretStr("a-long-test-secret-0123456789")
    )
    with pytest.raises(ValueError, match="not computed under differential privacy"):
        flows.run(spark, dp, D1)
    assert not dp.lake_dir.exists()  # refused before anything was read or written


def test_a_device_going_back_and_forth_counts_once_per_direction(spark, places, cell_segments):
    pings = _pings(spark, places, {"x": ["A", "B", "A", "B"], "y": ["A", "A", "B", "B"]})
    got = _segment_counts(flows.segment_transitions(pings, cell_segments))
    assert got == {AB: 2, BA: 1}
    a, b = _coarse(places, "A"), _coarse(places, "B")
    assert _cell_counts(flows.cell_transitions(pings, FLOW_RES)) == {(a, b): 2, (b, a): 1}


def test_pings_outside_corridors_are_skipped_by_segment_flows_only(spark, places, cell_segments):
    pings = _pings(spark, places, {"p": ["A", "OUT", "B"], "q": ["B", "OUT", "B"], "r": ["OUT", "OUT"]})
    assert _segment_counts(flows.segment_transitions(pings, cell_segments)) == {AB: 1}
    a, b, out = (_coarse(places, n) for n in ("A", "B", "OUT"))
    assert _cell_counts(flows.cell_transitions(pings, FLOW_RES)) == {(a, out): 1, (out, b): 2, (b, out): 1}


def test_trajectories_follow_timestamps_not_input_order(spark, places, cell_segments):
    late_first = _pings(spark, places, {"z": ["B", "C"]}, reverse=True)  # rows listed C (08:10) then B (08:00)
    # Two pings at the same instant: A (lat ~20.5) is ordered before B (lat ~30.1), whatever the input order.
    same_instant = [
        _pings(spark, places, {"t1": ["A"], "x": ["B"]}, reverse=reverse).withColumn("device_id", F.lit(device))
        for device, reverse in (("t1", False), ("t2", True))
    ]
    pings = late_first.union(same_instant[0]).union(same_instant[1]).coalesce(1)
    assert _segment_counts(flows.segment_transitions(pings, cell_segments)) == {AB: 2, BC: 1}


def test_two_dates_are_independent(spark, places, cell_segments):
    pings = (
        _pings(spark, places, {"d": ["A"], "e": ["A", "B"]}, D1)
        .union(_pings(spark, places, {"d": ["B"], "e": ["A", "B"]}, D2))
        .repartition(3)
    )
    got = {
        (r.date, r.from_segment, r.to_segment): r.devices
        for r in flows.segment_transitions(pings, cell_segments).collect()
    }
    assert got == {(D1, SEG_A, SEG_B): 1, (D2, SEG_A, SEG_B): 1}  # "d" at A on D1 and B on D2 did not move


def test_rerunning_dates_replaces_them_and_keeps_the_others(spark, settings, places, catalogue):
    # What earlier runs left in silver for D1, D2 and D3.
    segment_path, cell_path = settings.lake(tables.FLOWS_SEGMENT), settings.lake(tables.FLOWS_CELL)
    a, b = _coarse(places, "A"), _coarse(places, "B")
    old_segments = [(*AB, 16, D1), (*BA, 30, D1), (*AB, 25, D2), (*BA, 17, D3)]
    write_partitions(spark.createDataFrame(old_segments, FLOWS_SEGMENT), segment_path, ["date"])
    old_cells = [(a, b, FLOW_RES, 16, D1), (a, b, FLOW_RES, 25, D2), (b, a, FLOW_RES, 17, D3)]
    write_partitions(spark.createDataFrame(old_cells, FLOWS_CELL), cell_path, ["date"])
    # Bronze now says: D1 20 devices A → B and 15 B → A; D2 15 devices A → B (all suppressed).
    bronze = settings.lake(tables.BRONZE_PINGS)
    d1 = _many("ab", 20, ["A", "B"]) | _many("ba", 15, ["B", "A"])
    write_partitions(
        _pings(spark, places, d1, D1).union(_pings(spark, places, _many("ab", 15, ["A", "B"]), D2)), bronze, ["date"]
    )

    result = flows.run(spark, settings, D2, since=D1, catalogue=catalogue.subset([ROUTE]))

    assert (result.device_days, result.segment_published, result.segment_suppressed) == (50, 1, 2)
    # D1: A → B replaced, B → A (now suppressed) gone; D2: emptied; D3 (not re-run): kept.
    assert _dated(spark, segment_path) == {(D1, *AB): 20, (D3, *BA): 17}
    cells = {(r.date, r.from_cell, r.to_cell): r.devices for r in read_table(spark, cell_path, FLOWS_CELL).collect()}
    assert cells == {(D1, a, b): 20, (D3, b, a): 17}


def _dated(spark, path) -> dict[tuple, int]:
    rows = read_table(spark, path, FLOWS_SEGMENT).collect()
    return {(r.date, r.from_route, r.from_segment, r.to_route, r.to_segment): r.devices for r in rows}


def test_gold_flow_series_come_from_silver_along_consecutive_legs_with_zero_days(spark, settings, catalogue):
    assert (SEG_A, SEG_B) in catalogue.route(ROUTE).successions() and (SEG_B, SEG_C) in catalogue.route(
        ROUTE
    ).successions()
    silver = [
        (*AB, 16, D1),
        (*AB, 20, D3),
        (*BC, 17, D2),
        (*BA, 18, D3),  # back the way it came: kept in silver, not a series
        (ROUTE, SEG_C, "eastern_mediterranean", "x", 30, D2),  # between two routes: no series
        (*AB, 99, D3 + dt.timedelta(days=1)),  # after the run date
    ]
    write_partitions(spark.createDataFrame(silver, FLOWS_SEGMENT), settings.lake(tables.FLOWS_SEGMENT), ["date"])
    gold_path = settings.lake(tables.SERIES)
    earlier = [
        ("all", "all", None, None, D1, 5.0, "D", "density"),  # another source: kept
        ("flow:gone/a>b", "flow", "gone", "a", D1, 40.0, "D", "flows"),  # a stale flow series: replaced
    ]
    write_partitions(spark.createDataFrame(earlier, SERIES), gold_path, ["source"])

    assert flows.write_flow_series(spark, settings, D3) == 6  # no bronze needed

    gold = read_table(spark, gold_path, SERIES)
    got = {(r.series_id, r.ds): r.y for r in gold.where(F.col("source") == "flows").collect()}
    ab, bc = f"flow:{ROUTE}/{SEG_A}>{SEG_B}", f"flow:{ROUTE}/{SEG_B}>{SEG_C}"
    assert got == {(ab, D1): 16, (ab, D2): 0, (ab, D3): 20, (bc, D1): 0, (bc, D2): 17, (bc, D3): 0}
    meta = {
        (r.series_id, r.level, r.route_id, r.segment_id, r.freq)
        for r in gold.where(F.col("source") == "flows").collect()
    }
    assert meta == {(ab, "flow", ROUTE, SEG_A, "D"), (bc, "flow", ROUTE, SEG_B, "D")}
    assert gold.where(F.col("source") == "density").count() == 1


def test_no_published_flow_empties_the_gold_flows(spark, settings):
    gold_path = settings.lake(tables.SERIES)
    write_partitions(
        spark.createDataFrame([("flow:gone/a>b", "flow", "gone", "a", D1, 40.0, "D", "flows")], SERIES),
        gold_path,
        ["source"],
    )
    assert flows.write_flow_series(spark, settings, D3) == 0
    assert read_table(spark, gold_path, SERIES).count() == 0


@hsettings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.tuples(*[st.integers(min_value=0, max_value=25)] * 3),
    k=st.integers(min_value=15, max_value=20),
)
def test_no_published_flow_has_min_devices_or_fewer(spark, places, cell_segments, sizes, k):
    n_ab, n_ba, n_bc = sizes
    trajectories = _many("ab", n_ab, ["A", "B"]) | _many("ba", n_ba, ["B", "A"]) | _many("bc", n_bc, ["B", "C"])
    counts = flows.segment_transitions(_pings(spark, places, trajectories), cell_segments)
    got = _segment_counts(suppress_small_counts(counts, k))
    assert all(n > k for n in got.values())
    assert got == {flow: n for flow, n in ((AB, n_ab), (BA, n_ba), (BC, n_bc)) if n > k}
