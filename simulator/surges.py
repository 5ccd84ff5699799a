"""Surges of departures ([[surges]] in the config): more people setting sail from a route's coast for some weeks.

A surge multiplies the people on every boat leaving a departure point of its route (or of one crossing point) while
it lasts. The extra people are copies of the agents sailing then: the legs of that journey from the boat on, under
new agent ids (``copy_offset``), with the same times, path and phones. Nobody else changes, so a run with a surge and
one without, from the same seed, differ by the surge alone (what the scenario engine's surges are checked against,
``jobs.analysis.counterfactual``). A factor of 2.5 gives every sailing agent one copy and half of them a second; which
ones is a hash of the agent id (``Stream.SURGE``).
"""

from __future__ import annotations

import math

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from geo.catalogue import Catalogue, load_catalogue
from simulator.config import SimulatorConfig, SimulatorConfigError
from simulator.draws import Stream, spark_uniform
from simulator.model import Model

__all__ = ["COPY_SHIFT", "check_surges", "copy_offset", "surged_legs"]

# Agent ids are route_key << 40 | n with n far below 2**32; the k-th copy of an agent is id + k << COPY_SHIFT, so
# copies never meet an original or each other (k < 256: at most 8 surges x 31 copies).
COPY_SHIFT = 32
_COPIES_PER_SURGE = 32


def copy_offset(surge: int, copy: int) -> int:
    """What the ``copy``-th copy (0-based) made by the ``surge``-th surge adds to its agent's id."""
    return (surge * _COPIES_PER_SURGE + copy + 1) << COPY_SHIFT


def check_surges(cfg: SimulatorConfig, catalogue: Catalogue) -> tuple[str, ...]:
    """Refuse surges of an unknown route or of a crossing point that is not one of its departure points
    (``SimulatorConfigError``); notes on those skipped because their route is not simulated."""
    if len(cfg.surges) * _COPIES_PER_SURGE >= 1 << (40 - COPY_SHIFT):
        raise SimulatorConfigError(f"at most {(1 << (40 - COPY_SHIFT)) // _COPIES_PER_SURGE - 1} surges")
    skipped = []
    for i, s in enumerate(cfg.surges):
        where = f"surges[{i}] ({s.route})"
        if math.ceil(s.factor - 1.0) >= _COPIES_PER_SURGE:
            raise SimulatorConfigError(f"{where}: factor {s.factor} is too large")
        if s.route not in catalogue.route_ids():
            if s.route in load_catalogue().route_ids():
                skipped.append(f"surge of {s.route} (the route is not simulated)")
                continue
            raise SimulatorConfigError(f"{where}: unknown route {s.route!r}")
        if s.crossing is not None:
            departures = [cp.id for cp in catalogue.route(s.route).crossing_points if cp.role == "departure"]
            if s.crossing not in departures:
                raise SimulatorConfigError(
                    f"{where}: {s.crossing!r} is not a departure point of the route; "
                    f"its departure points: {', '.join(departures) or 'none'}"
                )
    return tuple(skipped)


def surged_legs(spark: SparkSession, legs: DataFrame, model: Model) -> DataFrame:
    """``legs`` (``simulator.journeys.LEGS``) plus, for each surge, the copies of the agents sailing from its
    departure points while it lasts (their legs from that boat on)."""
    simulated = set(model.catalogue.route_ids())
    surges = [(i, s) for i, s in enumerate(model.cfg.surges) if s.route in simulated]
    if not surges or model.departure_legs.empty:
        return legs
    boats = spark.createDataFrame(model.departure_legs[["path_idx", "leg", "route_id", "crossing_point_id"]])
    out = legs
    for i, s in surges:
        at = boats.where(F.col("route_id") == s.route)
        if s.crossing is not None:
            at = at.where(F.col("crossing_point_id") == s.crossing)
        end = s.start_day + 7.0 * s.weeks
        sailing = (
            legs.join(F.broadcast(at.select("path_idx", "leg")), ["path_idx", "leg"])
            .where((F.col("t_move") >= s.start_day) & (F.col("t_move") < end) & ~F.col("diverted"))
            .select("agent_id", "journey", F.col("leg").alias("boat_leg"))
        )
        for c in range(math.ceil(s.factor - 1.0)):
            share = min(1.0, s.factor - 1.0 - c)
            chosen = sailing.where(
                spark_uniform(model.cfg.seed, Stream.SURGE, F.col("agent_id"), F.lit(i), F.lit(c)) < share
            )
            copies = (
                legs.join(chosen, ["agent_id", "journey"])
                .where(F.col("leg") >= F.col("boat_leg"))
                .drop("boat_leg")
                .withColumn("agent_id", F.col("agent_id") + F.lit(copy_offset(i, c)).cast("long"))
            )
            out = out.unionByName(copies)
    return out
