"""The subtraction attack on a published store and its lake: how many published parents, minus their published
children, leave between 1 and min_devices devices (or pings) — what complementary suppression must bring to zero.

    .venv/bin/python bench/differencing_attack.py [--var-dir var] [--release ID] [--min-devices 15]

Tables attacked (``jobs.privacy.suppression.differencing_remainders``; every pair of published resolutions, and days
against their hours):

- the release's ``cells.parquet`` (CURRENT by default), as a reader of every route sees it and as a reader of one
  route sees it (each route's cells on their own);
- the release's ``history.parquet`` against its cells: each segment's daily series minus its published cells at
  the release's ``h3_res``, on the days both cover;
- silver ``density`` and ``density_hourly`` together (all dates in the lake), for devices and, where the lake still
  holds them, pings.

Prints one line per table and count: the offending (parent, finer level) pairs, the distinct parents among them
and those whose remainder is exactly 1. Runs Spark with the ``local`` profile (spark-conf/local.conf).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h3
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from contracts import tables
from jobs.lake import read_table
from jobs.privacy.suppression import DAILY, differencing_remainders, stack_levels
from jobs.schemas import DENSITY, DENSITY_HOURLY
from jobs.settings import JobSettings
from jobs.spark import build_spark


def summarise(found: DataFrame, counts: list[str], k: int) -> dict[str, tuple[int, int, int]]:
    """Per count: (offending pairs, distinct parents, pairs whose remainder is exactly 1)."""
    out = {}
    for c in counts:
        rem = F.col(f"{c}_remainder")
        bad = found.where(rem.between(1, k))
        row = bad.agg(
            F.count(F.lit(1)).alias("pairs"),
            F.count_distinct(F.struct("scope", "cell", "res", "date", "hour")).alias("parents"),
            F.sum((rem == 1).cast("int")).alias("ones"),
        ).first()
        out[c] = (row["pairs"], row["parents"], row["ones"] or 0)
    return out


def release_cells(spark: SparkSession, release: Path) -> DataFrame:
    cells = pd.read_parquet(release / "cells.parquet")
    cells = cells.assign(cell=[h3.str_to_int(c) for c in cells["cell"]], date=pd.to_datetime(cells["date"]).dt.date)
    return spark.createDataFrame(
        cells[["route_id", "segment_id", "cell", "res", "date", "devices"]],
        "route_id string, segment_id string, cell long, res int, date date, devices long",
    )


def series_remainders(spark: SparkSession, release: Path, cells: DataFrame, h3_res: int) -> DataFrame:
    """Segment-days of history.parquet minus the segment's published cells at ``h3_res`` that day."""
    history = pd.read_parquet(release / "history.parquet")
    history = history[history["series_id"].str.startswith("segment:")]
    ids = history["series_id"].str.removeprefix("segment:").str.split("/", n=1, expand=True)
    series = spark.createDataFrame(
        history.assign(route_id=ids[0], segment_id=ids[1], ds=pd.to_datetime(history["ds"]).dt.date)[
            ["route_id", "segment_id", "ds", "y"]
        ],
        "route_id string, segment_id string, ds date, y double",
    ).withColumnRenamed("ds", "date")
    summed = (
        cells.where(F.col("res") == h3_res)
        .groupBy("route_id", "segment_id", "date")
        .agg(F.sum("devices").alias("devices_children"))
    )
    return series.join(summed, ["route_id", "segment_id", "date"]).select(
        F.concat_ws("/", "route_id", "segment_id").alias("scope"),
        F.lit(None).cast("long").alias("cell"),
        F.lit(None).cast("int").alias("res"),
        "date",
        F.lit(DAILY).alias("hour"),
        (F.col("y") - F.col("devices_children")).alias("devices_remainder"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--var-dir", type=Path, default=Path("var"))
    parser.add_argument("--release", help="release id (default: the store's CURRENT)")
    parser.add_argument("--min-devices", type=int, default=None, help="default: the release manifest's")
    args = parser.parse_args()

    settings = JobSettings(var_dir=args.var_dir)
    store = settings.store_dir
    release_id = args.release or (store / "CURRENT").read_text().strip()
    release = store / "releases" / release_id
    manifest = json.loads((release / "manifest.json").read_text())
    k = args.min_devices or int(manifest["privacy"]["min_devices"])
    spark = build_spark(settings)
    spark.sparkContext.setLogLevel("ERROR")
    print(f"release {release_id} (as of {manifest['as_of']}), min_devices {k}: remainders in 1..{k}")
    print(f"{'table':<44} {'count':<8} {'pairs':>10} {'parents':>10} {'exactly 1':>10} {'seconds':>8}")

    def report(name: str, found: DataFrame, counts: list[str], started: float) -> None:
        for c, (pairs, parents, ones) in summarise(found, counts, k).items():
            print(f"{name:<44} {c:<8} {pairs:>10,} {parents:>10,} {ones:>10,} {time.perf_counter() - started:>8.1f}")

    if (release / "cells.parquet").exists():
        cells = release_cells(spark, release).cache()
        started = time.perf_counter()
        report("cells.parquet (all routes)", differencing_remainders(cells, k), ["devices"], started)
        started = time.perf_counter()
        per_route = differencing_remainders(cells, k, scopes=F.array(F.col("route_id")))
        report("cells.parquet (one route at a time)", per_route, ["devices"], started)
        if (release / "history.parquet").exists() and "h3_res" in manifest:
            started = time.perf_counter()
            found = series_remainders(spark, release, cells, int(manifest["h3_res"]))
            report(f"history.parquet segments - cells at res {manifest['h3_res']}", found, ["devices"], started)

    daily_path, hourly_path = settings.lake(tables.DENSITY), settings.lake(tables.DENSITY_HOURLY)
    if daily_path.exists():
        columns = ["cell", "res", "date", "devices", "pings"]
        daily = read_table(spark, daily_path, DENSITY).select(*columns)
        hourly = None
        if hourly_path.exists():
            hourly = read_table(spark, hourly_path, DENSITY_HOURLY).select(*columns, "hour")
        started = time.perf_counter()
        found = differencing_remainders(stack_levels(daily, hourly), k, counts=["devices", "pings"])
        report("silver density + density_hourly", found.cache(), ["devices", "pings"], started)
    spark.stop()


if __name__ == "__main__":
    main()
