import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from contracts import tables
from jobs.lake import read_checks, read_table
from jobs.schemas import BRONZE_PINGS, PINGS, QUARANTINE_FILES, QUARANTINE_PINGS, arrow_schema
from jobs.stages import ingest

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

    assert counts == ingest.IngestCounts(
        rows_in=9, accepted=2, deferred=1, quarantined=5, duplicates=1, earlier=0, files_in=counts.files_in
    )
    assert counts.balanced()

    bronze = read_table(spark, settings.lake(tables.BRONZE_PINGS), BRONZE_PINGS)
    assert sorted((r.device_id, str(r.date)) for r in bronze.collect()) == [("a", "2025-03-10"), ("g", "2025-03-08")]

    quarantine = read_table(spark, settings.lake(tables.QUARANTINE_PINGS), QUARANTINE_PINGS)
    reasons = {(r.device_id, r.reason) for r in quarantine.collect()}
    assert reasons == {
        ("b", "lat_out_of_range"),
        ("c", "missing_ts"),
        (None, "missing_device_id"),
        ("d", "lon_out_of_range"),
        ("e", "future_ts"),
    }

    checks = read_checks(spark, settings.lake(tables.QA_CHECKS), RUN, "ingest")
    assert checks["rows_in"] == 9 and checks["quarantined_future_ts"] == 1


def test_transform_tags_splits_and_deduplicates_without_touching_disk(spark, settings):
    rows = [
        ("a", T, 35.0, 12.0, 10.0, "605"),  # valid
        ("a", T, 35.0, 12.0, 99.0, None),  # same device, time and place: a duplicate
        ("b", T, 35.0, 12.0, -1.0, None),  # negative accuracy
        ("c", T, float("nan"), 12.0, None, None),  # NaN latitude
        (" ", T, 35.0, 12.0, None, None),  # blank device id
        ("d", T + dt.timedelta(hours=1), 35.0, 12.0, None, None),  # after "now"
        ("e", T - dt.timedelta(days=30), 35.0, 12.0, None, None),  # the day before the 30-day window
        ("f", T - dt.timedelta(days=29), 35.0, 12.0, None, None),  # its first day
        ("g", T + dt.timedelta(days=1), 35.0, 12.0, None, None),  # after the run date
    ]
    now = T + dt.timedelta(minutes=30)
    out = ingest.transform(spark.createDataFrame(rows, PINGS), settings, RUN, now)

    assert {r.device_id: (r.status, r.reason) for r in out.tagged.collect()} == {
        "a": ("due", None),
        "b": ("quarantined", "negative_accuracy"),
        "c": ("quarantined", "missing_lat"),
        " ": ("quarantined", "missing_device_id"),
        "d": ("quarantined", "future_ts"),
        "e": ("earlier", None),
        "f": ("due", None),
        "g": ("quarantined", "future_ts"),
    }
    assert out.bronze.columns == BRONZE_PINGS.fieldNames()
    assert sorted((r.device_id, r.date) for r in out.bronze.collect()) == [("a", RUN), ("f", dt.date(2025, 2, 9))]
    assert out.quarantine.columns == QUARANTINE_PINGS.fieldNames()
    assert {r.run_date for r in out.quarantine.collect()} == {RUN} and out.quarantine.count() == 5
    assert not settings.var_dir.exists()

    later = ingest.transform(spark.createDataFrame(rows, PINGS), settings, RUN, T + dt.timedelta(days=2), since=RUN)
    statuses = {r.device_id: r.status for r in later.tagged.collect()}
    assert (statuses["d"], statuses["f"], statuses["g"]) == ("due", "earlier", "deferred")


def test_rerun_replaces_the_same_partitions(spark, settings):
    raw = _write_raw(spark, settings, [("a", T, 35.0, 12.0, None, None), ("b", T, 35.0, 12.0, None, None)])
    ingest.run(spark, settings, RUN, raw)
    ingest.run(spark, settings, RUN, raw)
    bronze = read_table(spark, settings.lake(tables.BRONZE_PINGS), BRONZE_PINGS)
    assert bronze.where(F.col("date") == RUN).count() == 2


def test_missing_raw_folder_is_a_clear_error(spark, settings):
    import pytest

    with pytest.raises(FileNotFoundError, match="no raw pings"):
        ingest.run(spark, settings, RUN, settings.raw_dir / "absent")


def _arrow_pings(n: int, day: dt.date = RUN) -> pa.Table:
    rng = np.random.default_rng(0)
    start = np.datetime64(dt.datetime.combine(day, dt.time(0)), "us")
    return pa.table(
        {
            "device_id": [f"d{i % 50}" for i in range(n)],
            "ts": pa.array(start + rng.integers(0, 86_400 * 10**6, n).astype("timedelta64[us]")).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "lat": rng.uniform(30, 35, n),
            "lon": rng.uniform(10, 12, n),
            "accuracy_m": rng.uniform(1, 10, n),
            "mcc": ["605"] * n,
        },
        schema=arrow_schema(PINGS),
    )


def test_unreadable_files_are_reported_by_name_and_the_rest_is_ingested(spark, settings):
    raw = settings.raw_dir / "pings"
    raw.mkdir(parents=True)
    good = _arrow_pings(20_000)
    pq.write_table(good, raw / "good.parquet")
    (raw / "junk.parquet").write_bytes(b"not parquet at all")
    (raw / "notes.txt").write_text("a stray file")
    pq.write_table(good.set_column(2, "lat", good["lat"].cast(pa.string())), raw / "lat_as_text.parquet")
    pq.write_table(good.drop_columns(["lon"]), raw / "no_lon.parquet")
    nanos = good.set_column(1, "ts", good["ts"].cast(pa.timestamp("ns", tz="UTC")))
    pq.write_table(nanos, raw / "nanos.parquet", coerce_timestamps=None, version="2.6")
    # A valid footer over garbage data pages: only found when Spark reads the pages.
    pq.write_table(good, raw / "pages.parquet")
    damaged = bytearray((raw / "pages.parquet").read_bytes())
    damaged[200:40_000] = b"\xab" * (40_000 - 200)
    (raw / "pages.parquet").write_bytes(bytes(damaged))
    (raw / "_SUCCESS").write_text("")  # hidden: ignored like Spark does

    counts = ingest.run(spark, settings, RUN, raw)

    assert counts.rows_in == counts.accepted == 20_000 and counts.balanced()
    reasons = {Path(f).name: why for f, why in counts.rejected_files}
    assert set(reasons) == {
        "junk.parquet",
        "notes.txt",
        "lat_as_text.parquet",
        "no_lon.parquet",
        "nanos.parquet",
        "pages.parquet",
    }
    assert "not a readable Parquet file" in reasons["junk.parquet"]
    assert reasons["lat_as_text.parquet"] == "column lat is string, expected double"
    assert "missing columns ['lon']" in reasons["no_lon.parquet"]
    assert "nanoseconds" in reasons["nanos.parquet"]
    assert reasons["pages.parquet"].startswith("corrupt data")
    assert counts.files_in == 7

    table = read_table(spark, settings.lake(tables.QUARANTINE_FILES), QUARANTINE_FILES).collect()
    assert {Path(r.file).name for r in table} == set(reasons) and {r.run_date for r in table} == {RUN}
    checks = read_checks(spark, settings.lake(tables.QA_CHECKS), RUN, "ingest")
    assert checks["files_rejected"] == 6 and checks["files_in"] == 7


def test_rows_before_the_window_stay_in_raw_and_are_counted(spark, settings):
    rows = [("a", T, 35.0, 12.0, None, None), ("b", T - dt.timedelta(days=40), 35.0, 12.0, None, None)]
    counts = ingest.run(spark, settings, RUN, _write_raw(spark, settings, rows))
    assert (counts.accepted, counts.earlier) == (1, 1) and counts.balanced()  # default window: 30 days
    counts = ingest.run(spark, settings, RUN, settings.raw_dir / "pings", since=RUN - dt.timedelta(days=60))
    assert (counts.accepted, counts.earlier) == (2, 0)


@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "", None]),
            st.one_of(st.none(), st.integers(-45, 3).map(lambda d: T + dt.timedelta(days=d))),
            st.one_of(st.none(), st.sampled_from([35.0, 35.0, -91.0, 91.0, float("nan")])),
            st.sampled_from([12.0, 12.0, 181.0, -200.0]),
            st.sampled_from([None, 5.0, -1.0]),
        ),
        max_size=30,
    )
)
def test_row_accounting_always_balances(spark, tmp_path_factory, rows):
    from jobs.settings import JobSettings

    settings = JobSettings(var_dir=tmp_path_factory.mktemp("var"))
    raw = _write_raw(spark, settings, [(*r, None) for r in rows])
    counts = ingest.run(spark, settings, RUN, raw)
    assert counts.rows_in == len(rows)
    assert counts.balanced()
    bronze = read_table(spark, settings.lake(tables.BRONZE_PINGS), BRONZE_PINGS).count()
    quarantined = read_table(spark, settings.lake(tables.QUARANTINE_PINGS), QUARANTINE_PINGS).count()
    assert (bronze, quarantined) == (counts.accepted, counts.quarantined)
