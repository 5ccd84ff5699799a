"""The agent logic: from (agent, route, departure time) to the legs of its journeys, vectorised over a batch.

Each agent draws a path through its route and, per leg, a wait at the leg's start (Erlang-2 around the mean
dwell) and a speed from its travel mode; boats leave in the evening of the next good-weather day. An agent who
would pass a closed crossing point waits until it reopens (plus a backlog wait) or, with the closure's
``divert_share``, stops there and starts a second journey on ``to_route`` ``lag_days`` later.

Phones: an agent carries 0, 1 or 2 phones (``[migrant_phones] carried``), each starting on the home network.
When the agent enters a country (a leg starting there after legs elsewhere), each phone buys that country's SIM
with ``local_sim_share``, an Erlang-2 delay (``local_sim_days``) later if the agent is still in the country by
then; it keeps the last SIM bought (a diverted agent's second journey carries its phones on). A leg row carries,
per phone, the network at the leg's start (``mcc0``, ``mcc1``) and when it switches to ``local_mcc`` during
the leg (``switch0``, ``switch1``; NO_SWITCH when it does not).

The draws are hashes of the agent id (``simulator.draws``), so a batch gives the same legs however agents are
grouped. ``legs_frame`` runs this on the executors (``mapInPandas``) over the run's cohorts.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from simulator.draws import Stream, erlang2, hash_normal, hash_uniform, spark_uniform
from simulator.model import ItineraryPlan, Model, spark_partitions

# One row per agent, journey and leg (a leg is one segment, or part of one, travelled in one go).
LEGS = StructType(
    [
        StructField("agent_id", LongType(), False),
        StructField("journey", IntegerType(), False),
        StructField("route_idx", IntegerType(), False),
        StructField("path_idx", IntegerType(), False),
        StructField("leg", IntegerType(), False),
        StructField("seg_idx", IntegerType(), False),
        StructField("f_start", DoubleType(), False),  # position along the segment line, 0..1
        StructField("f_end", DoubleType(), False),
        StructField("t_enter", DoubleType(), False),  # reaches the leg's start (days since the first day)
        StructField("t_move", DoubleType(), False),  # stops waiting and sets off
        StructField("t_exit", DoubleType(), False),  # reaches the leg's end (= t_move when diverted here)
        StructField("final", BooleanType(), False),  # the last leg of a completed path
        StructField("diverted", BooleanType(), False),
        StructField("ping_share", DoubleType(), False),  # share of the usual pings while moving
        StructField("mcc", StringType(), False),  # the home network
        StructField("km", DoubleType(), False),  # the leg's length
        StructField("sea", BooleanType(), False),  # travelled by boat
        StructField("phones", IntegerType(), False),  # phones the agent carries, 0..MAX_PHONES
        StructField("local_mcc", StringType(), False),  # the network of the country the leg starts in
        StructField("mcc0", StringType(), False),  # phone 0's network at the leg's start
        StructField("switch0", DoubleType(), False),  # when phone 0 moves to local_mcc during the leg
        StructField("mcc1", StringType(), False),
        StructField("switch1", DoubleType(), False),
    ]
)
MAX_PHONES = 2
NO_SWITCH = 1e9  # a switch time after any run

FRACTION_TOL = 1e-6  # a crossing point this close to a leg's end (as a fraction of its segment) is on the leg


def _sail(
    plan: ItineraryPlan, ready: np.ndarray, route: np.ndarray, hour: np.ndarray, jitter: np.ndarray
) -> np.ndarray:
    """The first evening departure at or after ``ready`` on a good-weather day."""
    at = hour / 24.0 + (jitter - 0.5) * (3.0 / 24.0)
    day = np.ceil(ready - at).astype(np.int64)
    col = day + plan.warmup
    inside = (col >= 0) & (col < plan.next_good.shape[1])
    good = day.copy()
    good[inside] = plan.next_good[route[inside], col[inside]]
    return good + at


def _journey_legs(
    plan: ItineraryPlan,
    agent_id: np.ndarray,
    route: np.ndarray,
    t0: np.ndarray,
    journey: int,
    mcc: np.ndarray,
    sims: np.ndarray,
    phones: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Legs of one journey per agent; also, per agent, when it diverted (NaN if not), to which route, lag.

    ``sims`` [agent, phone] holds each phone's network and is updated in place as local SIMs are bought."""
    n = len(agent_id)
    country = np.full(n, None, dtype=object)  # the local network of the country the agent is in
    pending = np.full((n, MAX_PHONES), np.inf)  # when a phone will get the local SIM (inf: not buying)
    jk = journey * 1000  # a second journey draws from fresh streams
    seed = plan.seed
    path = np.zeros(n, dtype=np.int64)
    u_path = hash_uniform(seed, Stream.PATH, agent_id, jk)
    for r in np.unique(route):
        m = route == r
        cum = plan.path_cum[r]
        path[m] = plan.path_lo[r] + np.minimum(np.searchsorted(cum, u_path[m], side="right"), len(cum) - 1)
    t = t0.astype(np.float64).copy()
    alive = np.ones(n, dtype=bool)
    div_time = np.full(n, np.nan)
    div_to = np.full(n, -1, dtype=np.int64)
    div_lag = np.zeros(n, dtype=np.int64)
    frames = []
    for k in range(plan.max_legs):
        idx = np.flatnonzero(alive & (k < plan.n_legs[path]))
        if idx.size == 0:
            break
        ids, p, r = agent_id[idx], path[idx], route[idx]
        seg, fs, fe = plan.leg_seg[p, k], plan.leg_fs[p, k], plan.leg_fe[p, k]
        mode = plan.leg_mode[p, k]
        enter = t[idx]
        dwell = erlang2(
            plan.leg_dwell[p, k],
            hash_uniform(seed, Stream.DWELL1, ids, jk + k),
            hash_uniform(seed, Stream.DWELL2, ids, jk + k),
        )
        speed = plan.mode_speed[mode] * np.exp(plan.mode_spread[mode] * hash_normal(seed, Stream.SPEED1, ids, jk + k))
        travel = plan.leg_km[p, k] / speed
        boat = plan.mode_hour[mode] >= 0
        sail_jitter = hash_uniform(seed, Stream.SAIL, ids, jk + k)
        move = enter + dwell
        if boat.any():
            move[boat] = _sail(plan, move[boat], r[boat], plan.mode_hour[mode][boat], sail_jitter[boat])
        diverted = np.zeros(idx.size, dtype=bool)
        for c_i, c in enumerate(plan.closures):
            on = (seg == c.seg_idx) & (fs <= c.f + FRACTION_TOL) & (fe >= c.f - FRACTION_TOL) & ~diverted
            if not on.any():
                continue
            frac = np.clip((c.f - fs) / np.maximum(fe - fs, 1e-12), 0.0, 1.0)
            passing = move + frac * travel
            blocked = on & (passing >= c.start) & (passing < c.end)
            u_divert = hash_uniform(seed, Stream.DIVERT, ids, jk + 50 * c_i + k)
            divert = blocked & (journey == 0) & (u_divert < c.divert_share)
            hold = blocked & ~divert
            if hold.any():
                wait = erlang2(
                    plan.reopen_spread,
                    hash_uniform(seed, Stream.HOLD1, ids, jk + 50 * c_i + k),
                    hash_uniform(seed, Stream.HOLD2, ids, jk + 50 * c_i + k),
                )
                move = np.where(hold, c.end + wait, move)
                sail_again = hold & boat
                if sail_again.any():
                    move[sail_again] = _sail(
                        plan, move[sail_again], r[sail_again], plan.mode_hour[mode][sail_again], sail_jitter[sail_again]
                    )
            if divert.any():
                diverted |= divert
                div_time[idx[divert]] = move[divert]
                div_to[idx[divert]] = c.to_route
                div_lag[idx[divert]] = c.lag
        exit_ = np.where(diverted, move, move + travel)
        local = plan.leg_local_mcc[p, k]
        entered = local != country[idx]
        country[idx] = local
        switch = np.full((idx.size, MAX_PHONES), NO_SWITCH)
        at_start = sims[idx].copy()
        for ph in range(MAX_PHONES):
            buy = hash_uniform(seed, Stream.SIM_BUY, ids, jk + 16 * k + ph) < plan.local_sim_share
            wait = erlang2(
                plan.local_sim_days,
                hash_uniform(seed, Stream.SIM_WAIT1, ids, jk + 16 * k + ph),
                hash_uniform(seed, Stream.SIM_WAIT2, ids, jk + 16 * k + ph),
            )
            starts = entered & buy & (local != "") & (local != sims[idx, ph])
            # Entering a country cancels a purchase planned in the previous one; buying starts a new wait.
            pending[idx[entered], ph] = np.inf
            pending[idx[starts], ph] = enter[starts] + wait[starts]
            now = pending[idx, ph] < exit_
            switch[now, ph] = pending[idx[now], ph]
            sims[idx[now], ph] = local[now]
            pending[idx[now], ph] = np.inf
        frames.append(
            pd.DataFrame(
                {
                    "agent_id": ids,
                    "journey": np.full(idx.size, journey, dtype=np.int32),
                    "route_idx": r.astype(np.int32),
                    "path_idx": p.astype(np.int32),
                    "leg": np.full(idx.size, k, dtype=np.int32),
                    "seg_idx": seg.astype(np.int32),
                    "f_start": fs,
                    "f_end": np.where(diverted, fs, fe),
                    "t_enter": enter,
                    "t_move": move,
                    "t_exit": exit_,
                    "final": (k == plan.n_legs[p] - 1) & ~diverted,
                    "diverted": diverted,
                    "ping_share": plan.mode_ping_share[mode],
                    "mcc": mcc[idx],
                    "km": plan.leg_km[p, k],
                    "sea": plan.mode_sea[mode],
                    "phones": phones[idx].astype(np.int32),
                    "local_mcc": local,
                    "mcc0": at_start[:, 0],
                    "switch0": switch[:, 0],
                    "mcc1": at_start[:, 1],
                    "switch1": switch[:, 1],
                }
            )
        )
        t[idx] = exit_
        alive[idx[diverted]] = False
    legs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LEGS.fieldNames())
    return legs, div_time, div_to, div_lag


def agent_legs(plan: ItineraryPlan, agents: pd.DataFrame) -> pd.DataFrame:
    """Legs (``LEGS`` columns) of a batch of agents (``agent_id``, ``route_idx``, ``t0``), diversions included."""
    ids = agents["agent_id"].to_numpy(np.int64)
    route = agents["route_idx"].to_numpy(np.int64)
    u_mcc = hash_uniform(plan.seed, Stream.MCC, ids)
    mcc = np.empty(len(ids), dtype=object)
    for r in np.unique(route):
        m = route == r
        pick = np.minimum(np.searchsorted(plan.mcc_cum[r], u_mcc[m], side="right"), len(plan.mcc_cum[r]) - 1)
        mcc[m] = plan.mcc_codes[r][pick]
    phones = np.searchsorted(plan.phones_cum, hash_uniform(plan.seed, Stream.PHONES, ids), side="right")
    phones = np.minimum(phones, MAX_PHONES)
    sims = np.repeat(mcc[:, None], MAX_PHONES, axis=1)
    t0 = agents["t0"].to_numpy(np.float64)
    legs, div_time, div_to, div_lag = _journey_legs(plan, ids, route, t0, 0, mcc, sims, phones)
    again = np.flatnonzero(div_to >= 0)
    if again.size:
        more, *_ = _journey_legs(
            plan, ids[again], div_to[again], div_time[again] + div_lag[again], 1, mcc[again], sims[again], phones[again]
        )
        legs = pd.concat([legs, more], ignore_index=True)
    return legs


def legs_frame(spark: SparkSession, model: Model) -> DataFrame:
    """Every agent's legs (``LEGS``), computed on the executors from the cohorts."""
    plan, seed = model.plan, model.cfg.seed
    cohorts = spark.createDataFrame(model.cohorts, "route_idx int, day int, n long, first_id long")
    agents = (
        cohorts.select(
            "route_idx", "day", "first_id", F.explode(F.sequence(F.lit(0).cast("long"), F.col("n") - 1)).alias("i")
        )
        .select(
            (F.col("first_id") + F.col("i")).alias("agent_id"),
            "route_idx",
            (F.col("day") + spark_uniform(seed, Stream.DEPART, F.col("first_id") + F.col("i"))).alias("t0"),
        )
        .repartition(spark_partitions(spark, float(model.cohorts["n"].sum()) * 30), "agent_id")
    )

    def batches(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            yield agent_legs(plan, frame)

    return agents.mapInPandas(batches, LEGS)
