"""Series: silver density → gold series (``series_id, level, route_id, segment_id, ds, y, source``).

Cells map to route segments through geo's cell → segment table (one segment per cell). ``y`` is the sum of
published distinct-device counts over a segment's cells that day; a day with no published cell is 0 (the
published density was zero, possibly because every cell was suppressed). Levels: all, route, segment.

Nesting
    Every series is a sum of published numbers: a segment's y of its published cells at ``h3_res`` (silver, after
    complementary suppression), a route's of its segments', ``all`` of the routes'. Each remainder (parent minus
    its published children) is therefore exactly 0 and reveals nothing, so the series need no suppression of
    their own. Two things keep it so: silver rows at or below ``min_devices`` (written under a lower threshold)
    are not counted, as the release's cells leave them out; and ``jobs.stages.publish.cells_table`` never removes a cell
    at ``h3_res`` from the release (it removes the coarser parent instead), so a segment's series minus the
    segment's published cells stays 0.

Ids
    ``contracts.series.series_id`` (re-exported here with ``DENSITY_SOURCE``); the rows are matched to their ids by
    (level, route, segment), so that format lives in one place.

Transform and run
    ``transform`` turns silver density (as read) into the gold rows of a date range, with no reads, writes or
    Spark actions; ``run`` reads silver, finds the first published day, calls it and writes gold.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from contracts import tables
from contracts.series import DENSITY_SOURCE, series_id
from geo.catalogue import Catalogue, load_catalogue
from geo.cells import cell_segment_table
from jobs import lake
from jobs.settings import JobSettings


def cell_segments_frame(spark: SparkSession, catalogue: Catalogue, res: int) -> DataFrame:
    """geo's cell → segment table at ``res`` as a Spark frame: ``cell`` (int64), ``route_id``, ``segment_id``."""
    table = cell_segment_table(catalogue, res)
    return spark.createDataFrame(
        pd.DataFrame(
            {
                "cell": table["cell"].astype("int64"),
                "route_id": table["route_id"].astype(str),
                "segment_id": table["segment_id"].astype(str),
            }
        )
    )


def segment_density(density: DataFrame, cell_segments: DataFrame) -> DataFrame:
    """Per (route, segment, date): summed published devices over the segment's cells."""
    return (
        density.join(F.broadcast(cell_segments), "cell")
        .groupBy("route_id", "segment_id", "date")
        .agg(F.sum("devices").cast("double").alias("y"))
    )


def series_keys(catalogue: Catalogue) -> list[tuple[str, str, str | None, str | None]]:
    """(series_id, level, route_id, segment_id) of every series in the hierarchy."""
    rows: list[tuple[str, str, str | None, str | None]] = [(series_id("all"), "all", None, None)]
    for route in catalogue:
        rows.append((series_id("route", route.id), "route", route.id, None))
        rows.extend((series_id("segment", route.id, seg.id), "segment", route.id, seg.id) for seg in route.segments)
    return rows


def series_skeleton(spark: SparkSession, catalogue: Catalogue, start: dt.date, end: dt.date) -> DataFrame:
    """Every (series, day) from start to end inclusive, so days without published density become 0."""
    keys = spark.createDataFrame(
        series_keys(catalogue), "series_id string, level string, route_id string, segment_id string"
    )
    days = spark.sql(f"SELECT explode(sequence(DATE'{start}', DATE'{end}', INTERVAL 1 DAY)) AS ds")
    return keys.crossJoin(days)


def build_series(segments: DataFrame, skeleton: DataFrame) -> DataFrame:
    """Roll segment density up to route and all levels and fill the daily grid (``series_skeleton``) with zeros.

    Each value finds its series by (level, route_id, segment_id), never by rebuilding its id.
    """
    no_segment = F.lit(None).cast("string")
    by_segment = segments.select(F.lit("segment").alias("level"), "route_id", "segment_id", "date", "y")
    by_route = (
        segments.groupBy("route_id", "date")
        .agg(F.sum("y").alias("y"))
        .select(F.lit("route").alias("level"), "route_id", no_segment.alias("segment_id"), "date", "y")
    )
    overall = (
        segments.groupBy("date")
        .agg(F.sum("y").alias("y"))
        .select(F.lit("all").alias("level"), no_segment.alias("route_id"), no_segment.alias("segment_id"), "date", "y")
    )
    values = by_segment.unionByName(by_route).unionByName(overall).alias("v")
    grid = skeleton.alias("s")
    same = [
        F.col("s.level") == F.col("v.level"),
        F.col("s.route_id").eqNullSafe(F.col("v.route_id")),
        F.col("s.segment_id").eqNullSafe(F.col("v.segment_id")),
        F.col("s.ds") == F.col("v.date"),
    ]
    return grid.join(values, same, "left").select(
        "s.series_id",
        "s.level",
        "s.route_id",
        "s.segment_id",
        "s.ds",
        F.coalesce(F.col("v.y"), F.lit(0.0)).alias("y"),
        F.lit("D").alias("freq"),
        F.lit(DENSITY_SOURCE).alias("source"),
    )


def published_density(density: DataFrame, settings: JobSettings, end: dt.date) -> DataFrame:
    """The silver density rows the series count: cells at ``h3_res`` above ``min_devices`` (the release's cells),
    up to ``end``."""
    return density.where(
        (F.col("res") == settings.h3_res)
        & (F.col("date") <= F.lit(end))
        & (F.col("devices") > F.lit(settings.min_devices))
    )


def transform(
    density: DataFrame, catalogue: Catalogue, settings: JobSettings, start: dt.date, end: dt.date
) -> DataFrame:
    """The gold density series (``SERIES`` rows) of every series of ``catalogue``, every day from ``start`` to
    ``end``, from silver density as read (``DENSITY`` rows; only ``published_density`` counts)."""
    spark = density.sparkSession
    cell_segments = cell_segments_frame(spark, catalogue, settings.h3_res)
    segments = segment_density(published_density(density, settings, end), cell_segments)
    return build_series(segments, series_skeleton(spark, catalogue, start, end))


def run(spark: SparkSession, settings: JobSettings, run_date: dt.date, catalogue: Catalogue | None = None) -> int:
    """Rebuild the density series up to ``run_date`` in gold (replaces the ``source=density`` partition) from the
    silver cells at ``h3_res`` above ``min_devices``; returns the number of rows written."""
    catalogue = catalogue or load_catalogue()
    density = lake.read(spark, settings, tables.DENSITY)
    first = published_density(density, settings, run_date).agg(F.min("date")).first()[0]
    if first is None:
        raise ValueError(f"no published density up to {run_date} at res {settings.h3_res}; run aggregate first")
    lake.write(settings, tables.SERIES, transform(density, catalogue, settings, first, run_date))
    return len(series_keys(catalogue)) * ((run_date - first).days + 1)
