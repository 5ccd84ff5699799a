"""Ingest: raw pings → bronze, rejected rows → quarantine with a reason, every row accounted for.

in = accepted + deferred + quarantined + duplicates, where *deferred* rows are dated after the run date
(they belong to a later run and stay in raw).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from jobs.lake import read_table, write_checks, write_partitions
from jobs.schemas import BRONZE_PINGS, PINGS, QUARANTINE_PINGS
from jobs.settings import JobSettings

DEDUP_KEY = ["device_id", "ts", "lat", "lon"]


@dataclass(frozen=True)
class IngestCounts:
    rows_in: int
    accepted: int
    deferred: int
    quarantined: int
    duplicates: int

    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.deferred + self.quarantined + self.duplicates


def rejection_reason(now: Column) -> Column:
    """The first rule a ping breaks, or null when it is valid. Order matters: the first match is recorded."""
    return (
        F.when(F.col("device_id").isNull() | (F.trim(F.col("device_id")) == ""), F.lit("missing_device_id"))
        .when(F.col("ts").isNull(), F.lit("missing_ts"))
        .when(F.col("lat").isNull() | F.isnan("lat"), F.lit("missing_lat"))
        .when(F.col("lon").isNull() | F.isnan("lon"), F.lit("missing_lon"))
        .when((F.col("lat") < -90) | (F.col("lat") > 90), F.lit("lat_out_of_range"))
        .when((F.col("lon") < -180) | (F.col("lon") > 180), F.lit("lon_out_of_range"))
        .when(F.col("accuracy_m") < 0, F.lit("negative_accuracy"))
        .when(F.col("ts") > now, F.lit("future_ts"))
    )


def tag_pings(raw: DataFrame, run_date: dt.date, now: dt.datetime) -> DataFrame:
    """Add ``reason`` (why a row is rejected, or null), ``date`` and ``status`` (due|deferred|quarantined)."""
    reason = rejection_reason(F.lit(now))
    return (
        raw.withColumn("reason", reason)
        .withColumn("date", F.to_date("ts"))
        .withColumn(
            "status",
            F.when(F.col("reason").isNotNull(), F.lit("quarantined"))
            .when(F.col("date") > F.lit(run_date), F.lit("deferred"))
            .otherwise(F.lit("due")),
        )
    )


def run(spark: SparkSession, settings: JobSettings, run_date: dt.date, raw_path: Path | None = None) -> IngestCounts:
    """Validate raw pings up to ``run_date`` into bronze; idempotent for the run date."""
    raw_path = raw_path or settings.raw_dir / "pings"
    if not raw_path.exists():
        raise FileNotFoundError(f"no raw pings at {raw_path}; run `routecast demo` or point --raw at a folder")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    tagged = tag_pings(read_table(spark, raw_path, PINGS), run_date, now).cache()
    # One pass over the input for the whole accounting; the bronze count comes from the write itself.
    by_status: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in tagged.groupBy("status", "reason").count().collect():
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        if row["reason"] is not None:
            reasons[f"quarantined_{row['reason']}"] = row["count"]

    written = Observation("bronze")
    bronze = (
        tagged.where(F.col("status") == "due")
        .dropDuplicates(DEDUP_KEY)
        .select(*BRONZE_PINGS.fieldNames())
        .observe(written, F.count(F.lit(1)).alias("rows"))
    )
    write_partitions(bronze, settings.lake("bronze", "pings"), ["date"])
    quarantine = (
        tagged.where(F.col("status") == "quarantined")
        .withColumn("run_date", F.lit(run_date))
        .select(*QUARANTINE_PINGS.fieldNames())
    )
    write_partitions(quarantine, settings.lake("quarantine", "pings"), ["run_date"])
    tagged.unpersist()

    accepted = written.get["rows"] if by_status.get("due") else 0
    counts = IngestCounts(
        rows_in=sum(by_status.values()),
        accepted=accepted,
        deferred=by_status.get("deferred", 0),
        quarantined=by_status.get("quarantined", 0),
        duplicates=by_status.get("due", 0) - accepted,
    )
    write_checks(spark, settings.lake("qa", "checks"), run_date, "ingest", {**asdict(counts), **reasons})
    return counts
