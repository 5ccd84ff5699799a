import datetime as dt

import pytest
from pyspark.sql import functions as F

from contracts import series as contracts_series
from contracts import tables
from geo.catalogue import load_catalogue
from geo.cells import cell_segment_table
from jobs.lake import read_table, write_partitions
from jobs.schemas import DENSITY, SERIES
from jobs.stages import series

D1, D2, D3 = dt.date(2025, 3, 1), dt.date(2025, 3, 2), dt.date(2025, 3, 3)


@pytest.fixture(scope="module")
def two_routes():
    cat = load_catalogue()
    return cat.subset(cat.route_ids()[:2])


def test_series_ids_are_the_contracts_ones():
    assert (series.series_id, series.DENSITY_SOURCE) == (contracts_series.series_id, contracts_series.DENSITY_SOURCE)
    assert series.series_id("segment", "channel", "calais_dover") == "segment:channel/calais_dover"


def test_the_transform_builds_every_series_from_density_in_memory(spark, settings, two_routes):
    table = cell_segment_table(two_routes, settings.h3_res)
    r1, r2 = two_routes.route_ids()
    seg_a = two_routes.route(r1).segments[0].id
    cell_a = int(table[(table.route_id == r1) & (table.segment_id == seg_a)].cell.iloc[0])
    cell_b = int(table[table.route_id == r2].cell.iloc[0])
    rows = [
        (cell_a, 7, 20, None, None, None, None, D1),
        (cell_a, 7, 30, None, None, None, None, D2),
        (cell_b, 7, 17, None, None, None, None, D2),
        (cell_b, 7, 15, None, None, None, None, D1),  # not above min_devices: not counted
        (cell_b, 6, 99, None, None, None, None, D1),  # not at h3_res
        (cell_a, 7, 50, None, None, None, None, D3),  # after the end
    ]
    gold = series.transform(spark.createDataFrame(rows, DENSITY), two_routes, settings, D1, D2)
    got = {(r.series_id, r.ds): r.y for r in gold.collect()}
    assert len(got) == len(series.series_keys(two_routes)) * 2 and set(gold.columns) == set(SERIES.fieldNames())
    assert (got[(f"segment:{r1}/{seg_a}", D1)], got[(f"segment:{r1}/{seg_a}", D2)]) == (20, 30)
    assert (got[(f"route:{r2}", D1)], got[(f"route:{r2}", D2)]) == (0, 17)
    assert (got[("all", D1)], got[("all", D2)]) == (20, 47)
    assert not settings.var_dir.exists()  # nothing read or written


def test_density_rolls_up_segment_route_all_with_zero_days(spark, settings, two_routes):
    table = cell_segment_table(two_routes, settings.h3_res)
    r1, r2 = two_routes.route_ids()
    seg_a = two_routes.route(r1).segments[0].id
    cell_a = int(table[(table.route_id == r1) & (table.segment_id == seg_a)].cell.iloc[0])
    cell_b = int(table[table.route_id == r2].cell.iloc[0])
    seg_b = table[table.cell == cell_b].segment_id.iloc[0]
    outside = 1  # not an H3 cell of any corridor: ignored
    rows = [
        (cell_a, 7, 20, 40, None, None, None, D1),
        (cell_a, 7, 30, 60, None, None, None, D3),
        (cell_b, 7, 17, 20, None, None, None, D1),
        (outside, 7, 99, 99, None, None, None, D1),
    ]
    write_partitions(spark.createDataFrame(rows, DENSITY), settings.lake(tables.DENSITY), ["date", "res"])

    n = series.run(spark, settings, D3, two_routes)
    gold = read_table(spark, settings.lake(tables.SERIES), SERIES)
    assert gold.count() == n
    got = {(r.series_id, r.ds): r.y for r in gold.collect()}

    assert got[(f"segment:{r1}/{seg_a}", D1)] == 20
    assert got[(f"segment:{r1}/{seg_a}", D2)] == 0  # nothing published that day
    assert got[(f"segment:{r1}/{seg_a}", D3)] == 30
    assert got[(f"segment:{r2}/{seg_b}", D1)] == 17
    assert got[(f"route:{r1}", D1)] == 20
    assert got[(f"route:{r2}", D1)] == 17
    assert got[("all", D1)] == 37 and got[("all", D3)] == 30
    n_series = 1 + 2 + sum(len(r.segments) for r in two_routes)
    assert n == n_series * 3
    assert gold.where(F.col("source") != "density").count() == 0


def test_a_segment_is_the_sum_of_its_published_cells_only(spark, settings, two_routes):
    # Silver written under a lower threshold: the 12-device cell is not published by the release, so the series
    # must not count it either (the segment minus its published cells would be 12).
    table = cell_segment_table(two_routes, settings.h3_res)
    r1 = two_routes.route_ids()[0]
    seg = two_routes.route(r1).segments[0].id
    c1, c2 = (int(c) for c in table[(table.route_id == r1) & (table.segment_id == seg)].cell.iloc[:2])
    rows = [(c1, 7, 20, None, None, None, None, D1), (c2, 7, 12, None, None, None, None, D1)]
    write_partitions(spark.createDataFrame(rows, DENSITY), settings.lake(tables.DENSITY), ["date", "res"])
    series.run(spark, settings, D1, two_routes)
    got = {r.series_id: r.y for r in read_table(spark, settings.lake(tables.SERIES), SERIES).collect()}
    assert got[f"segment:{r1}/{seg}"] == got[f"route:{r1}"] == got["all"] == 20


def test_no_density_is_a_clear_error(spark, settings, two_routes):
    with pytest.raises(ValueError, match="no published density"):
        series.run(spark, settings, D3, two_routes)
