"""The Spark twins of the Arrow schemas in ``contracts/schemas.py``, for reading and writing with Spark."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from contracts import schemas


def spark_schema(schema: pa.Schema) -> StructType:
    """The Spark schema of an Arrow one (names, types and nullability kept)."""
    return from_arrow_schema(schema)


def arrow_schema(schema: StructType) -> pa.Schema:
    """The Arrow twin of a Spark schema, for writers that do not go through Spark (e.g. the generator)."""
    # The lake is UTC throughout (spark.sql.session.timeZone=UTC in every profile).
    return to_arrow_schema(schema, timezone="UTC")


PINGS = spark_schema(schemas.PINGS)
BRONZE_PINGS = spark_schema(schemas.BRONZE_PINGS)
QUARANTINE_PINGS = spark_schema(schemas.QUARANTINE_PINGS)
TILES = spark_schema(schemas.TILES)
BRONZE_TILES = spark_schema(schemas.BRONZE_TILES)
QUARANTINE_TILES = spark_schema(schemas.QUARANTINE_TILES)
QUARANTINE_FILES = spark_schema(schemas.QUARANTINE_FILES)
QUARANTINE_COUNTS = spark_schema(schemas.QUARANTINE_COUNTS)
DENSITY = spark_schema(schemas.DENSITY)
DENSITY_HOURLY = spark_schema(schemas.DENSITY_HOURLY)
DENSITY_BY_GROUP = spark_schema(schemas.DENSITY_BY_GROUP)
FLOWS_SEGMENT = spark_schema(schemas.FLOWS_SEGMENT)
FLOWS_CELL = spark_schema(schemas.FLOWS_CELL)
SERIES = spark_schema(schemas.SERIES)
PEOPLE = spark_schema(schemas.PEOPLE)
QA_CHECKS = spark_schema(schemas.QA_CHECKS)
PUBLISHED_FORECAST = spark_schema(schemas.PUBLISHED_FORECAST)
PUBLISHED_HISTORY = spark_schema(schemas.PUBLISHED_HISTORY)
PUBLISHED_CELLS = spark_schema(schemas.PUBLISHED_CELLS)
PUBLISHED_TOTALS = spark_schema(schemas.PUBLISHED_TOTALS)
TRUTH_SEGMENT_PEOPLE = spark_schema(schemas.TRUTH_SEGMENT_PEOPLE)
TRUTH_ARRIVALS = spark_schema(schemas.TRUTH_ARRIVALS)
TRUTH_JOURNEYS = spark_schema(schemas.TRUTH_JOURNEYS)
TRUTH_DEPARTURES = spark_schema(schemas.TRUTH_DEPARTURES)
TRUTH_SEGMENT_PHONES = spark_schema(schemas.TRUTH_SEGMENT_PHONES)
PRIVACY_LEDGER = spark_schema(schemas.PRIVACY_LEDGER)
