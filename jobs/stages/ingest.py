"""Ingest: raw pings → bronze, rejected rows → quarantine with a reason, every row accounted for.

in = accepted + deferred + earlier + quarantined + duplicates, where *deferred* rows are dated after the run
date (they belong to a later run) and *earlier* rows before the processing window (``since``); both stay in
raw. Input files that cannot be read (corrupt, not Parquet, wrong column types) are reported by name in
``quarantine/files`` and the QA figures, and the run goes on with the others.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from jobs.lake import write_checks, write_partitions
from jobs.schemas import BRONZE_PINGS, PINGS, QUARANTINE_FILES, QUARANTINE_PINGS
from jobs.settings import JobSettings

DEDUP_KEY = ["device_id", "ts", "lat", "lon"]


@dataclass(frozen=True)
class IngestCounts:
    rows_in: int
    accepted: int
    deferred: int
    quarantined: int
    duplicates: int
    earlier: int = 0  # dated before the processing window (already processed; stay in raw)
    files_in: int = 0
    rejected_files: tuple[tuple[str, str], ...] = ()  # (file, reason): never read, so their rows are not counted

    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.deferred + self.earlier + self.quarantined + self.duplicates


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


def tag_pings(raw: DataFrame, run_date: dt.date, now: dt.datetime, since: dt.date | None = None) -> DataFrame:
    """Add ``reason`` (why a row is rejected, or null), ``date`` and ``status``
    (due | deferred: after the run date | earlier: before ``since`` | quarantined)."""
    reason = rejection_reason(F.lit(now))
    return (
        raw.withColumn("reason", reason)
        .withColumn("date", F.to_date("ts"))
        .withColumn(
            "status",
            F.when(F.col("reason").isNotNull(), F.lit("quarantined"))
            .when(F.col("date") > F.lit(run_date), F.lit("deferred"))
            .when(F.col("date") < F.lit(since or dt.date.min), F.lit("earlier"))
            .otherwise(F.lit("due")),
        )
    )


def check_files(raw_path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Split the files under ``raw_path`` into readable ping files and rejected ones, with a reason.

    Hidden files and folders (``_…``, ``.…``, as Spark skips them) are ignored. Only Parquet footers are
    read here; a file whose data pages turn out corrupt is caught when Spark reads it (see ``run``).
    """
    readable: list[str] = []
    rejected: list[tuple[str, str]] = []
    files = (
        [p for p in sorted(raw_path.rglob("*")) if p.is_file() and not _hidden(p.relative_to(raw_path))]
        if raw_path.is_dir()
        else [raw_path]
    )
    for path in files:
        reason = _file_problem(path)
        if reason:
            rejected.append((str(path), reason))
        else:
            readable.append(str(path))
    return readable, rejected


def _hidden(rel: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in rel.parts)


_ARROW_KINDS = {
    "device_id": (pa.types.is_string, pa.types.is_large_string),
    "mcc": (pa.types.is_string, pa.types.is_large_string),
    "lat": (pa.types.is_float64,),
    "lon": (pa.types.is_float64,),
    "accuracy_m": (pa.types.is_float64,),
    "ts": (pa.types.is_timestamp,),
}
REQUIRED_COLUMNS = ("device_id", "ts", "lat", "lon")


def _file_problem(path: Path) -> str | None:
    """Why a raw file cannot be read as pings, or None."""
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - whatever pyarrow raises, the file is unreadable
        return f"not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]})"
    schema = parquet.schema_arrow
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        return f"missing columns {missing}; a pings file has {PINGS.fieldNames()}"
    for name, checks in _ARROW_KINDS.items():
        if name in schema.names and not any(check(schema.field(name).type) for check in checks):
            return f"column {name} is {schema.field(name).type}, expected {PINGS[name].dataType.simpleString()}"
    ts = parquet.schema.column(schema.get_field_index("ts"))
    if schema.field("ts").type.unit == "ns" and ts.physical_type != "INT96":
        return "column ts is in nanoseconds, which Spark cannot read; write micro- or milliseconds"
    return None


def read_pings(spark: SparkSession, files: list[str], raw_path: Path) -> DataFrame:
    """The ping files with the declared schema (no inference); hive-style partition folders are allowed."""
    if not files:
        return spark.createDataFrame([], PINGS)
    base = raw_path if raw_path.is_dir() else raw_path.parent
    return spark.read.schema(PINGS).option("basePath", str(base)).parquet(*files).select(*PINGS.fieldNames())


def _failing_file(exc: Exception, files: list[str]) -> str | None:
    """The input file a Spark read failure names, if any."""
    text = str(exc)
    for f in files:
        if f in text or Path(f).resolve().as_uri() in text or Path(f).name in text:
            return f
    return None


def _root_cause(exc: Exception) -> str:
    """The innermost 'Caused by' of a JVM failure (the part that says what was wrong with the file)."""
    causes = [
        line.strip()[len("Caused by: ") :] for line in str(exc).splitlines() if line.strip().startswith("Caused by: ")
    ]
    return (causes[-1] if causes else str(exc).splitlines()[0])[:200]


def run(
    spark: SparkSession,
    settings: JobSettings,
    run_date: dt.date,
    raw_path: Path | None = None,
    since: dt.date | None = None,
) -> IngestCounts:
    """Validate raw pings dated ``since`` .. ``run_date`` into bronze; idempotent for those dates.

    ``since`` defaults to the bronze retention window (run date − retention + 1); rows dated before it
    are counted as ``earlier`` and left in raw. Files that cannot be read are reported and skipped.
    """
    raw_path = raw_path or settings.raw_dir / "pings"
    if not raw_path.exists():
        raise FileNotFoundError(f"no raw pings at {raw_path}; run `routecast demo` or point --raw at a folder")
    since = since or run_date - dt.timedelta(days=settings.bronze_retention_days - 1)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    files, rejected = check_files(raw_path)
    n_files = len(files) + len(rejected)
    while True:
        tagged = tag_pings(read_pings(spark, files, raw_path), run_date, now, since).cache()
        try:
            # One pass over the input for the whole accounting; the bronze count comes from the write itself.
            tally = tagged.groupBy("status", "reason").count().collect()
            break
        except Exception as exc:
            tagged.unpersist()
            culprit = _failing_file(exc, files)
            if culprit is None:
                raise
            files.remove(culprit)  # corrupt data behind a valid footer: report it and read the rest
            rejected.append((culprit, f"corrupt data: {_root_cause(exc)}"))
    by_status: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in tally:
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
    dates = [since + dt.timedelta(days=i) for i in range((run_date - since).days + 1)]
    write_partitions(bronze, settings.lake("bronze", "pings"), ["date"], replace={"date": dates})
    quarantine = (
        tagged.where(F.col("status") == "quarantined")
        .withColumn("run_date", F.lit(run_date))
        .select(*QUARANTINE_PINGS.fieldNames())
    )
    write_partitions(quarantine, settings.lake("quarantine", "pings"), ["run_date"], replace={"run_date": [run_date]})
    tagged.unpersist()
    write_partitions(
        spark.createDataFrame([(f, why, run_date) for f, why in rejected], QUARANTINE_FILES),
        settings.lake("quarantine", "files"),
        ["run_date"],
        replace={"run_date": [run_date]},
    )

    accepted = written.get["rows"] if by_status.get("due") else 0
    counts = IngestCounts(
        rows_in=sum(by_status.values()),
        accepted=accepted,
        deferred=by_status.get("deferred", 0),
        quarantined=by_status.get("quarantined", 0),
        duplicates=by_status.get("due", 0) - accepted,
        earlier=by_status.get("earlier", 0),
        files_in=n_files,
        rejected_files=tuple(rejected),
    )
    figures = {k: v for k, v in asdict(counts).items() if k != "rejected_files"}
    write_checks(
        spark,
        settings.lake("qa", "checks"),
        run_date,
        "ingest",
        {**figures, "files_rejected": len(rejected), **reasons},
    )
    return counts
