"""Retention (jobs/stages/retention.py): every device-level table routecast owns goes after the retention period —
bronze, quarantined pings, the raw pings under var/raw, the simulator's journeys, stale Spark scratch — and raw input
given with --raw outside var/raw is the operator's and is never touched."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F
from rich.console import Console

from contracts import tables
from jobs.lake import read_table, write_partitions
from jobs.orchestration.pipeline import nightly
from jobs.orchestration.runs import Ledger
from jobs.schemas import BRONZE_PINGS, PINGS, QUARANTINE_PINGS, TRUTH_JOURNEYS, arrow_schema
from jobs.settings import JobSettings
from jobs.stages import ingest, retention

RUN = dt.date(2025, 6, 10)
CUTOFF = dt.date(2025, 6, 8)  # RUN with 3 days of retention keeps 8, 9 and 10 June
DAYS = [dt.date(2025, 6, d) for d in range(5, 11)]  # 5 .. 10 June: three days before the cut-off, three after


def _settings(tmp_path: Path, **kw) -> JobSettings:
    return JobSettings(var_dir=tmp_path / "var", bronze_retention_days=3, **kw)


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


def _pings(day: dt.date, devices: str = "ab") -> pd.DataFrame:
    """Two pings a day (one per device), both valid."""
    return pd.DataFrame(
        {
            "device_id": [f"{d}-{day:%d}" for d in devices],
            "ts": [pd.Timestamp(_at(day, 9 + i)) for i in range(len(devices))],
            "lat": 35.0,
            "lon": 12.0,
            "accuracy_m": 10.0,
            "mcc": "605",
        }
    )


def _write_day_files(folder: Path, days: list[dt.date]) -> None:
    """The provider layout: one pyarrow-written file per day (with Parquet statistics)."""
    folder.mkdir(parents=True, exist_ok=True)
    for day in days:
        table = pa.Table.from_pandas(_pings(day), schema=arrow_schema(PINGS), preserve_index=False)
        pq.write_table(table, folder / f"pings-{day:%Y%m%d}.parquet")


def _set_mtime(path: Path, day: dt.date) -> None:
    stamp = dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp()
    os.utime(path, (stamp, stamp))


def _bronze(spark, settings: JobSettings) -> list[tuple]:
    rows = read_table(spark, settings.lake(tables.BRONZE_PINGS), BRONZE_PINGS).orderBy("device_id", "ts").collect()
    return [tuple(r) for r in rows]


def test_the_cutoff_is_the_first_day_of_the_default_window(tmp_path):
    settings = _settings(tmp_path)
    assert retention.cutoff_date(settings, RUN) == settings.window(RUN)[0] == CUTOFF


def test_what_happens_to_a_file_follows_from_the_dates_of_its_rows_alone():
    before, on, after = _at(dt.date(2025, 6, 7), 23), _at(CUTOFF, 0), _at(dt.date(2025, 6, 9), 1)
    fate = retention.file_fate
    assert fate((before, before), dt.date(2025, 6, 10), CUTOFF) == "delete"  # every row before: its mtime is moot
    assert fate((before, on), dt.date(2025, 6, 1), CUTOFF) == "rewrite"
    assert fate((on, after), dt.date(2025, 6, 1), CUTOFF) == "keep"
    assert fate(None, dt.date(2025, 6, 7), CUTOFF) == "delete"  # no dated row: its modification day decides
    assert fate(None, CUTOFF, CUTOFF) == "keep"


def test_scratch_folders_are_stale_when_nothing_in_them_was_written_since():
    idle = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    stamps = {"b-old": idle.timestamp() - 1, "a-old": 0.0, "live": idle.timestamp() + 60, "edge": idle.timestamp()}
    assert retention.stale_folders(stamps, idle) == ("a-old", "b-old")


def test_raw_pings_under_var_raw_lose_their_rows_before_the_cutoff_and_ingest_reads_the_rest_alike(spark, tmp_path):
    settings = _settings(tmp_path)
    raw = settings.raw_dir / "pings"
    _write_day_files(raw, DAYS)
    # The simulator's layout: Spark-written files (INT96 timestamps, no statistics) that span several days.
    spanning = [("s", _at(day, 15), 35.0, 12.0, None, "605") for day in DAYS[1:5]]  # 6 .. 9 June
    spark.createDataFrame(spanning, PINGS).coalesce(1).write.parquet(str(raw / "sim"))
    [part] = sorted((raw / "sim").glob("part-*.parquet"))
    assert (raw / "sim" / f".{part.name}.crc").exists()
    # Undated files go by their modification time: an unreadable one from before the cut-off, and one after it.
    (raw / "old-truncated.parquet").write_bytes(b"PAR1 cut short")
    _set_mtime(raw / "old-truncated.parquet", dt.date(2025, 6, 1))
    (raw / "new-truncated.parquet").write_bytes(b"PAR1 cut short")

    first = ingest.run(spark, settings, RUN)
    bronze_before = _bronze(spark, settings)
    assert first.earlier == 3 * 2 + 2  # 5, 6, 7 June from the day files, 6 and 7 June from the Spark file

    report = retention.run(settings, RUN)
    assert report.cutoff == CUTOFF
    [purged] = report.raw
    assert purged.path == raw
    assert list(purged.deleted) == ["old-truncated.parquet"] + [f"pings-202506{d:02d}.parquet" for d in (5, 6, 7)]
    assert list(purged.rewritten) == [f"sim/{part.name}"]
    assert purged.rows_deleted == 3 * 2 + 2
    assert sorted(p.name for p in raw.glob("*.parquet")) == ["new-truncated.parquet"] + [
        f"pings-202506{d:02d}.parquet" for d in (8, 9, 10)
    ]
    kept = pq.read_table(part).to_pandas()
    assert sorted(kept["ts"].dt.date) == [dt.date(2025, 6, 8), dt.date(2025, 6, 9)]
    assert pq.ParquetFile(part).schema.column(1).physical_type == "INT96"  # read by Spark exactly as before
    assert not (raw / "sim" / f".{part.name}.crc").exists()  # a stale checksum would fail Spark's read

    # Ingest of the same window reads the rewritten files: the same bronze, nothing earlier left.
    second = ingest.run(spark, settings, RUN)
    assert second.earlier == 0 and second.accepted == first.accepted
    assert _bronze(spark, settings) == bronze_before

    # A second pass has nothing left to do and touches nothing.
    stamp = part.stat().st_mtime_ns
    again = retention.run(settings, RUN)
    assert again.raw[0].deleted == () and again.raw[0].rewritten == () and part.stat().st_mtime_ns == stamp


def test_raw_given_outside_var_raw_is_the_operators_and_is_never_touched(tmp_path):
    settings = _settings(tmp_path)
    provider = tmp_path / "provider"
    _write_day_files(provider, DAYS)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in provider.iterdir()}

    report = retention.run(settings, RUN, raw_path=provider)

    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in provider.iterdir()} == before
    assert report.operator_raw == provider and report.raw == ()
    assert f"raw input {provider} is the operator's: not deleted by routecast" in report.describe()


def test_a_raw_folder_given_inside_var_raw_is_routecasts(tmp_path):
    settings = _settings(tmp_path)
    dropped = settings.raw_dir / "drop"
    _write_day_files(dropped, DAYS)

    report = retention.run(settings, RUN, raw_path=dropped)

    assert report.operator_raw is None
    assert [p.path for p in report.raw] == [dropped]  # var/raw/pings does not exist: nothing to report there
    assert sorted(p.name for p in dropped.iterdir()) == [f"pings-202506{d:02d}.parquet" for d in (8, 9, 10)]


def test_bronze_quarantine_simulated_journeys_and_stale_spark_scratch_go_on_the_same_clock(spark, tmp_path):
    settings = _settings(tmp_path)
    pings = [("a", _at(day, 9), 35.0, 12.0, None, "605", day) for day in DAYS]
    write_partitions(spark.createDataFrame(pings, BRONZE_PINGS), settings.lake(tables.BRONZE_PINGS), ["date"])
    bad = [("a", _at(day, 9), 95.0, 12.0, None, "605", "lat_out_of_range", day) for day in DAYS]
    write_partitions(spark.createDataFrame(bad, QUARANTINE_PINGS), settings.lake(tables.QUARANTINE_PINGS), ["run_date"])
    # Journeys of simulated people: one that ended before the cut-off, one that ended on it, one still going.
    journeys = [
        (1, 0, "channel", "a>b", _at(DAYS[0], 8), _at(DAYS[2], 20), "completed"),
        (2, 0, "channel", "a>b", _at(DAYS[1], 8), _at(CUTOFF, 0), "completed"),
        (3, 0, "channel", "a>b", _at(DAYS[2], 8), _at(DAYS[5], 23), "in_transit"),
    ]
    truth = settings.var_dir / "truth" / "journeys"
    spark.createDataFrame(journeys, TRUTH_JOURNEYS).coalesce(1).write.parquet(str(truth))
    # Spark scratch: a folder a killed session left weeks ago, and a live session's.
    scratch = settings.var_dir / "spark-tmp"
    (scratch / "blockmgr-killed" / "0e").mkdir(parents=True)
    (scratch / "blockmgr-killed" / "0e" / "shuffle_0_0_0.data").write_bytes(b"device rows")
    for p in (scratch / "blockmgr-killed" / "0e" / "shuffle_0_0_0.data", scratch / "blockmgr-killed" / "0e"):
        _set_mtime(p, dt.date(2025, 5, 1))
    _set_mtime(scratch / "blockmgr-killed", dt.date(2025, 5, 1))
    (scratch / "blockmgr-live").mkdir()

    report = retention.run(settings, RUN)

    assert report.bronze_days == ("date=2025-06-05", "date=2025-06-06", "date=2025-06-07")
    assert report.quarantine_days == ("run_date=2025-06-05", "run_date=2025-06-06", "run_date=2025-06-07")
    left = read_table(spark, settings.lake(tables.BRONZE_PINGS), BRONZE_PINGS).select(F.min("date")).first()[0]
    assert left == CUTOFF
    assert report.truth_journeys is not None and report.truth_journeys.rows_deleted == 1
    kept = spark.read.schema(TRUTH_JOURNEYS).parquet(str(truth)).orderBy("agent_id").collect()
    assert [r["agent_id"] for r in kept] == [2, 3]
    assert report.scratch == ("blockmgr-killed",)
    assert sorted(p.name for p in scratch.iterdir()) == ["blockmgr-live"]
    line = report.describe()
    assert line.startswith(f"deleted before {CUTOFF}: 3 bronze days; 3 quarantine days")
    assert "simulated journeys: 0 files deleted, 1 rewritten, 1 rows" in line and "1 stale Spark scratch" in line


def test_the_nightly_stage_records_the_deletions_and_a_rerun_does_not_ingest_again(spark, tmp_path):
    settings = _settings(tmp_path)
    raw = settings.raw_dir / "pings"
    _write_day_files(raw, DAYS)
    quiet = Console(quiet=True)

    first = nightly(spark, settings, RUN, raw_path=raw, console=quiet, only={"ingest", "retention"})

    assert first.ingest.earlier == 3 * 2
    assert first.retention.raw[0].deleted == tuple(f"pings-202506{d:02d}.parquet" for d in (5, 6, 7))
    [row] = [r for r in Ledger(settings.runs_dir).rows(run_date=RUN) if r.stage == "retention"]
    assert row.status == "done" and row.detail == first.retention.describe()
    assert f"raw {raw}: 3 files deleted, 0 rewritten, 6 rows" in row.detail
    # What retention deleted was before the window: ingest's input did not change, so it is not redone.
    second = nightly(spark, settings, RUN, raw_path=raw, console=quiet, only={"ingest"})
    assert "ingest" in second.skipped and second.ingest is None
