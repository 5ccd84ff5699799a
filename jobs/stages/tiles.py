"""Provider density tiles: the alternative input for providers that aggregate phones themselves (docs/design.md).

A tiles file (CSV with a header, or Parquet) has ``date``, ``count`` (distinct devices) and a location:
``cell`` (an H3 cell id as hex text, at any resolution) or ``lat``/``lon``. Every value is read as text and
cast explicitly (no inference); a row that breaks a rule goes to ``quarantine/tiles`` with its reason, and
in = accepted + deferred + earlier + quarantined + duplicates, as for pings.

Aggregation (``jobs.stages.aggregate.run_tiles``) sums the counts of the tiles inside each H3 cell at every
configured resolution that is not finer than the tile (a res-6 tile says nothing about res-7 cells), then
suppresses and adds the baseline like pings. Summing the distinct-device counts of several tiles
over-counts a device seen in two of them; tiles carry no device ids, so it cannot be undone — prefer tiles
at the finest resolution the provider offers.

:func:`transform` is the validation itself (no reading, writing or Spark action); :func:`run` reads the file,
calls it, writes bronze and the quarantine and records the row accounting as QA figures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import h3
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from contracts import tables
from jobs import lake
from jobs.schemas import BRONZE_TILES, QUARANTINE_TILES, TILES
from jobs.settings import JobSettings
from jobs.stages.aggregate import h3_cell

TEXT_COLUMNS = TILES.fieldNames()


@dataclass(frozen=True)
class TileCounts:
    rows_in: int
    accepted: int
    deferred: int
    earlier: int
    quarantined: int
    duplicates: int

    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.deferred + self.earlier + self.quarantined + self.duplicates


@dataclass(frozen=True, eq=False)
class TileOutputs:
    """What ingest makes of a tiles file's rows, before anything is written."""

    tagged: DataFrame  # every row read: typed, located, with reason and status (due | deferred | earlier | quarantined)
    bronze: DataFrame  # the due tiles, duplicates dropped: the BRONZE_TILES columns
    quarantine: DataFrame  # the rows that break a rule, as text, with the first rule and the run date


def read_tiles_text(spark: SparkSession, path: Path) -> DataFrame:
    """The tiles file with every declared column as text (absent columns null)."""
    if not path.exists():
        raise FileNotFoundError(f"no tiles file at {path}")
    if path.suffix.lower() == ".parquet" or path.is_dir():
        raw = spark.read.parquet(str(path))
    else:
        raw = spark.read.option("header", True).option("inferSchema", False).csv(str(path))
    present = {c.lower(): c for c in raw.columns}
    if (
        "date" not in present
        or "count" not in present
        or not ({"cell"} <= present.keys() or {"lat", "lon"} <= present.keys())
    ):
        raise ValueError(
            f"{path.name}: a tiles file needs columns date, count and cell or lat+lon; it has {raw.columns}"
        )
    return raw.select(
        *[
            (F.col(present[c]).cast("string") if c in present else F.lit(None).cast("string")).alias(c)
            for c in TEXT_COLUMNS
        ]
    )


def _parse_cell(text: Column) -> Column:
    """H3 hex text → int64, or null when it is not a valid cell."""

    @pandas_udf("long")
    def _parse(values: pd.Series) -> pd.Series:
        def one(v: str | None) -> int | None:
            if v is None:
                return None
            try:
                cell = h3.str_to_int(v.strip())
            except (TypeError, ValueError):
                return None
            return cell if h3.is_valid_cell(h3.int_to_str(cell)) else None

        # Built as Int64 directly: going through float (None → NaN) would round 64-bit cell ids.
        return pd.Series(pd.array([one(v) for v in values], dtype="Int64"), index=values.index)

    return _parse(text)


def tag_tiles(
    text: DataFrame, run_date: dt.date, since: dt.date, finest: int, today: dt.date | None = None
) -> DataFrame:
    """Typed columns, ``cell``/``cell_res`` of each tile, ``reason`` (or null) and ``status``; a tile dated after
    ``today`` (default: today, UTC) is a ``future_date``."""
    typed = text.select(
        *[F.col(c).alias(f"raw_{c}") for c in TEXT_COLUMNS],
        F.expr("try_cast(trim(date) AS date)").alias("date"),
        F.expr("try_cast(trim(count) AS bigint)").alias("count"),
        F.expr("try_cast(trim(lat) AS double)").alias("lat"),
        F.expr("try_cast(trim(lon) AS double)").alias("lon"),
    ).withColumn("parsed_cell", _parse_cell(F.col("raw_cell")))
    has_cell = F.col("raw_cell").isNotNull() & (F.trim("raw_cell") != "")
    has_point = F.col("lat").isNotNull() & F.col("lon").isNotNull()
    reason = (
        F.when(F.col("raw_date").isNull(), F.lit("missing_date"))
        .when(F.col("date").isNull(), F.lit("unparseable_date"))
        .when(F.col("date") > F.lit(today or dt.datetime.now(dt.UTC).date()), F.lit("future_date"))
        .when(F.col("raw_count").isNull(), F.lit("missing_count"))
        .when(F.col("count").isNull(), F.lit("unparseable_count"))
        .when(F.col("count") < 0, F.lit("negative_count"))
        .when(has_cell & F.col("parsed_cell").isNull(), F.lit("invalid_cell"))
        .when(~has_cell & ~has_point, F.lit("missing_location"))
        .when(~has_cell & ((F.col("lat") < -90) | (F.col("lat") > 90)), F.lit("lat_out_of_range"))
        .when(~has_cell & ((F.col("lon") < -180) | (F.col("lon") > 180)), F.lit("lon_out_of_range"))
    )
    point_cell = h3_cell(F.coalesce("lat", F.lit(0.0)), F.coalesce("lon", F.lit(0.0)), finest)
    return (
        typed.withColumn("reason", reason)
        .withColumn(
            "cell",
            F.when(F.col("reason").isNotNull(), F.lit(None).cast("long"))
            .when(has_cell, F.col("parsed_cell"))
            .otherwise(point_cell),
        )
        .withColumn("cell_res", F.shiftright("cell", 52).bitwiseAND(F.lit(0xF)).cast("int"))
        .withColumn(
            "status",
            F.when(F.col("reason").isNotNull(), F.lit("quarantined"))
            .when(F.col("date") > F.lit(run_date), F.lit("deferred"))
            .when(F.col("date") < F.lit(since), F.lit("earlier"))
            .otherwise(F.lit("due")),
        )
    )


def transform(
    text: DataFrame,
    settings: JobSettings,
    run_date: dt.date,
    since: dt.date | None = None,
    today: dt.date | None = None,
) -> TileOutputs:
    """Validate a tiles file's rows (``text``: the TILES columns as text) for the window
    ``settings.window(run_date, since)``: each row tagged and located (lat/lon tiles at the finest configured
    resolution), the due tiles deduplicated for bronze, the rejected rows with their reason for quarantine.

    The same tile twice (same cell, day and count) is a duplicate; the same tile with two counts is kept twice and
    summed — a provider splitting a tile's count over rows is legitimate. Reads, writes and counts nothing.
    """
    first, _ = settings.window(run_date, since)
    tagged = tag_tiles(text, run_date, first, max(settings.resolutions), today)
    bronze = (
        tagged.where(F.col("status") == "due")
        .select(*BRONZE_TILES.fieldNames())
        .dropDuplicates(["cell", "date", "count"])
    )
    quarantine = (
        tagged.where(F.col("status") == "quarantined")
        .select(*[F.col(f"raw_{c}").alias(c) for c in TEXT_COLUMNS], "reason")
        .withColumn("run_date", F.lit(run_date))
        .select(*QUARANTINE_TILES.fieldNames())
    )
    return TileOutputs(tagged, bronze, quarantine)


def run(
    spark: SparkSession, settings: JobSettings, run_date: dt.date, path: Path, since: dt.date | None = None
) -> TileCounts:
    """Validate a tiles file's rows dated ``since`` .. ``run_date`` into ``bronze/tiles``; idempotent."""
    first, last = settings.window(run_date, since)
    outputs = transform(read_tiles_text(spark, path), settings, run_date, first)
    tagged = outputs.tagged.cache()
    tally = {r["status"]: r["count"] for r in tagged.groupBy("status").count().collect()}
    bronze = outputs.bronze.cache()
    accepted = bronze.count()
    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    lake.write(settings, tables.BRONZE_TILES, bronze, replace={"date": dates})
    lake.write(settings, tables.QUARANTINE_TILES, outputs.quarantine, replace={"run_date": [run_date]})
    bronze.unpersist()
    tagged.unpersist()
    counts = TileCounts(
        rows_in=sum(tally.values()),
        accepted=accepted,
        deferred=tally.get("deferred", 0),
        earlier=tally.get("earlier", 0),
        quarantined=tally.get("quarantined", 0),
        duplicates=tally.get("due", 0) - accepted,
    )
    lake.write_checks(spark, settings.lake(tables.QA_CHECKS), run_date, "ingest_tiles", asdict(counts))
    return counts
