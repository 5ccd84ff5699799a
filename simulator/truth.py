"""The ground truth behind the pings (``var/truth``), and how well the published density tracks it.

Consistent with the pings by construction:

- ``segment_people``: agents on a segment on a day. An agent counts once per day, on the segment of the leg it
  is on at the first moment of that day it is travelling (so per day the segments add up to the agents in
  transit, and every ping of an agent falls on a day it is counted).
- ``arrivals``: agents passing a crossing point on a day — the moment the agent's position passes the point
  along its segment: landing for a landing site, crossing for a border post, leaving (setting sail, setting
  off) for a departure point or a hub at a segment's start.
- ``journeys``: one row per agent and journey (a diverted agent has two), with its outcome.
- ``departures``: agents setting sail from a departure point on a day: a sea leg starting at the point (the
  nearest departure point within ``DEPARTURE_TOL_KM`` of the leg's first place), on the day the agent sets
  off (``t_move``). Unlike ``arrivals`` at the same point, which counts whoever passes it along its own
  segment (by road past Sabratha, by boat past Dakar), it counts only people leaving from it by sea; where
  the point is the first place of its segment and only sea legs start there (Zuwara), the two agree.
- ``segment_phones``: for checking a measurement model, per segment and day the agents with at least one phone
  (counted as in ``segment_people``) and the phones that sent at least one ping on a leg of that segment
  that day (after losses and coverage; an agent changing segment during a day can count on both).

``truth_correlation`` scores the pipeline's gold density series against ``segment_people``, per route.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from contracts import tables
from contracts.series import DENSITY_SOURCE
from jobs.lake import read_table
from jobs.schemas import SERIES, TRUTH_SEGMENT_PEOPLE
from jobs.settings import JobSettings
from simulator.journeys import FRACTION_TOL
from simulator.model import Model, epoch_seconds
from simulator.world import crossing_fraction


def _segments_df(spark: SparkSession, model: Model) -> DataFrame:
    return spark.createDataFrame(
        [(i, r, s) for i, (r, s, _) in enumerate(model.segments)], "seg_idx int, route_id string, segment_id string"
    )


def _days_frame(spark: SparkSession, days: int) -> DataFrame:
    return spark.range(days).select(F.col("id").cast("int").alias("day"))


def _date(start: dt.date, day: Column) -> Column:
    return F.date_add(F.lit(start), day.cast("int"))


def _people_counts(legs: DataFrame, days: int) -> DataFrame:
    """``seg_idx, day, people``: the days a leg owns, counted (only days with people)."""
    # A leg owns the days whose first travelling moment falls in it: day floor(t_enter) for a journey's first
    # leg (the journey starts mid-day), day d for later legs when t_enter <= d < t_exit.
    lo = F.when(F.col("leg") == 0, F.floor("t_enter")).otherwise(F.ceil("t_enter"))
    hi = F.ceil("t_exit") - 1
    return (
        legs.select("seg_idx", F.greatest(lo, F.lit(0)).alias("lo"), F.least(hi, F.lit(days - 1)).alias("hi"))
        .where(F.col("lo") <= F.col("hi"))
        .select("seg_idx", F.explode(F.sequence(F.col("lo").cast("int"), F.col("hi").cast("int"))).alias("day"))
        .groupBy("seg_idx", "day")
        .agg(F.count(F.lit(1)).alias("people"))
    )


def truth_segment_people(spark: SparkSession, legs: DataFrame, model: Model) -> DataFrame:
    """Agents per segment per day (``TRUTH_SEGMENT_PEOPLE``), zero-filled, for the simulated days."""
    counts = _people_counts(legs, model.days)
    grid = _segments_df(spark, model).crossJoin(_days_frame(spark, model.days))
    return grid.join(counts, ["seg_idx", "day"], "left").select(
        _date(model.start, F.col("day")).alias("date"),
        "route_id",
        "segment_id",
        F.coalesce("people", F.lit(0)).cast("long").alias("people"),
    )


def _crossings_df(spark: SparkSession, model: Model) -> DataFrame:
    seg_index = model.seg_index()
    rows = []
    for route in model.catalogue:
        for cp in route.crossing_points:
            f = crossing_fraction(route, cp)
            f = -1.0 if f is None else f  # -1: off its segment's line, never passed
            rows.append((seg_index[route.id, cp.segment_id], route.id, cp.id, f))
    return spark.createDataFrame(rows, "seg_idx int, route_id string, crossing_point_id string, f double")


def truth_arrivals(spark: SparkSession, legs: DataFrame, model: Model) -> DataFrame:
    """Agents passing each crossing point per day (``TRUTH_ARRIVALS``), zero-filled, for the simulated days."""
    crossings = _crossings_df(spark, model)
    moved = legs.where(F.col("t_exit") > F.col("t_move")).select("seg_idx", "f_start", "f_end", "t_move", "t_exit")
    frac = F.least(
        F.greatest((F.col("f") - F.col("f_start")) / (F.col("f_end") - F.col("f_start")), F.lit(0.0)), F.lit(1.0)
    )
    passing = F.floor(F.col("t_move") + frac * (F.col("t_exit") - F.col("t_move"))).cast("int")
    tol = F.lit(FRACTION_TOL)
    counts = (
        moved.join(F.broadcast(crossings.select("seg_idx", "crossing_point_id", "f")), "seg_idx")
        .where((F.col("f") >= F.col("f_start") - tol) & (F.col("f") <= F.col("f_end") + tol))
        .select("crossing_point_id", "seg_idx", passing.alias("day"))
        .where((F.col("day") >= 0) & (F.col("day") < model.days))
        .groupBy("seg_idx", "crossing_point_id", "day")
        .agg(F.count(F.lit(1)).alias("arrivals"))
    )
    grid = crossings.select("seg_idx", "route_id", "crossing_point_id").crossJoin(_days_frame(spark, model.days))
    return grid.join(counts, ["seg_idx", "crossing_point_id", "day"], "left").select(
        _date(model.start, F.col("day")).alias("date"),
        "route_id",
        "crossing_point_id",
        F.coalesce("arrivals", F.lit(0)).cast("long").alias("arrivals"),
    )


def truth_departures(spark: SparkSession, legs: DataFrame, model: Model) -> DataFrame:
    """Agents setting sail from each departure point per day (``TRUTH_DEPARTURES``), zero-filled."""
    departing = spark.createDataFrame(
        [tuple(r) for r in model.departure_legs.itertuples(index=False)],
        "path_idx int, leg int, route_id string, crossing_point_id string",
    )
    day = F.floor("t_move").cast("int")
    counts = (
        legs.where(F.col("t_exit") > F.col("t_move"))  # not an agent stopped by a closure before sailing
        .select("path_idx", "leg", day.alias("day"))
        .where((F.col("day") >= 0) & (F.col("day") < model.days))
        .join(F.broadcast(departing), ["path_idx", "leg"])
        .groupBy("route_id", "crossing_point_id", "day")
        .agg(F.count(F.lit(1)).alias("departures"))
    )
    points = spark.createDataFrame(
        [(r.id, cp.id) for r in model.catalogue for cp in r.crossing_points if cp.role == "departure"],
        "route_id string, crossing_point_id string",
    )
    grid = points.crossJoin(_days_frame(spark, model.days))
    return grid.join(counts, ["route_id", "crossing_point_id", "day"], "left").select(
        _date(model.start, F.col("day")).alias("date"),
        "route_id",
        "crossing_point_id",
        F.coalesce("departures", F.lit(0)).cast("long").alias("departures"),
    )


def truth_segment_phones(spark: SparkSession, legs: DataFrame, phone_pings: DataFrame, model: Model) -> DataFrame:
    """Per segment and day (``TRUTH_SEGMENT_PHONES``, zero-filled): agents carrying at least one phone, and the
    phones that pinged on it. ``phone_pings`` is ``simulator.pings.migrant_phone_pings``."""
    people = _people_counts(legs.where(F.col("phones") > 0), model.days)
    phones = phone_pings.groupBy("seg_idx", "day").agg(F.countDistinct("agent_id", "phone").alias("phones_on"))
    grid = _segments_df(spark, model).crossJoin(_days_frame(spark, model.days))
    return (
        grid.join(people, ["seg_idx", "day"], "left")
        .join(phones, ["seg_idx", "day"], "left")
        .select(
            _date(model.start, F.col("day")).alias("date"),
            "route_id",
            "segment_id",
            F.coalesce("people", F.lit(0)).cast("long").alias("people"),
            F.coalesce("phones_on", F.lit(0)).cast("long").alias("phones_on"),
        )
    )


def truth_journeys(spark: SparkSession, legs: DataFrame, model: Model) -> DataFrame:
    """One row per agent and journey (``TRUTH_JOURNEYS``), warm-up journeys included."""
    routes = spark.createDataFrame(list(enumerate(model.catalogue.route_ids())), "route_idx int, route_id string")
    paths = spark.createDataFrame([(i, p.name) for i, p in enumerate(model.paths)], "path_idx int, path string")
    start_s = epoch_seconds(model.start)
    journeys = legs.groupBy("agent_id", "journey", "route_idx", "path_idx").agg(
        F.min("t_enter").alias("t0"),
        F.max("t_exit").alias("t1"),
        F.max(F.col("final").cast("int")).alias("completed"),
        F.max(F.col("diverted").cast("int")).alias("diverted"),
    )
    outcome = (
        F.when(F.col("diverted") == 1, F.lit("diverted"))
        .when((F.col("completed") == 1) & (F.col("t1") < model.days), F.lit("completed"))
        .otherwise(F.lit("in_transit"))
    )
    return (
        journeys.join(F.broadcast(routes), "route_idx")
        .join(F.broadcast(paths), "path_idx")
        .select(
            "agent_id",
            "journey",
            "route_id",
            "path",
            F.timestamp_seconds(F.lit(start_s) + F.floor(F.col("t0") * 86400)).alias("departed"),
            F.timestamp_seconds(F.lit(start_s) + F.floor(F.col("t1") * 86400)).alias("ended"),
            outcome.alias("outcome"),
        )
    )


# --- scoring density against the truth ----------------------------------------------------------------------


def truth_correlation(spark: SparkSession, settings: JobSettings, run_date: dt.date) -> pd.DataFrame:
    """Per route, Pearson r between the published density excess and the true number of people on the route.

    Density: the gold ``route:<id>`` series (suppressed, residents included) up to ``run_date``. Its excess is
    the series minus its median on the same weekday over the compared days — the residents' weekly rhythm,
    the part of the series that is not migrants. Truth: ``segment_people`` summed over the route's segments.
    Days in both are compared. Returns ``route_id, pearson_r, days`` (r is NaN when a side is constant).
    """
    gold = (
        read_table(spark, settings.lake(tables.SERIES), SERIES)
        .where((F.col("level") == "route") & (F.col("source") == DENSITY_SOURCE) & (F.col("ds") <= F.lit(run_date)))
        .select("route_id", F.col("ds").alias("date"), "y")
        .toPandas()
    )
    truth = (
        spark.read.schema(TRUTH_SEGMENT_PEOPLE)
        .parquet(str(settings.truth_dir / "segment_people"))
        .where(F.col("date") <= F.lit(run_date))
        .groupBy("route_id", "date")
        .agg(F.sum("people").cast("double").alias("people"))
        .toPandas()
    )
    both = gold.merge(truth, on=["route_id", "date"], how="inner")
    rows = []
    for route_id, g in both.groupby("route_id", sort=True):
        weekday = pd.to_datetime(g["date"]).dt.weekday
        excess = g["y"] - g.groupby(weekday)["y"].transform("median")
        r = float(np.corrcoef(excess, g["people"])[0, 1]) if excess.std() > 0 and g["people"].std() > 0 else math.nan
        rows.append((route_id, r, len(g)))
    return pd.DataFrame(rows, columns=["route_id", "pearson_r", "days"])
