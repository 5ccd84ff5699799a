"""Ingest: raw pings → bronze, rejected rows → quarantine with a reason, every row accounted for.

in = accepted + deferred + earlier + quarantined + duplicates, where *deferred* rows are dated after the run
date (they belong to a later run) and *earlier* rows before the processing window (``since``); both stay in
raw. Input files that cannot be read (corrupt, not Parquet, wrong column types) are reported by name in
``quarantine/files`` and the QA figures, and the run goes on with the others.

:func:`transform` is the validation itself (no reading, writing or Spark action); :func:`run` reads the raw
files, tallies the rows while setting aside the files Spark cannot read
(:func:`tally_quarantining_unreadable_files`), writes bronze and the quarantines and records the QA figures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from py4j.protocol import Py4JError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Observation, Row, SparkSession
from pyspark.sql import functions as F

from contracts import tables
from jobs import lake
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


@dataclass(frozen=True, eq=False)
class IngestOutputs:
    """What ingest makes of the pings read, before anything is written."""

    tagged: DataFrame  # every row read, with reason, date and status (due | deferred | earlier | quarantined)
    bronze: DataFrame  # the due rows, duplicates dropped: the BRONZE_PINGS columns
    quarantine: DataFrame  # the rows that break a rule, with the first rule and the run date: QUARANTINE_PINGS


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


def transform(
    pings: DataFrame, settings: JobSettings, run_date: dt.date, now: dt.datetime, since: dt.date | None = None
) -> IngestOutputs:
    """Validate ``pings`` (the PINGS columns) for the window ``settings.window(run_date, since)``: each row tagged,
    the due ones deduplicated on ``DEDUP_KEY`` for bronze, the rejected ones with their reason for quarantine.

    ``now`` (naive UTC) is the clock a ``future_ts`` is judged by. Reads, writes and counts nothing.
    """
    first, _ = settings.window(run_date, since)
    tagged = tag_pings(pings, run_date, now, first)
    bronze = tagged.where(F.col("status") == "due").dropDuplicates(DEDUP_KEY).select(*BRONZE_PINGS.fieldNames())
    quarantine = (
        tagged.where(F.col("status") == "quarantined")
        .withColumn("run_date", F.lit(run_date))
        .select(*QUARANTINE_PINGS.fieldNames())
    )
    return IngestOutputs(tagged, bronze, quarantine)


def check_files(raw_path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Split the files under ``raw_path`` into readable ping files and rejected ones, with a reason.

    Hidden files and folders (``_…``, ``.…``, as Spark skips them) are ignored. Only Parquet footers are
    read here; a file whose data Spark cannot decode is caught when Spark reads it
    (:func:`tally_quarantining_unreadable_files`).
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


def tally_quarantining_unreadable_files(
    outputs_of: Callable[[list[str]], IngestOutputs], files: list[str]
) -> tuple[IngestOutputs, list[Row], list[tuple[str, str]]]:
    """Tally the rows of ``files`` by (status, reason), setting aside every file Spark cannot read.

    ``outputs_of`` makes the outputs of a list of files (reading and :func:`transform`). The tally is the one pass
    over the input the accounting needs, so it is where a file whose footer :func:`check_files` accepted but whose
    data Spark cannot decode (corrupt pages, a codec Spark lacks) fails the Spark job. :func:`unreadable_file` names
    that file from Spark's error; it is set aside with its reason and the rows are tallied again without it (one
    more pass per such file). A failure that names no input file is raised: no file is dropped unreported.

    Returns the outputs of the files read, with ``tagged`` cached (the caller unpersists it), the tally rows
    (``status``, ``reason``, ``count``) and the files set aside as (file, reason).
    """
    readable = list(files)
    unreadable: list[tuple[str, str]] = []
    while True:
        outputs = outputs_of(readable)
        outputs.tagged.cache()
        try:
            return outputs, outputs.tagged.groupBy("status", "reason").count().collect(), unreadable
        except Exception as exc:
            outputs.tagged.unpersist()
            failed = unreadable_file(exc, readable)
            if failed is None:
                raise
            readable.remove(failed[0])
            unreadable.append(failed)


# Spark's error condition for an input file a task could not read; its parameter ``path`` is the file's URI.
FAILED_READ_FILE = "FAILED_READ_FILE"


def unreadable_file(exc: Exception, files: list[str]) -> tuple[str, str] | None:
    """(file, reason) when ``exc`` is Spark failing to read one of ``files``, else None.

    Spark reports a file a task could not read with the error condition ``FAILED_READ_FILE`` and the file's URI
    as the parameter ``path``. The reason is ``corrupt data:`` and the innermost cause, which says what was
    wrong with the file (a page header that does not parse, a codec Spark lacks). The error's structure is read
    (condition, parameters, cause chain), not its text.
    """
    failure = _read_failure(exc)
    if failure is None:
        return None
    uri, cause = failure
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    failed = Path(unquote(parsed.path)).resolve()
    for f in files:
        if Path(f).resolve() == failed:
            return f, f"corrupt data: {cause[:200]}"
    return None


def _read_failure(exc: Exception) -> tuple[str, str] | None:
    """(path, innermost cause) of a ``FAILED_READ_FILE`` error in ``exc`` or its causes, else None."""
    java = getattr(exc, "java_exception", None)  # py4j's Py4JJavaError: the JVM's throwable
    if java is None:  # an exception pyspark converted itself: it carries the condition, not the JVM causes
        condition = exc.getCondition() if isinstance(exc, PySparkException) else None
        params = (exc.getMessageParameters() or {}) if condition else {}
        if condition and condition.startswith(FAILED_READ_FILE) and "path" in params:
            return params["path"], str(exc).strip().split("\n")[0]
        return None
    chain = []
    while java is not None:
        chain.append(java)
        java = java.getCause()
    for throwable in chain:
        try:
            condition, params = throwable.getCondition(), throwable.getMessageParameters()
        except Py4JError:  # not a SparkThrowable
            continue
        if condition and condition.startswith(FAILED_READ_FILE) and "path" in params:
            return params["path"], chain[-1].toString()
    return None


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
    first, last = settings.window(run_date, since)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    files, rejected = check_files(raw_path)
    n_files = len(files) + len(rejected)
    outputs, tally, unreadable = tally_quarantining_unreadable_files(
        lambda readable: transform(read_pings(spark, readable, raw_path), settings, run_date, now, first), files
    )
    rejected += unreadable
    by_status: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in tally:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        if row["reason"] is not None:
            reasons[f"quarantined_{row['reason']}"] = row["count"]

    written = Observation("bronze")  # the bronze count comes from the write itself
    bronze = outputs.bronze.observe(written, F.count(F.lit(1)).alias("rows"))
    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    lake.write(settings, tables.BRONZE_PINGS, bronze, replace={"date": dates})
    lake.write(settings, tables.QUARANTINE_PINGS, outputs.quarantine, replace={"run_date": [run_date]})
    outputs.tagged.unpersist()
    files_out = spark.createDataFrame([(f, why, run_date) for f, why in rejected], QUARANTINE_FILES)
    lake.write(settings, tables.QUARANTINE_FILES, files_out, replace={"run_date": [run_date]})

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
    lake.write_checks(
        spark,
        settings.lake(tables.QA_CHECKS),
        run_date,
        "ingest",
        {**figures, "files_rejected": len(rejected), **reasons},
    )
    return counts
