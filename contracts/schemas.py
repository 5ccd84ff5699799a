"""The schemas of every table routecast reads or writes, declared once in Arrow types.

Arrow, not Spark, so that every layer may import them: serving checks a release's files against them without
pyspark, the jobs turn them into Spark schemas (``jobs/schemas.py``). Timestamps are UTC microseconds throughout.
Where each table lives and how it is partitioned is in ``contracts/tables.py``.
"""

from __future__ import annotations

import pyarrow as pa

from contracts.published import FORECAST_VALUES

# Input: one row per phone observation. device_id is pseudonymous and never leaves bronze.
PINGS = pa.schema(
    [
        pa.field("device_id", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("accuracy_m", pa.float64()),
        pa.field("mcc", pa.string()),
    ]
)

# Bronze: accepted pings, partitioned by date.
BRONZE_PINGS = pa.schema([*PINGS, pa.field("date", pa.date32(), nullable=False)])

# Rejected input rows, with the first rule they broke.
QUARANTINE_PINGS = pa.schema(
    [*PINGS, pa.field("reason", pa.string(), nullable=False), pa.field("run_date", pa.date32(), nullable=False)]
)

# Alternative input: density tiles from providers that aggregate themselves (docs/design.md). A tile is located
# by an H3 cell id (hex string, any resolution) or by lat/lon; count is its number of distinct devices.
TILES = pa.schema(
    [
        pa.field("date", pa.date32()),
        pa.field("cell", pa.string()),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("count", pa.int64()),
    ]
)

# Bronze tiles: validated, located as an H3 cell (int64) at cell_res (lat/lon tiles at the finest resolution).
BRONZE_TILES = pa.schema(
    [
        pa.field("cell", pa.int64(), nullable=False),
        pa.field("cell_res", pa.int32(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
    ]
)

# Rejected tile rows, as they were in the file (text), with the first rule they broke.
QUARANTINE_TILES = pa.schema(
    [
        *[pa.field(f.name, pa.string()) for f in TILES],
        pa.field("reason", pa.string(), nullable=False),
        pa.field("run_date", pa.date32(), nullable=False),
    ]
)

# Input files ingest could not read (corrupt, not Parquet, wrong column types): reported by name, never read.
QUARANTINE_FILES = pa.schema(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("run_date", pa.date32(), nullable=False),
    ]
)

# Official counts rejected by ingest-counts, one row per offending line of the file.
QUARANTINE_COUNTS = pa.schema(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("line", pa.int32(), nullable=False),  # 1-based line in the file; the header is line 1
        pa.field("raw", pa.string(), nullable=False),  # the line as it is in the file
        pa.field("reason", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

# Silver: H3 cell x day density, suppressed before it is written, with the same-weekday baseline
# (jobs.stages.aggregate): null baseline/excess/zscore while a cell has under three weeks of history.
# pings is always null: pings are additive, so a parent's minus its children's would give a suppressed remainder
# exactly, and nothing downstream needs them (docs/privacy.md, "What each table publishes"). The column stays so
# that lakes written before keep one schema.
DENSITY = pa.schema(
    [
        pa.field("cell", pa.int64(), nullable=False),
        pa.field("res", pa.int32(), nullable=False),
        pa.field("devices", pa.int64(), nullable=False),
        pa.field("pings", pa.int64()),
        pa.field("baseline", pa.float64()),
        pa.field("excess", pa.float64()),
        pa.field("zscore", pa.float64()),
        pa.field("date", pa.date32(), nullable=False),
    ]
)

# Silver: H3 cell x hour density (hour 0-23, UTC), suppressed like the daily table.
DENSITY_HOURLY = pa.schema(
    [
        pa.field("cell", pa.int64(), nullable=False),
        pa.field("res", pa.int32(), nullable=False),
        pa.field("hour", pa.int32(), nullable=False),
        pa.field("devices", pa.int64(), nullable=False),
        pa.field("pings", pa.int64()),  # always null, as in DENSITY
        pa.field("date", pa.date32(), nullable=False),
    ]
)

# Silver: distinct devices per H3 cell x day at the series' resolution (settings.h3_res), split by the coarse group
# of their home network (geo.networks.GROUPS: domestic, neighbouring, visitor, the migration-origin regions, other,
# unknown). Suppressed where it is made: each row above min_devices, and its cell-day's published total in DENSITY
# minus its published groups 0 or above min_devices (docs/privacy.md, "Aggregates by home-network group"). The
# MCC itself never leaves bronze. Not written under differential privacy.
DENSITY_BY_GROUP = pa.schema(
    [
        pa.field("cell", pa.int64(), nullable=False),
        pa.field("res", pa.int32(), nullable=False),
        pa.field("group", pa.string(), nullable=False),
        pa.field("devices", pa.int64(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
    ]
)

# Silver: transitions between consecutive route segments within one device-day (the daily pseudonym),
# counted as distinct devices and suppressed like density.
FLOWS_SEGMENT = pa.schema(
    [
        pa.field("from_route", pa.string(), nullable=False),
        pa.field("from_segment", pa.string(), nullable=False),
        pa.field("to_route", pa.string(), nullable=False),
        pa.field("to_segment", pa.string(), nullable=False),
        pa.field("devices", pa.int64(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
    ]
)

# Silver: transitions between H3 cells at a coarse resolution (settings.flow_res), suppressed like density.
FLOWS_CELL = pa.schema(
    [
        pa.field("from_cell", pa.int64(), nullable=False),
        pa.field("to_cell", pa.int64(), nullable=False),
        pa.field("res", pa.int32(), nullable=False),
        pa.field("devices", pa.int64(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
    ]
)

# Gold: the one long table every model reads. route_id/segment_id say where a series sits in the hierarchy.
SERIES = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("route_id", pa.string()),
        pa.field("segment_id", pa.string()),
        pa.field("ds", pa.date32(), nullable=False),
        pa.field("y", pa.float64(), nullable=False),
        pa.field("freq", pa.string(), nullable=False),  # D (daily) | W (weekly, Monday) | M (monthly, 1st)
        pa.field("source", pa.string(), nullable=False),
    ]
)

# Gold: people estimated from the group split of the density (forecasting.people), one row per estimate and day.
# measure: "present" (people on the route or segment that day, a stock: crossing_point_id null; segment_id null for
# the route's total), "crossing" (people crossing at a crossing point that day, a flow: arrivals at an entry point,
# departures at a departure point) or "ahead" (crossings expected on a day after the run date, from the people
# already on the route: a leading indicator). people/lo80/hi80 are null where the route is blind (not measured).
# feature and model_id say which signal and fitted parameters made the figure (the run's gold people_model.json).
PRESENT, CROSSING, AHEAD = "present", "crossing", "ahead"  # the values of PEOPLE's measure
PEOPLE = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("route_id", pa.string(), nullable=False),
        pa.field("segment_id", pa.string()),
        pa.field("crossing_point_id", pa.string()),
        pa.field("role", pa.string()),  # the crossing point's role (departure|landing|border), null for "present"
        pa.field("measure", pa.string(), nullable=False),
        pa.field("people", pa.float64()),
        pa.field("lo80", pa.float64()),
        pa.field("hi80", pa.float64()),
        pa.field("feature", pa.string()),
        pa.field("model_id", pa.string(), nullable=False),
    ]
)

# Data-quality and row-accounting checks, stored as data (one row per check and run).
QA_CHECKS = pa.schema(
    [
        pa.field("run_date", pa.date32(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("check", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)


# Published (store/releases/<id>/forecasts.parquet): what serving reads. Only ever made from suppressed data.
PUBLISHED_FORECAST = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("route_id", pa.string()),
        pa.field("segment_id", pa.string()),
        pa.field("freq", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("ds", pa.date32(), nullable=False),
        *[pa.field(c, pa.float64(), nullable=False) for c in FORECAST_VALUES],
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("release_id", pa.string(), nullable=False),
    ]
)

# Published (store/releases/<id>/totals.parquet): forecast totals of the next ``window`` periods of a series (e.g.
# the next 7 and 28 days), from ``start`` to ``end`` inclusive. Their intervals and quantiles are those of the
# total itself, calibrated on the errors of the same totals at past origins (never sums of daily bounds);
# ``n_scores`` is how many past totals that was. ``quantiles`` holds one value per contracts.published.TOTAL_QUANTILES.
PUBLISHED_TOTALS = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),
        pa.field("route_id", pa.string()),
        pa.field("segment_id", pa.string()),
        pa.field("freq", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("window", pa.int32(), nullable=False),
        pa.field("start", pa.date32(), nullable=False),
        pa.field("end", pa.date32(), nullable=False),
        *[pa.field(c, pa.float64(), nullable=False) for c in FORECAST_VALUES],
        pa.field("quantiles", pa.list_(pa.float64()), nullable=False),
        pa.field("n_scores", pa.int32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("release_id", pa.string(), nullable=False),
    ]
)

# Published (store/releases/<id>/history.parquet): the observed values of every published series, from the gold
# series table as the forecast stage read it (daily series the last 365 days, weekly/monthly the last 5 years).
PUBLISHED_HISTORY = pa.schema(
    [
        pa.field("series_id", pa.string(), nullable=False),
        pa.field("ds", pa.date32(), nullable=False),
        pa.field("y", pa.float64(), nullable=False),
    ]
)

# Published (store/releases/<id>/cells.parquet): silver density (already suppressed) of the 28 days up to the
# release's as_of in the cells of each route segment, at ROUTECAST_PUBLISH_CELL_RESOLUTIONS. cell is the H3 hex id;
# share is the cell's devices over those days / its segment's at that res (the shares of a (route, segment, res)
# add up to 1), for serving to spread a segment's forecast over its cells.
PUBLISHED_CELLS = pa.schema(
    [
        pa.field("route_id", pa.string(), nullable=False),
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("cell", pa.string(), nullable=False),
        pa.field("res", pa.int32(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("devices", pa.int64(), nullable=False),
        pa.field("excess", pa.float64()),
        pa.field("zscore", pa.float64()),
        pa.field("share", pa.float64(), nullable=False),
    ]
)


# Ground truth written by the simulator (var/truth/<table>), to score density and forecasts against.
TRUTH_SEGMENT_PEOPLE = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("route_id", pa.string(), nullable=False),
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("people", pa.int64(), nullable=False),
    ]
)

TRUTH_ARRIVALS = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("route_id", pa.string(), nullable=False),
        pa.field("crossing_point_id", pa.string(), nullable=False),
        pa.field("arrivals", pa.int64(), nullable=False),
    ]
)

# outcome: completed (reached the end of its path), diverted (left the route at a closed crossing),
# in_transit (still travelling at the end of the run).
TRUTH_JOURNEYS = pa.schema(
    [
        pa.field("agent_id", pa.int64(), nullable=False),
        pa.field("journey", pa.int32(), nullable=False),
        pa.field("route_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),  # segment ids in travel order, joined by '>'
        pa.field("departed", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("ended", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
    ]
)

# Agents setting sail from a departure point on a day (a sea leg starting there; see simulator/truth.py for how
# it differs from arrivals at the same point).
TRUTH_DEPARTURES = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("route_id", pa.string(), nullable=False),
        pa.field("crossing_point_id", pa.string(), nullable=False),
        pa.field("departures", pa.int64(), nullable=False),
    ]
)

# For checking a measurement model: agents with at least one phone on a segment on a day (counted as in
# segment_people), and the phones that sent at least one ping on that segment that day.
TRUTH_SEGMENT_PHONES = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("route_id", pa.string(), nullable=False),
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("people", pa.int64(), nullable=False),
        pa.field("phones_on", pa.int64(), nullable=False),
    ]
)


# The differential-privacy ledger (lake/privacy/ledger, partitioned by period; written by jobs.privacy.ledger): one row
# per charge of a release's epsilon against its period's budget. Append-only: a charge is never rewritten.
PRIVACY_LEDGER = pa.schema(
    [
        pa.field("period", pa.string(), nullable=False),  # YYYY-MM of data_date (settings.dp_period = month)
        pa.field("seq", pa.int32(), nullable=False),  # charge number within the period, from 1
        pa.field("release", pa.string(), nullable=False),  # e.g. density/2025-03-10
        pa.field("data_date", pa.date32(), nullable=False),
        pa.field("mechanism", pa.string(), nullable=False),  # laplace | gaussian
        pa.field("epsilon", pa.float64(), nullable=False),
        pa.field("delta", pa.float64(), nullable=False),  # 0 for laplace
        pa.field("fingerprint", pa.string(), nullable=False),  # keyed hash of the unnoised (suppressed) input
        pa.field("charged_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
