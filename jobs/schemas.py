"""The data contracts of design.md, declared once and reused to read, to build test data and to check outputs."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# Input: one row per phone observation. device_id is pseudonymous and never leaves bronze.
PINGS = StructType(
    [
        StructField("device_id", StringType(), True),
        StructField("ts", TimestampType(), True),
        StructField("lat", DoubleType(), True),
        StructField("lon", DoubleType(), True),
        StructField("accuracy_m", DoubleType(), True),
        StructField("mcc", StringType(), True),
    ]
)

# Bronze: accepted pings, partitioned by date.
BRONZE_PINGS = StructType([*PINGS.fields, StructField("date", DateType(), False)])

# Rejected input rows, with the first rule they broke.
QUARANTINE_PINGS = StructType(
    [*PINGS.fields, StructField("reason", StringType(), False), StructField("run_date", DateType(), False)]
)

# Alternative input: density tiles from providers that aggregate themselves (design.md). A tile is located
# by an H3 cell id (hex string, any resolution) or by lat/lon; count is its number of distinct devices.
TILES = StructType(
    [
        StructField("date", DateType(), True),
        StructField("cell", StringType(), True),
        StructField("lat", DoubleType(), True),
        StructField("lon", DoubleType(), True),
        StructField("count", LongType(), True),
    ]
)

# Bronze tiles: validated, located as an H3 cell (int64) at cell_res (lat/lon tiles at the finest resolution).
BRONZE_TILES = StructType(
    [
        StructField("cell", LongType(), False),
        StructField("cell_res", IntegerType(), False),
        StructField("count", LongType(), False),
        StructField("date", DateType(), False),
    ]
)

# Rejected tile rows, as they were in the file (text), with the first rule they broke.
QUARANTINE_TILES = StructType(
    [
        *[StructField(f.name, StringType(), True) for f in TILES.fields],
        StructField("reason", StringType(), False),
        StructField("run_date", DateType(), False),
    ]
)

# Input files ingest could not read (corrupt, not Parquet, wrong column types): reported by name, never read.
QUARANTINE_FILES = StructType(
    [
        StructField("file", StringType(), False),
        StructField("reason", StringType(), False),
        StructField("run_date", DateType(), False),
    ]
)

# Official counts rejected by ingest-counts, one row per offending line of the file.
QUARANTINE_COUNTS = StructType(
    [
        StructField("file", StringType(), False),
        StructField("line", IntegerType(), False),  # 1-based line in the file; the header is line 1
        StructField("raw", StringType(), False),  # the line as it is in the file
        StructField("reason", StringType(), False),
        StructField("source", StringType(), False),
    ]
)

# Silver: H3 cell x day density, suppressed before it is written, with the same-weekday baseline
# (jobs.stages.aggregate): null baseline/excess/zscore while a cell has under three weeks of history.
# pings is always null: pings are additive, so a parent's minus its children's would give a suppressed remainder
# exactly, and nothing downstream needs them (docs/privacy.md, "What each table publishes"). The column stays so
# that lakes written before keep one schema.
DENSITY = StructType(
    [
        StructField("cell", LongType(), False),
        StructField("res", IntegerType(), False),
        StructField("devices", LongType(), False),
        StructField("pings", LongType(), True),
        StructField("baseline", DoubleType(), True),
        StructField("excess", DoubleType(), True),
        StructField("zscore", DoubleType(), True),
        StructField("date", DateType(), False),
    ]
)

# Silver: H3 cell x hour density (hour 0-23, UTC), suppressed like the daily table.
DENSITY_HOURLY = StructType(
    [
        StructField("cell", LongType(), False),
        StructField("res", IntegerType(), False),
        StructField("hour", IntegerType(), False),
        StructField("devices", LongType(), False),
        StructField("pings", LongType(), True),  # always null, as in DENSITY
        StructField("date", DateType(), False),
    ]
)

# Silver: transitions between consecutive route segments within one device-day (the daily pseudonym),
# counted as distinct devices and suppressed like density.
FLOWS_SEGMENT = StructType(
    [
        StructField("from_route", StringType(), False),
        StructField("from_segment", StringType(), False),
        StructField("to_route", StringType(), False),
        StructField("to_segment", StringType(), False),
        StructField("devices", LongType(), False),
        StructField("date", DateType(), False),
    ]
)

# Silver: transitions between H3 cells at a coarse resolution (settings.flow_res), suppressed like density.
FLOWS_CELL = StructType(
    [
        StructField("from_cell", LongType(), False),
        StructField("to_cell", LongType(), False),
        StructField("res", IntegerType(), False),
        StructField("devices", LongType(), False),
        StructField("date", DateType(), False),
    ]
)

# Gold: the one long table every model reads. route_id/segment_id say where a series sits in the hierarchy.
SERIES = StructType(
    [
        StructField("series_id", StringType(), False),
        StructField("level", StringType(), False),
        StructField("route_id", StringType(), True),
        StructField("segment_id", StringType(), True),
        StructField("ds", DateType(), False),
        StructField("y", DoubleType(), False),
        StructField("freq", StringType(), False),  # D (daily) | W (weekly, Monday) | M (monthly, 1st)
        StructField("source", StringType(), False),
    ]
)

# Data-quality and row-accounting checks, stored as data (one row per check and run).
QA_CHECKS = StructType(
    [
        StructField("run_date", DateType(), False),
        StructField("stage", StringType(), False),
        StructField("check", StringType(), False),
        StructField("value", DoubleType(), False),
    ]
)


def arrow_schema(schema: StructType) -> pa.Schema:
    """The Arrow twin of a Spark schema, for writers that do not go through Spark (e.g. the generator)."""
    # The lake is UTC throughout (spark.sql.session.timeZone=UTC in every profile).
    return to_arrow_schema(schema, timezone="UTC")


# Published (store/releases/<id>/forecasts.parquet): what serving reads. Only ever made from suppressed data.
PUBLISHED_FORECAST = StructType(
    [
        StructField("series_id", StringType(), False),
        StructField("level", StringType(), False),
        StructField("route_id", StringType(), True),
        StructField("segment_id", StringType(), True),
        StructField("freq", StringType(), False),
        StructField("source", StringType(), False),
        StructField("ds", DateType(), False),
        *[StructField(c, DoubleType(), False) for c in ("yhat", "lo80", "hi80", "lo95", "hi95")],
        StructField("model", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("model_version", StringType(), False),
        StructField("release_id", StringType(), False),
    ]
)

# Published (store/releases/<id>/history.parquet): the observed values of every published series, from the gold
# series table as the forecast stage read it (daily series the last 365 days, weekly/monthly the last 5 years).
PUBLISHED_HISTORY = StructType(
    [
        StructField("series_id", StringType(), False),
        StructField("ds", DateType(), False),
        StructField("y", DoubleType(), False),
    ]
)

# Published (store/releases/<id>/cells.parquet): silver density (already suppressed) of the 28 days up to the
# release's as_of in the cells of each route segment, at ROUTECAST_PUBLISH_CELL_RESOLUTIONS. cell is the H3 hex id;
# share is the cell's devices over those days / its segment's at that res (the shares of a (route, segment, res)
# add up to 1), for serving to spread a segment's forecast over its cells.
PUBLISHED_CELLS = StructType(
    [
        StructField("route_id", StringType(), False),
        StructField("segment_id", StringType(), False),
        StructField("cell", StringType(), False),
        StructField("res", IntegerType(), False),
        StructField("date", DateType(), False),
        StructField("devices", LongType(), False),
        StructField("excess", DoubleType(), True),
        StructField("zscore", DoubleType(), True),
        StructField("share", DoubleType(), False),
    ]
)


# Ground truth written by the simulator (var/truth/<table>), to score density and forecasts against.
TRUTH_SEGMENT_PEOPLE = StructType(
    [
        StructField("date", DateType(), False),
        StructField("route_id", StringType(), False),
        StructField("segment_id", StringType(), False),
        StructField("people", LongType(), False),
    ]
)

TRUTH_ARRIVALS = StructType(
    [
        StructField("date", DateType(), False),
        StructField("route_id", StringType(), False),
        StructField("crossing_point_id", StringType(), False),
        StructField("arrivals", LongType(), False),
    ]
)

# outcome: completed (reached the end of its path), diverted (left the route at a closed crossing),
# in_transit (still travelling at the end of the run).
TRUTH_JOURNEYS = StructType(
    [
        StructField("agent_id", LongType(), False),
        StructField("journey", IntegerType(), False),
        StructField("route_id", StringType(), False),
        StructField("path", StringType(), False),  # segment ids in travel order, joined by '>'
        StructField("departed", TimestampType(), False),
        StructField("ended", TimestampType(), False),
        StructField("outcome", StringType(), False),
    ]
)


# The differential-privacy ledger (lake/privacy/ledger, partitioned by period; written by jobs.privacy.dp): one row
# per charge of a release's epsilon against its period's budget. Append-only: a charge is never rewritten.
PRIVACY_LEDGER = StructType(
    [
        StructField("period", StringType(), False),  # YYYY-MM of data_date (settings.dp_period = month)
        StructField("seq", IntegerType(), False),  # charge number within the period, from 1
        StructField("release", StringType(), False),  # e.g. density/2025-03-10
        StructField("data_date", DateType(), False),
        StructField("mechanism", StringType(), False),  # laplace | gaussian
        StructField("epsilon", DoubleType(), False),
        StructField("delta", DoubleType(), False),  # 0 for laplace
        StructField("fingerprint", StringType(), False),  # keyed hash of the unnoised (suppressed) input
        StructField("charged_at", TimestampType(), False),
    ]
)
