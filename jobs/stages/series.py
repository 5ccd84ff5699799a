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
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from geo.catalogue import Catalogue, load_catalogue
from geo.cells import cell_segment_table
from jobs.lake import read_table, write_partitions
from jobs.schemas import DENSITY, SERIES
from jobs.settings import JobSettings

DENSITY_SOURCE = "density"


def series_id(
    level: str,
    route_id: str | None = None,
    segment_id: str | None = None,
    source: str = DENSITY_SOURCE,
    *,
    to_segment: str | None = None,
) -> str:
    """Ids unique across the whole gold table: ``all``, ``route:<route>``, ``segment:<route>/<segment>``
    for density, ``flow:<route>/<segment>><to_segment>`` for a segment → segment flow within a route; other
    sources are prefixed, e.g. ``frontex/route:central_mediterranean``."""
    if level == "all":
        key = "all"
    elif level == "route":
        key = f"route:{route_id}"
    elif level == "segment":
        key = f"segment:{route_id}/{segment_id}"
    elif level == "flow":
        if to_segment is None:
            raise ValueError("a flow series id needs to_segment (the segment the flow goes to)")
        key = f"flow:{route_id}/{segment_id}>{to_segment}"
    else:
        raise ValueError(f"unknown level {level!r}; expected all|route|segment|flow")
    return key if source == DENSITY_SOURCE else f"{source}/{key}"


def segment_density(density: DataFrame, cell_segments: DataFrame) -> DataFrame:
    """Per (route, segment, date): summed published devices over the segment's cells."""
    return (
        density.join(F.broadcast(cell_segments), "cell")
        .groupBy("route_id", "segment_id", "date")
        .agg(F.sum("devices").cast("double").alias("y"))
    )


def series_keys(catalogue: Catalogue) -> list[tuple[str, str, str | None, str | None]]:
    """(series_id, level, route_id, segment_id) of every series in the hierarchy."""
    rows: list[tuple[str, str, str | None, str | None]] = [("all", "all", None, None)]
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
    """Roll segment density up to route and all levels and fill the daily grid with zeros."""
    by_segment = segments.select(
        F.concat(F.lit("segment:"), "route_id", F.lit("/"), "segment_id").alias("series_id"),
        F.col("date").alias("ds"),
        "y",
    )
    by_route = (
        segments.groupBy("route_id", "date")
        .agg(F.sum("y").alias("y"))
        .select(F.concat(F.lit("route:"), "route_id").alias("series_id"), F.col("date").alias("ds"), "y")
    )
    overall = (
        segments.groupBy("date")
        .agg(F.sum("y").alias("y"))
        .select(F.lit("all").alias("series_id"), F.col("date").alias("ds"), "y")
    )
    values = by_segment.unionByName(by_route).unionByName(overall)
    return (
        skeleton.join(values, ["series_id", "ds"], "left")
        .withColumn("y", F.coalesce(F.col("y"), F.lit(0.0)))
        .withColumn("freq", F.lit("D"))
        .withColumn("source", F.lit(DENSITY_SOURCE))
        .select(*SERIES.fieldNames())
    )


def run(spark: SparkSession, settings: JobSettings, run_date: dt.date, catalogue: Catalogue | None = None) -> int:
    """Rebuild the density series up to ``run_date`` in gold (replaces the ``source=density`` partition) from the
    silver cells at ``h3_res`` above ``min_devices``."""
    catalogue = catalogue or load_catalogue()
    density = read_table(spark, settings.lake("silver", "density"), DENSITY).where(
        (F.col("res") == settings.h3_res)
        & (F.col("date") <= F.lit(run_date))
        & (F.col("devices") > F.lit(settings.min_devices))
    )
    first = density.agg(F.min("date")).first()[0]
    if first is None:
        raise ValueError(f"no published density up to {run_date} at res {settings.h3_res}; run aggregate first")
    table = cell_segment_table(catalogue, settings.h3_res)
    cell_segments = spark.createDataFrame(
        pd.DataFrame(
            {
                "cell": table["cell"].astype("int64"),
                "route_id": table["route_id"].astype(str),
                "segment_id": table["segment_id"].astype(str),
            }
        )
    )
    skeleton = series_skeleton(spark, catalogue, first, run_date)
    series = build_series(segment_density(density, cell_segments), skeleton)
    write_partitions(series, settings.lake("gold", "series"), ["source"])
    return len(series_keys(catalogue)) * ((run_date - first).days + 1)
