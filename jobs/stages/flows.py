"""Flows: bronze trajectories → silver transitions between route segments and between coarse H3 cells, per day,
suppressed like density; and gold segment → segment flow series.

Trajectory
    One device's pings of one date ordered by ``ts`` (the device id is a pseudonym that rotates daily, so a
    trajectory never spans two dates). Pings with the same ``ts`` are ordered by ``lat``, then ``lon``, so the
    result does not depend on how the input is partitioned or ordered.

Transition
    Each ping is mapped to a place (a route segment, or an H3 cell at ``settings.flow_res``); consecutive pings
    at the same place collapse into one visit, and every change of place A → B is a transition. A flow is the
    number of DISTINCT devices that made A → B on a day: a device going A → B twice that day counts once.

Suppression
    As for density (``jobs.privacy.suppression.suppress_small_counts``): only flows backed by more than
    ``settings.min_devices`` devices are written. Device ids stay in this job's memory; silver and gold hold
    counts only. No complementary suppression is needed: no published table nests flows. Cell flows are at one
    resolution and segment flows at one level; nothing publishes a total of flows (into, out of or through a place)
    to subtract them from; a gold flow series is one silver flow, not a sum; and a cell's density is not a sum of
    its flows (it also counts the devices that stayed, and a device with two flows out of a cell is in both), so
    density minus flows bounds nothing that was suppressed.

Gold
    For every route, each segment → segment flow within the route that was ever published becomes a daily
    series (level ``flow``, id ``flow:<route>/<from>><to>``, ``segment_id`` = the from segment), 0 on days
    without a published row, from the first day of silver flows to the run date. It is built from silver, not
    bronze, so it survives bronze retention.

Transform and run
    ``transform`` plans a window's flows from bronze pings (no reads, writes, accounting or Spark actions);
    ``flow_series`` the gold rows from silver. ``run`` reads the window, calls ``transform``, writes silver, rebuilds
    gold (``write_flow_series``) and reports (``FlowCounts``, the QA checks).
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import h3.api.basic_int as h3_int
import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.window import WindowSpec

from contracts import tables
from contracts.series import series_id
from geo.catalogue import Catalogue, load_catalogue
from geo.cells import cached_cell_segment_table, cell_segment_table
from jobs import lake
from jobs.lake import write_checks
from jobs.privacy.suppression import suppress_small_counts
from jobs.schemas import FLOWS_CELL, SERIES
from jobs.settings import JobSettings
from jobs.stages.aggregate import ping_cell

FLOWS_SOURCE = "flows"
FLOW_LEVEL = "flow"
# The place columns a transition is between: from_<key> → to_<key>.
SEGMENT_KEYS = ("seg",)  # a segment's number in segment_names()
CELL_KEYS = ("cell",)


def trajectory_order() -> WindowSpec:
    """One device-day in time order; ties on ``ts`` broken by position, so the order is deterministic."""
    return Window.partitionBy("device_id", "date").orderBy("ts", "lat", "lon")


def locate_segments(pings: DataFrame, cell_segments: pd.DataFrame, finest: int | None = None) -> DataFrame:
    """Pings with ``seg``, the row number in ``segment_names(cell_segments)`` of their segment; pings outside
    every corridor are dropped.

    ``cell_segments`` is geo's cell → segment table (``cell_segment_table``: cell, route_id, segment_id, one
    row per cell, all at one resolution). The lookup is a binary search over the sorted cells, vectorised per
    Arrow batch: the table travels with the function (a few MB at res 7) instead of being joined in Spark.
    """
    if cell_segments.empty:
        raise ValueError("cell_segments is empty: the catalogue has no corridor cells to map pings to")
    res = h3_int.get_resolution(int(cell_segments["cell"].iloc[0]))
    names = segment_names(cell_segments)
    seg = pd.MultiIndex.from_frame(cell_segments[["route_id", "segment_id"]]).map(
        {name: i for i, name in enumerate(names)}
    )
    by_cell = np.argsort(cell_segments["cell"].to_numpy(), kind="stable")
    cells = cell_segments["cell"].to_numpy(dtype=np.int64)[by_cell]
    owner = np.asarray(seg, dtype=np.int32)[by_cell]

    @pandas_udf("int")
    def _segment_of(cell: pd.Series) -> pd.Series:
        wanted = cell.to_numpy(dtype=np.int64)
        at = np.minimum(np.searchsorted(cells, wanted), len(cells) - 1)
        return pd.Series(np.where(cells[at] == wanted, owner[at], -1), dtype="int32")

    cell = ping_cell(res, max(res, finest or res))
    return pings.select("device_id", "date", "ts", "lat", "lon", _segment_of(cell).alias("seg")).where(
        F.col("seg") >= 0
    )


def segment_names(cell_segments: pd.DataFrame) -> list[tuple[str, str]]:
    """The distinct (route_id, segment_id) of a cell → segment table, sorted: what ``seg`` numbers."""
    return sorted(
        {(str(r), str(s)) for r, s in zip(cell_segments["route_id"], cell_segments["segment_id"], strict=True)}
    )


def locate_cells(pings: DataFrame, res: int, finest: int | None = None) -> DataFrame:
    """Pings with their H3 ``cell`` (int64) at ``res``: the parent of their cell at ``finest`` (the aggregate
    job's finest resolution), so flows and density put a ping in the same cell."""
    cell = ping_cell(res, max(res, finest or res))
    return pings.select("device_id", "date", "ts", "lat", "lon", cell.alias("cell"))


def device_transitions(located: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    """One row per (device_id, date, from_<keys>, to_<keys>) the device made at least once that day.

    Consecutive pings (``trajectory_order``) at the same place form one visit; each change of place is a
    transition. Device ids are still here: never write this frame.
    """
    order = trajectory_order()
    moves = located.select(
        "device_id",
        "date",
        *[F.lag(k).over(order).alias(f"from_{k}") for k in keys],
        *[F.col(k).alias(f"to_{k}") for k in keys],
    )
    changed = functools.reduce(operator.or_, [F.col(f"from_{k}") != F.col(f"to_{k}") for k in keys])
    # The first ping of a day has no predecessor (null from_*), so its comparison is null and it is dropped.
    return moves.where(changed).distinct()


def count_devices(transitions: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    """Distinct devices per (date, from, to) — unsuppressed, so never written as is."""
    places = [f"{side}_{k}" for side in ("from", "to") for k in keys]
    return transitions.groupBy("date", *places).agg(F.count(F.lit(1)).alias("devices"))


def segment_transitions(pings: DataFrame, cell_segments: pd.DataFrame) -> DataFrame:
    """Unsuppressed segment → segment flows per day, in the columns of ``FLOWS_SEGMENT``.

    ``cell_segments`` is geo's cell → segment table (see ``locate_segments``); pings are mapped at its
    resolution. Pings outside every corridor are skipped: A, outside, B is the transition A → B, and
    A, outside, A none.
    """
    moves = device_transitions(locate_segments(pings, cell_segments), SEGMENT_KEYS)
    return _with_names(count_devices(moves, SEGMENT_KEYS), segment_names(cell_segments))


def cell_transitions(pings: DataFrame, res: int) -> DataFrame:
    """Unsuppressed H3 cell → cell flows per day at ``res``, in the columns of ``FLOWS_CELL`` (every ping counts)."""
    return _with_res(count_devices(device_transitions(locate_cells(pings, res), CELL_KEYS), CELL_KEYS), res)


def cell_segment_table_for(res: int, catalogue: Catalogue | None = None) -> pd.DataFrame:
    """geo's cell → segment table at ``res``; the packaged catalogue's is memoised per process."""
    return cached_cell_segment_table(res) if catalogue is None else cell_segment_table(catalogue, res)


def flow_series(flows: DataFrame, keys: DataFrame, start: dt.date, end: dt.date) -> DataFrame:
    """Gold rows (``SERIES``) of the flow series in ``keys`` (series_id, route_id, from_segment, to_segment) for
    every day from ``start`` to ``end``: the published devices that day, else 0. ``flows`` is silver
    ``FLOWS_SEGMENT``."""
    spark = flows.sparkSession
    days = spark.sql(f"SELECT explode(sequence(DATE'{start}', DATE'{end}', INTERVAL 1 DAY)) AS ds")
    values = flows.where(F.col("from_route") == F.col("to_route")).select(
        F.col("from_route").alias("route_id"),
        "from_segment",
        "to_segment",
        F.col("date").alias("ds"),
        F.col("devices").cast("double").alias("y"),
    )
    return (
        keys.crossJoin(days)
        .join(values, ["route_id", "from_segment", "to_segment", "ds"], "left")
        .select(
            "series_id",
            F.lit(FLOW_LEVEL).alias("level"),
            "route_id",
            F.col("from_segment").alias("segment_id"),
            "ds",
            F.coalesce(F.col("y"), F.lit(0.0)).alias("y"),
            F.lit("D").alias("freq"),
            F.lit(FLOWS_SOURCE).alias("source"),
        )
    )


def flow_series_keys(
    published: Iterable[tuple[str, str, str, str]], catalogue: Catalogue
) -> list[tuple[str, str, str, str]]:
    """The (series_id, route_id, from_segment, to_segment) of the flow series, sorted, from the (from_route,
    from_segment, to_route, to_segment) flows ever published.

    Only transitions between consecutive legs of a route (``Route.successions``: B starts at a place on A) become
    series: the others — sibling legs out of one hub, or back the way one came — are mostly residents whose
    position jitters across corridor edges, not journeys. They stay in silver.
    """
    forward = {(r.id, a, b) for r in catalogue for a, b in r.successions()}
    return sorted(
        (series_id(FLOW_LEVEL, from_route, from_segment, to_segment=to_segment), from_route, from_segment, to_segment)
        for from_route, from_segment, to_route, to_segment in published
        if from_route == to_route and (from_route, from_segment, to_segment) in forward
    )


def write_flow_series(
    spark: SparkSession, settings: JobSettings, run_date: dt.date, catalogue: Catalogue | None = None
) -> int:
    """Rebuild the gold flow series up to ``run_date`` from silver (replaces the ``source=flows`` partition);
    returns the number of rows written. With no published flow yet, the partition is emptied. Which flows become
    series: ``flow_series_keys``.
    """
    catalogue = catalogue or load_catalogue()
    flows = lake.read(spark, settings, tables.FLOWS_SEGMENT).where(F.col("date") <= F.lit(run_date))
    # One small job: every flow ever published with its first day (the series start at the earliest of all).
    published = flows.groupBy("from_route", "from_segment", "to_route", "to_segment").agg(F.min("date").alias("first"))
    rows = published.collect()
    keys = flow_series_keys(((r.from_route, r.from_segment, r.to_route, r.to_segment) for r in rows), catalogue)
    replace = {"source": [FLOWS_SOURCE]}
    if not keys:
        lake.write(settings, tables.SERIES, spark.createDataFrame([], SERIES), replace=replace)
        return 0
    key_frame = spark.createDataFrame(keys, "series_id string, route_id string, from_segment string, to_segment string")
    first = min(r.first for r in rows)
    lake.write(settings, tables.SERIES, flow_series(flows, key_frame, first, run_date), replace=replace)
    return len(keys) * ((run_date - first).days + 1)


@dataclass(frozen=True)
class FlowCounts:
    device_days: int  # trajectories read from bronze (distinct device_id x date)
    segment_device_days: int  # of which made at least one segment → segment transition
    segment_transitions: int  # (date, from, to) flows found, before suppression
    segment_published: int
    segment_suppressed: int
    cell_device_days: int  # of which made at least one cell → cell transition at flow_res
    cell_transitions: int
    cell_published: int
    cell_suppressed: int
    series_rows: int = 0  # gold flow series rows written (every series x day)


@dataclass(frozen=True)
class Flows:
    """A window's flows as ``transform`` plans them: nothing of it is written.

    ``segment`` and ``cell`` are the publishable flows (``FLOWS_SEGMENT`` and ``FLOWS_CELL`` rows, suppressed).
    ``segment_flows`` and ``cell_flows`` are every flow before suppression, and ``segment_moves`` and ``cell_moves``
    the device transitions they count (device ids: never written): for the row accounting only, and cached.
    """

    segment: DataFrame
    cell: DataFrame
    segment_flows: DataFrame
    cell_flows: DataFrame
    segment_moves: DataFrame
    cell_moves: DataFrame

    def unpersist(self) -> None:
        """Free what the transform cached (once the output is written and counted)."""
        for frame in (self.segment_moves, self.segment_flows, self.cell_moves, self.cell_flows):
            frame.unpersist()


def _refuse_dp(settings: JobSettings) -> None:
    if settings.dp_mechanism != "none":
        raise ValueError(
            f"flows are not computed under differential privacy (dp_mechanism={settings.dp_mechanism!r}): their "
            "counts are not in the privacy accounting; skip the flows stage or set dp_mechanism=none"
        )


def transform(pings: DataFrame, cell_segments: pd.DataFrame, settings: JobSettings) -> Flows:
    """Bronze pings of a window → its segment → segment flows (``cell_segments``: geo's cell → segment table, see
    ``locate_segments``) and its cell → cell flows at ``settings.flow_res``, suppressed.

    A ping's cell is the parent of its cell at the finest resolution, as in the density. Refused under
    differential privacy: flow counts get no noise and are not in the privacy accounting.
    """
    _refuse_dp(settings)
    finest = max(settings.resolutions)
    segment_moves = device_transitions(locate_segments(pings, cell_segments, finest), SEGMENT_KEYS).cache()
    segment_flows = _with_names(count_devices(segment_moves, SEGMENT_KEYS), segment_names(cell_segments)).cache()
    cell_moves = device_transitions(locate_cells(pings, settings.flow_res, finest), CELL_KEYS).cache()
    cell_flows = _with_res(count_devices(cell_moves, CELL_KEYS), settings.flow_res).cache()
    return Flows(
        segment=suppress_small_counts(segment_flows, settings.min_devices),
        cell=suppress_small_counts(cell_flows, settings.min_devices),
        segment_flows=segment_flows,
        cell_flows=cell_flows,
        segment_moves=segment_moves,
        cell_moves=cell_moves,
    )


def run(
    spark: SparkSession,
    settings: JobSettings,
    run_date: dt.date,
    since: dt.date | None = None,
    catalogue: Catalogue | None = None,
) -> FlowCounts:
    """Flows of the bronze dates from ``since`` (default: the retention window) to ``run_date`` into silver,
    then the gold flow series up to ``run_date``; idempotent (replaces those dates and ``source=flows``).

    ``catalogue`` defaults to the packaged routes. Refused under differential privacy before anything is read:
    flow counts get no noise and are not in the privacy accounting, so they must not be published then.
    """
    _refuse_dp(settings)
    first, last = settings.window(run_date, since)
    pings = (
        lake.read(spark, settings, tables.BRONZE_PINGS)
        .where(F.col("date").between(F.lit(first), F.lit(last)))
        .select("device_id", "date", "ts", "lat", "lon")
    )
    per_date = pings.groupBy("date").agg(F.countDistinct("device_id").alias("n")).collect()
    dates = sorted(r["date"] for r in per_date)
    planned = transform(pings, cell_segment_table_for(settings.h3_res, catalogue), settings)
    try:
        for table, frame in ((tables.FLOWS_SEGMENT, planned.segment), (tables.FLOWS_CELL, planned.cell)):
            lake.write(settings, table, frame, replace={"date": dates}, one_file_per_partition=True)
        segment = _tally(planned.segment_moves, planned.segment_flows, settings.min_devices)
        cell = _tally(planned.cell_moves, planned.cell_flows, settings.min_devices)
    finally:
        planned.unpersist()

    result = FlowCounts(
        device_days=sum(r["n"] for r in per_date),
        **{f"segment_{k}": v for k, v in segment.items()},
        **{f"cell_{k}": v for k, v in cell.items()},
        series_rows=write_flow_series(spark, settings, run_date, catalogue),
    )
    write_checks(
        spark,
        settings.lake(tables.QA_CHECKS),
        run_date,
        "flows",
        {
            **asdict(result),
            "dates": len(dates),
            "h3_res": settings.h3_res,
            "flow_res": settings.flow_res,
            "min_devices": settings.min_devices,
        },
    )
    return result


def _with_names(segment_counts: DataFrame, names: list[tuple[str, str]]) -> DataFrame:
    """Segment numbers (from_seg, to_seg) → route and segment ids, in the columns of ``FLOWS_SEGMENT``."""
    routes = F.array(*[F.lit(route) for route, _ in names])
    segments = F.array(*[F.lit(segment) for _, segment in names])
    return segment_counts.select(
        *[
            F.get(ids, F.col(f"{side}_seg")).alias(f"{side}_{kind}")
            for side in ("from", "to")
            for ids, kind in ((routes, "route"), (segments, "segment"))
        ],
        "devices",
        "date",
    )


def _with_res(cell_counts: DataFrame, res: int) -> DataFrame:
    return cell_counts.withColumn("res", F.lit(res)).select(*FLOWS_CELL.fieldNames())


def _tally(moves: DataFrame, flows: DataFrame, min_devices: int) -> dict[str, int]:
    """device_days, transitions, published, suppressed of one kind of flow."""
    published = F.coalesce(F.sum((F.col("devices") > F.lit(min_devices)).cast("int")), F.lit(0))
    totals = flows.agg(F.count(F.lit(1)).alias("found"), published.alias("published")).first()
    return {
        "device_days": moves.select("device_id", "date").distinct().count(),
        "transitions": totals["found"],
        "published": totals["published"],
        "suppressed": totals["found"] - totals["published"],
    }
