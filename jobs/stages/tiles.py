"""Provider density tiles: the alternative input for providers that aggregate phones themselves (design.md).

A tiles file (CSV with a header, or Parquet) has ``date``, ``count`` (distinct devices) and a location:
``cell`` (an H3 cell id as hex text, at any resolution) or ``lat``/``lon``. Every value is read as text and
cast explicitly (no inference); a row that breaks a rule goes to ``quarantine/tiles`` with its reason, and
in = accepted + deferred + earlier + quarantined + duplicates, as for pings.

Aggregation (``jobs.stages.aggregate.run_tiles``) sums the counts of the tiles inside each H3 cell at every
configured resolution that is not finer than the tile (a res-6 tile says nothing about res-7 cells), then
suppresses and adds the baseline like pings. Summing the distinct-device counts of several tiles
over-counts a device seen in two of them; tiles carry no device ids, so it cannot be undone — prefer tiles
at the finest resolution the provider offers.
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

from jobs.lake import write_checks, write_partitions
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


def tag_tiles(text: DataFrame, run_date: dt.date, since: dt.date, finest: int) -> DataFrame:
    """Typed columns, ``cell``/``cell_res`` of each tile, ``reason`` (or null) and ``status``."""
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
        .when(F.col("date") > F.lit(dt.datetime.now(dt.UTC).date()), F.lit("future_date"))
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


def run(
    spark: SparkSession, settings: JobSettings, run_date: dt.date, path: Path, since: dt.date | None = None
) -> TileCounts:
    """Validate a tiles file's rows dated ``since`` .. ``run_date`` into ``bronze/tiles``; idempotent."""
    since = since or run_date - dt.timedelta(days=settings.bronze_retention_days - 1)
    tagged = tag_tiles(read_tiles_text(spark, path), run_date, since, max(settings.resolutions)).cache()
    tally = {r["status"]: r["count"] for r in tagged.groupBy("status").count().collect()}
    due = tagged.where(F.col("status") == "due").select(*BRONZE_TILES.fieldNames())
    # The same tile twice (same cell, day and count) is a duplicate; the same tile with two counts is kept
    # twice and summed — a provider splitting a tile's count over rows is legitimate.
    bronze = due.dropDuplicates(["cell", "date", "count"]).cache()
    accepted = bronze.count()
    dates = [since + dt.timedelta(days=i) for i in range((run_date - since).days + 1)]
    write_partitions(bronze, settings.lake("bronze", "tiles"), ["date"], replace={"date": dates})
    quarantine = (
        tagged.where(F.col("status") == "quarantined")
        .select(*[F.col(f"raw_{c}").alias(c) for c in TEXT_COLUMNS], "reason")
        .withColumn("run_date", F.lit(run_date))
        .select(*QUARANTINE_TILES.fieldNames())
    )
    write_partitions(quarantine, settings.lake("quarantine", "tiles"), ["run_date"], replace={"run_date": [run_date]})
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
    write_checks(spark, settings.lake("qa", "checks"), run_date, "ingest_tiles", asdict(counts))
    return counts
