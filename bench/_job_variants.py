"""Experimental copies of ``jobs.stages.aggregate.run`` with one change each, to measure what would make it faster.

Not the job: bench/aggregate.py always times the real ``jobs.stages.aggregate.run``. Each flag of ``Variant`` is a
candidate change to jobs/stages/aggregate.py; ``Variant()`` (all off) does what the job does today.

- ``cache_reduced``: persist ``device_cells`` so that the bronze scan, the h3 UDF and the first shuffle run once,
  not once for the daily and once for the hourly table (today ``reduced`` is recomputed by each).
- ``blocks``: shuffle the pings once by (date, parent cell at the coarsest resolution). Every aggregate key
  (cell at res >= coarsest, date[, hour]) then lies inside one partition, so device_cells and both tables are
  aggregated without any further shuffle (the block column is carried as a redundant grouping key, which is
  what tells Spark the partitioning already fits).
- ``arrow_udf``: the h3 UDF as an Arrow UDF (``pyspark.sql.functions.arrow_udf``, pyarrow arrays in and out)
  instead of a pandas UDF.
- ``device_hash``: device ids as ``xxhash64(device_id)`` (a long) from the first step on. Not exact: two ids of
  one day with the same 64-bit hash would count as one device (~1e-8 chance per day at 400k ids per day; an
  undercount, so suppression can only err towards suppressing).
- ``daily_without_hours``: for the daily table, merge each device's hours per finest cell before the 5x explode.
- ``arrow_agg`` (with ``blocks``): both tables' group-bys per (date, block) in pyarrow, via ``applyInArrow``.
- ``polars_agg`` (with ``blocks``): the same with Polars (one thread per Python worker) doing the group-bys.
- ``polars_part`` (with ``blocks``): Polars over whole partitions (``mapInArrow``); correct only because the
  hash partitioning by (date, block) keeps every aggregate key inside one partition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from contracts import tables
from geo.points import cells_to_parents, latlng_to_cells, parent_bits
from jobs.lake import read_table, write_partitions
from jobs.schemas import BRONZE_PINGS, DENSITY, DENSITY_HOURLY
from jobs.settings import JobSettings
from jobs.stages.aggregate import (
    BASELINE_WEEKS,
    AggregateCounts,
    _first_day,
    h3_cell,
    parent_cell,
    suppress_small_counts,
    with_baseline,
)


@dataclass(frozen=True)
class Variant:
    cache_reduced: bool = False
    blocks: bool = False
    arrow_udf: bool = False
    device_hash: bool = False
    daily_without_hours: bool = False
    arrow_agg: bool = False
    polars_agg: bool = False  # arrow_agg with polars (one thread per Python worker) doing each block's group-bys
    polars_part: bool = False

    @property
    def name(self) -> str:
        on = [k for k, v in vars(self).items() if v]
        return "+".join(on) if on else "job as is"


def h3_cell_arrow(lat: Column, lon: Column, res: int) -> Column:
    @F.arrow_udf("long")
    def _cells(lat_a: pa.Array, lon_a: pa.Array) -> pa.Array:
        return pa.array(latlng_to_cells(np.asarray(lat_a), np.asarray(lon_a), res))

    return _cells(lat, lon)


def device_cells(pings: DataFrame, resolutions: tuple[int, ...], v: Variant) -> DataFrame:
    finest, coarsest = max(resolutions), min(resolutions)
    cell = (h3_cell_arrow if v.arrow_udf else h3_cell)(F.col("lat"), F.col("lon"), finest)
    device = F.xxhash64("device_id").alias("device_id") if v.device_hash else F.col("device_id")
    cells = pings.select(device, "date", F.hour("ts").alias("hour"), cell.alias("cell"))
    keys = ["device_id", "date", "hour", "cell"]
    if v.blocks:
        cells = cells.withColumn("block", parent_cell(F.col("cell"), coarsest)).repartition("date", "block")
        keys.append("block")
    return cells.groupBy(*keys).agg(F.count(F.lit(1)).alias("pings"))


def count_by_cell(
    reduced: DataFrame, resolutions: tuple[int, ...], *, hourly: bool, blocks: bool, merge_hours: bool = False
) -> DataFrame:
    finest = max(resolutions)
    extra = ["block"] if blocks else []
    if merge_hours and not hourly:  # one row per device and finest cell before the 5x explode
        reduced = (
            reduced.groupBy("device_id", "date", "cell", *extra)
            .agg(F.sum("pings").alias("pings"))
            .withColumn("hour", F.lit(0))
        )
    per_res = reduced.select(
        "device_id",
        "date",
        "hour",
        "pings",
        *extra,
        F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(r).alias("res"),
                        (F.col("cell") if r == finest else parent_cell(F.col("cell"), r)).alias("cell"),
                    )
                    for r in resolutions
                ]
            )
        ).alias("c"),
    ).select("device_id", "date", "hour", "pings", *extra, "c.res", "c.cell")
    keys = ["cell", "res", "date", *(["hour"] if hourly else [])]
    per_device = per_res.groupBy(*keys, *extra, "device_id").agg(F.sum("pings").alias("pings"))
    counts = per_device.groupBy(*keys, *extra).agg(F.count(F.lit(1)).alias("devices"), F.sum("pings").alias("pings"))
    return counts.drop(*extra)


AGG_SCHEMA = "cell long, res int, date date, hour int, devices long, pings long"


def arrow_counts(reduced: DataFrame, resolutions: tuple[int, ...]) -> DataFrame:
    """Daily (hour null) and hourly counts of every (date, block) group in one pyarrow pass per group."""
    finest = max(resolutions)

    def per_block(table: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        cell = table["cell"].to_numpy()
        device = pc.dictionary_encode(table["device_id"]).combine_chunks().indices
        exploded = pa.concat_tables(
            pa.table(
                {
                    "cell": cell if r == finest else cells_to_parents(cell, r),
                    "res": pa.array(np.full(len(cell), r, dtype=np.int32)),
                    "hour": table["hour"],
                    "device": device,
                    "pings": table["pings"],
                }
            )
            for r in resolutions
        )
        aggs = [("device", "count_distinct"), ("pings", "sum")]
        date = table["date"][0]
        out = []
        for keys in (["cell", "res", "hour"], ["cell", "res"]):
            g = exploded.group_by(keys, use_threads=False).aggregate(aggs)
            n = g.num_rows
            out.append(
                pa.table(
                    {
                        "cell": g["cell"],
                        "res": g["res"],
                        "date": pa.array([date.as_py()] * n, pa.date32()) if n else pa.array([], pa.date32()),
                        "hour": g["hour"] if "hour" in keys else pa.nulls(n, pa.int32()),
                        "devices": g["device_count_distinct"].cast(pa.int64()),
                        "pings": g["pings_sum"],
                    }
                )
            )
        return pa.concat_tables(out)

    return reduced.groupBy("date", "block").applyInArrow(per_block, AGG_SCHEMA)


def polars_partition_counts(reduced: DataFrame, resolutions: tuple[int, ...]) -> DataFrame:
    per_block = polars_counts(reduced, resolutions, fn_only=True)

    def per_partition(batches):
        tables = [pa.Table.from_batches([b]) for b in batches]
        if tables:
            yield from per_block(pa.concat_tables(tables)).to_batches()

    return reduced.mapInArrow(per_partition, AGG_SCHEMA)


def polars_counts(reduced: DataFrame, resolutions: tuple[int, ...], fn_only: bool = False):
    finest = max(resolutions)
    masks = {r: parent_bits(r) for r in resolutions}

    def per_block(table: pa.Table) -> pa.Table:
        import os

        if table.num_rows == 0:
            return pa.schema(
                [
                    ("cell", pa.int64()),
                    ("res", pa.int32()),
                    ("date", pa.date32()),
                    ("hour", pa.int32()),
                    ("devices", pa.int64()),
                    ("pings", pa.int64()),
                ]
            ).empty_table()

        os.environ.setdefault("POLARS_MAX_THREADS", "1")
        import polars as pl

        df = pl.from_arrow(table.select(["device_id", "date", "hour", "cell", "pings"]))
        exploded = pl.concat(
            [
                df.with_columns(
                    cell=pl.col("cell") if r == finest else (pl.col("cell") & masks[r][0]) | masks[r][1],
                    res=pl.lit(r, pl.Int32),
                )
                for r in resolutions
            ]
        )
        aggs = [pl.col("device_id").n_unique().cast(pl.Int64).alias("devices"), pl.col("pings").sum().cast(pl.Int64)]
        hourly = exploded.group_by("cell", "res", "date", "hour").agg(aggs)
        daily = exploded.group_by("cell", "res", "date").agg(aggs).with_columns(hour=pl.lit(None, pl.Int32))
        cols = ["cell", "res", "date", "hour", "devices", "pings"]
        return pl.concat([hourly.select(cols), daily.select(cols)]).to_arrow()

    if fn_only:
        return per_block
    return reduced.groupBy("date", "block").applyInArrow(per_block, AGG_SCHEMA)


def run(spark: SparkSession, settings: JobSettings, run_date: dt.date, since: dt.date, v: Variant) -> AggregateCounts:
    """``jobs.stages.aggregate.run`` with the changes ``v`` turns on (the QA checks table is not written)."""
    pings = read_table(spark, settings.lake(tables.BRONZE_PINGS), BRONZE_PINGS).where(
        F.col("date").between(F.lit(since), F.lit(run_date))
    )
    resolutions = settings.resolutions
    reduced = device_cells(pings, resolutions, v)
    if v.cache_reduced:
        reduced = reduced.persist(StorageLevel.MEMORY_AND_DISK)
    if v.arrow_agg or v.polars_agg or v.polars_part:
        agg = polars_partition_counts if v.polars_part else polars_counts if v.polars_agg else arrow_counts
        both = agg(reduced, resolutions).cache()
        hourly = both.where(F.col("hour").isNotNull())
        daily = both.where(F.col("hour").isNull()).drop("hour")
    else:
        hourly = count_by_cell(reduced, resolutions, hourly=True, blocks=v.blocks).cache()
        daily = count_by_cell(
            reduced, resolutions, hourly=False, blocks=v.blocks, merge_hours=v.daily_without_hours
        ).cache()
    dates = sorted(r["date"] for r in daily.select("date").distinct().collect())

    density_path = settings.lake(tables.DENSITY)
    history_start = dates[0] - dt.timedelta(days=7 * BASELINE_WEEKS)
    history = (
        read_table(spark, density_path, DENSITY)
        .where((F.col("date") >= F.lit(history_start)) & (F.col("date") < F.lit(dates[0])))
        .select(*daily.columns)
    )
    first_day = _first_day(spark, density_path, dates[0])
    published = (
        with_baseline(history.unionByName(suppress_small_counts(daily, settings.min_devices)), first_day)
        .where(F.col("date") >= F.lit(dates[0]))
        .select(*DENSITY.fieldNames())
    )
    write_partitions(published, density_path, ["date", "res"], replace={"date": dates})
    write_partitions(
        suppress_small_counts(hourly, settings.min_devices).select(*DENSITY_HOURLY.fieldNames()),
        settings.lake(tables.DENSITY_HOURLY),
        ["date", "res"],
        replace={"date": dates},
    )
    finest = max(resolutions)
    totals = daily.where(F.col("res") == finest).agg(F.coalesce(F.sum("pings"), F.lit(0)).alias("p")).first()
    by_res = daily.agg(
        F.count(F.lit(1)).alias("n"), F.sum((F.col("devices") > settings.min_devices).cast("int")).alias("k")
    ).first()
    by_hour = hourly.agg(
        F.count(F.lit(1)).alias("n"), F.sum((F.col("devices") > settings.min_devices).cast("int")).alias("k")
    ).first()
    for df in (daily, hourly, reduced, *([both] if v.arrow_agg or v.polars_agg or v.polars_part else [])):
        df.unpersist()
    return AggregateCounts(totals["p"], by_res["n"], by_res["k"], by_res["n"] - by_res["k"], by_hour["n"], by_hour["k"])
