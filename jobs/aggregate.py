"""Aggregate: bronze pings → silver H3 density per (cell, day), suppressed before anything is written.

Suppression happens here, where the aggregate is made: ``run`` writes only what ``suppress_small_counts``
keeps (aggregates backed by more than ``min_devices`` distinct devices); the unsuppressed counts never leave
this job's memory.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from geo.points import latlng_to_cells
from jobs.lake import read_table, write_checks, write_partitions
from jobs.schemas import BRONZE_PINGS, DENSITY
from jobs.settings import MIN_DEVICES_FLOOR, JobSettings


def h3_cell(lat: Column, lon: Column, res: int) -> Column:
    """H3 cell (int64) of each row, vectorised per Arrow batch (no per-row Python)."""

    @pandas_udf("long")
    def _cells(lat_s: pd.Series, lon_s: pd.Series) -> pd.Series:
        return pd.Series(latlng_to_cells(lat_s.to_numpy(), lon_s.to_numpy(), res))

    return _cells(lat, lon)


def count_by_cell_day(pings: DataFrame, res: int) -> DataFrame:
    """All (cell, date) aggregates — unsuppressed, so never written; see ``suppress_small_counts``."""
    return (
        pings.withColumn("cell", h3_cell(F.col("lat"), F.col("lon"), res))
        .groupBy("cell", "date")
        .agg(F.countDistinct("device_id").alias("devices"), F.count(F.lit(1)).alias("pings"))
        .withColumn("res", F.lit(res))
    )


def suppress_small_counts(aggregates: DataFrame, min_devices: int) -> DataFrame:
    """Keep only aggregates backed by more than ``min_devices`` distinct devices (design.md privacy rule)."""
    if min_devices < MIN_DEVICES_FLOOR:
        raise ValueError(f"min_devices={min_devices} is below the privacy floor of {MIN_DEVICES_FLOOR}")
    return aggregates.where(F.col("devices") > F.lit(min_devices))


@dataclass(frozen=True)
class AggregateCounts:
    pings_in: int
    aggregates: int
    published: int
    suppressed: int


def run(spark: SparkSession, settings: JobSettings, run_date: dt.date) -> AggregateCounts:
    """Aggregate every bronze date up to ``run_date`` into silver; idempotent (replaces those dates)."""
    pings = read_table(spark, settings.lake("bronze", "pings"), BRONZE_PINGS).where(F.col("date") <= F.lit(run_date))
    counts = count_by_cell_day(pings, settings.h3_res).cache()
    published = suppress_small_counts(counts, settings.min_devices).select(*DENSITY.fieldNames())
    write_partitions(published, settings.lake("silver", "density"), ["date", "res"])

    totals = counts.agg(
        F.count(F.lit(1)).alias("aggregates"),
        F.coalesce(F.sum("pings"), F.lit(0)).alias("pings_in"),
        F.coalesce(F.sum((F.col("devices") > settings.min_devices).cast("int")), F.lit(0)).alias("published"),
    ).first()
    result = AggregateCounts(
        pings_in=totals["pings_in"],
        aggregates=totals["aggregates"],
        published=totals["published"],
        suppressed=totals["aggregates"] - totals["published"],
    )
    counts.unpersist()
    write_checks(
        spark,
        settings.lake("qa", "checks"),
        run_date,
        "aggregate",
        {**asdict(result), "h3_res": settings.h3_res, "min_devices": settings.min_devices},
    )
    return result
