import datetime as dt

from pyspark.sql import functions as F

from jobs import ingest
from jobs.lake import read_checks, read_table
from jobs.schemas import BRONZE_PINGS, PINGS, QUARANTINE_PINGS

RUN = dt.date(2025, 3, 10)
T = dt.datetime(2025, 3, 10, 12, 0)


def _write_raw(spark, settings, rows):
    path = settings.raw_dir / "pings"
    spark.createDataFrame(rows, PINGS).write.mode("overwrite").parquet(str(path))
    return path


def test_every_row_is_accounted_for(spark, settings):
    rows = [
        ("a", T, 35.0, 12.0, 10.0, "605"),  # valid
        ("a", T, 35.0, 12.0, 10.0, "605"),  # exact duplicate
        ("b", T, 95.0, 12.0, None, None),  # lat out of range
        ("c", None, 35.0, 12.0, None, None),  # no timestamp
        (None, T, 35.0, 12.0, None, None),  # no device
        ("d", T, 35.0, 190.0, None, None),  # lon out of range
        ("e", dt.datetime(2999, 1, 1), 35.0, 12.0, None, None),  # in the future
        ("f", T + dt.timedelta(days=1), 35.0, 12.0, None, None),  # after the run date: deferred
        ("g", T - dt.timedelta(days=2), 35.1, 12.1, 5.0, None),  # valid, earlier day
    ]
    raw = _write_raw(spark, settings, rows)
    counts = ingest.run(spark, settings, RUN, raw)

    assert counts == ingest.IngestCounts(rows_in=9, accepted=2, deferred=1, quarantined=5, duplicates=1)
    assert counts.balanced()

    bronze = read_table(spark, settings.lake("bronze", "pings"), BRONZE_PINGS)
    assert sorted((r.device_id, str(r.date)) for r in bronze.collect()) == [("a", "2025-03-10"), ("g", "2025-03-08")]

    quarantine = read_table(spark, settings.lake("quarantine", "pings"), QUARANTINE_PINGS)
    reasons = {(r.device_id, r.reason) for r in quarantine.collect()}
    assert reasons == {
        ("b", "lat_out_of_range"),
        ("c", "missing_ts"),
        (None, "missing_device_id"),
        ("d", "lon_out_of_range"),
        ("e", "future_ts"),
    }

    checks = read_checks(spark, settings.lake("qa", "checks"), RUN, "ingest")
    assert checks["rows_in"] == 9 and checks["quarantined_future_ts"] == 1


def test_rerun_replaces_the_same_partitions(spark, settings):
    raw = _write_raw(spark, settings, [("a", T, 35.0, 12.0, None, None), ("b", T, 35.0, 12.0, None, None)])
    ingest.run(spark, settings, RUN, raw)
    ingest.run(spark, settings, RUN, raw)
    bronze = read_table(spark, settings.lake("bronze", "pings"), BRONZE_PINGS)
    assert bronze.where(F.col("date") == RUN).count() == 2


def test_missing_raw_folder_is_a_clear_error(spark, settings):
    import pytest

    with pytest.raises(FileNotFoundError, match="no raw pings"):
        ingest.run(spark, settings, RUN, settings.raw_dir / "absent")
