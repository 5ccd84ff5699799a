"""Provider density tiles: validated into bronze with a quarantine, then aggregated into silver like pings."""

import datetime as dt

import h3
import pytest

from contracts import tables
from jobs.lake import read_checks, read_table
from jobs.schemas import BRONZE_TILES, DENSITY, QUARANTINE_TILES
from jobs.stages import aggregate, tiles

RUN = dt.date(2025, 3, 10)
SABHA = (27.0377, 14.4283)
CELL9 = h3.latlng_to_cell(*SABHA, 9)
CELL6 = h3.cell_to_parent(h3.latlng_to_cell(27.5, 15.5, 9), 6)  # a tile given at res 6, far from Sabha


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tiles_are_validated_accounted_and_aggregated(spark, settings):
    f = _write(
        settings.raw_dir / "tiles.csv",
        [
            "date,cell,lat,lon,count",
            f"2025-03-10,{CELL9},,,12",
            f"2025-03-10,{CELL9},,,12",  # exact duplicate
            f"2025-03-10,,{SABHA[0]},{SABHA[1]},9",  # same res-9 cell, given as a point: summed → 21
            f"2025-03-10,{CELL6},,,40",  # res 6: counts at res 5 and 6 only
            f"2025-03-09,{CELL6},,,14",  # at or below the threshold: suppressed
            "2025-03-10,not-a-cell,,,50",
            f"2025-03-10,,95.0,{SABHA[1]},50",
            "2025-03-10,,,,50",
            f"2025-13-40,{CELL9},,,50",
            f",{CELL9},,,50",
            f"2025-03-10,{CELL9},,,-3",
            f"2025-03-10,{CELL9},,,many",
            f"2999-01-01,{CELL9},,,50",
            f"2025-03-11,{CELL9},,,50",  # after the run date: deferred
            f"2025-01-01,{CELL9},,,50",  # before the window: earlier
        ],
    )
    counts = tiles.run(spark, settings, RUN, f)
    assert counts == tiles.TileCounts(rows_in=15, accepted=4, deferred=1, earlier=1, quarantined=8, duplicates=1)
    assert counts.balanced()
    reasons = sorted(
        r.reason for r in read_table(spark, settings.lake(tables.QUARANTINE_TILES), QUARANTINE_TILES).collect()
    )
    assert reasons == sorted(
        [
            "invalid_cell",
            "lat_out_of_range",
            "missing_location",
            "unparseable_date",
            "missing_date",
            "negative_count",
            "unparseable_count",
            "future_date",
        ]
    )
    assert read_checks(spark, settings.lake(tables.QA_CHECKS), RUN, "ingest_tiles")["quarantined"] == 8

    result = aggregate.run_tiles(spark, settings, RUN)
    silver = read_table(spark, settings.lake(tables.DENSITY), DENSITY).toPandas()
    got = {(h3.int_to_str(int(r.cell)), r.res, str(r.date)): r.devices for r in silver.itertuples()}
    expected = {(h3.cell_to_parent(CELL9, r), r, "2025-03-10"): 21 for r in settings.resolutions}
    expected |= {(h3.cell_to_parent(CELL6, r), r, "2025-03-10"): 40 for r in (5, 6)}
    assert got == expected
    assert silver.pings.isna().all()  # tiles count devices only
    assert result.published == len(expected) and result.suppressed == 2  # the 14-device tile at res 5 and 6


def test_transform_locates_tags_and_splits_text_rows_without_touching_disk(spark, settings):
    text = spark.createDataFrame(
        [
            ("2025-03-10", f" {CELL9} ", None, None, "12"),  # a cell, padded
            ("2025-03-10", CELL9, None, None, "12"),  # the same tile again: a duplicate
            ("2025-03-10", CELL9, None, None, "5"),  # the same tile with another count: kept
            ("2025-03-09", None, str(SABHA[0]), str(SABHA[1]), "9"),  # a point: located at the finest resolution
            ("2025-03-12", CELL9, None, None, "1"),  # after "today"
            ("2025-03-11", CELL9, None, None, "1"),  # after the run date
            ("2025-02-08", CELL9, None, None, "1"),  # before the window (RUN - 30 days)
            ("2025-03-10", CELL9, None, None, "1.5"),
        ],
        "date string, cell string, lat string, lon string, count string",
    )
    out = tiles.transform(text, settings, RUN, today=dt.date(2025, 3, 11))

    tagged = {(r.raw_date, r.raw_count): (r.status, r.reason) for r in out.tagged.collect()}
    assert tagged[("2025-03-12", "1")] == ("quarantined", "future_date")
    assert tagged[("2025-03-11", "1")] == ("deferred", None)
    assert tagged[("2025-02-08", "1")] == ("earlier", None)
    assert tagged[("2025-03-10", "1.5")] == ("quarantined", "unparseable_count")
    assert out.bronze.columns == BRONZE_TILES.fieldNames()
    assert max(settings.resolutions) == 9  # the point falls in CELL9
    assert sorted((h3.int_to_str(r.cell), r.cell_res, str(r.date), r["count"]) for r in out.bronze.collect()) == [
        (CELL9, 9, "2025-03-09", 9),
        (CELL9, 9, "2025-03-10", 5),
        (CELL9, 9, "2025-03-10", 12),
    ]
    assert out.quarantine.columns == QUARANTINE_TILES.fieldNames()
    assert sorted((r["count"], r.reason, r.run_date) for r in out.quarantine.collect()) == [
        ("1", "future_date", RUN),
        ("1.5", "unparseable_count", RUN),
    ]
    assert not settings.var_dir.exists()


def test_a_file_without_a_location_column_is_refused_clearly(spark, settings):
    f = _write(settings.raw_dir / "bad.csv", ["date,count", "2025-03-10,50"])
    with pytest.raises(ValueError, match="needs columns date, count and cell or lat\\+lon"):
        tiles.run(spark, settings, RUN, f)
    with pytest.raises(FileNotFoundError, match="no tiles file"):
        tiles.run(spark, settings, RUN, settings.raw_dir / "absent.csv")
