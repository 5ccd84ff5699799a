"""The phones: pings of the migrants along their legs and of the residents around every place (Spark columns).

Both ping in random slots of a day (at most half of the slots are used, so counts vary), lose a share of pings,
report a position with GPS noise (``accuracy_m`` is the 68% radius; a share of fixes are coarse, from cell
towers or wifi) and the home network's ``mcc``. Device ids are daily pseudonyms: a hash of the person and the
day, so no id spans two dates. A migrant waiting at a leg's start pings from a fixed spot (a house, a camp);
moving, from a road beside the segment's line, less often (``ping_share`` of its travel mode). Residents live
around a home near their place and are seen on a weekday-dependent share of days. Every draw is a hash
(``simulator.draws``), so the rows do not depend on partitioning.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from simulator.config import Phones
from simulator.draws import Stream, spark_normals, spark_uniform
from simulator.model import Model, epoch_seconds, spark_partitions
from simulator.world import KM_PER_DEG

# accuracy_m is the 68% radius of a 2-D Gaussian error: P(r <= a) = 1 - exp(-a^2 / 2 sd^2) = 0.68.
SD_PER_ACCURACY = 1.0 / math.sqrt(-2.0 * math.log(1.0 - 0.68))
LINE_POINTS = 129  # points per segment line used to place agents along it


def line_points_df(spark: SparkSession, model: Model) -> DataFrame:
    """Per segment, LINE_POINTS points evenly along its line: (seg_idx, i0, lat0, lon0, lat1, lon1) for i0 → i0+1."""
    rows = []
    fractions = np.linspace(0.0, 1.0, LINE_POINTS)
    for i, (_, _, line) in enumerate(model.segments):
        pts = shapely.get_coordinates(shapely.line_interpolate_point(line, fractions, normalized=True))
        for j in range(LINE_POINTS - 1):
            rows.append((i, j, float(pts[j, 1]), float(pts[j, 0]), float(pts[j + 1, 1]), float(pts[j + 1, 0])))
    return spark.createDataFrame(rows, "seg_idx int, i0 int, lat0 double, lon0 double, lat1 double, lon1 double")


def _slots_per_day(rate: float) -> int:
    # Slots of equal length, each used with probability rate / slots: at most half of them, so ping counts vary.
    return max(2, math.ceil(2 * rate))


def _noisy_position(
    seed: int, lat: Column, lon: Column, dx_km: Column, dy_km: Column, ids: list[Column], phones: Phones
) -> tuple[Column, Column, Column]:
    """Shift a true position by (dx, dy) km, then add GPS noise; returns (lat, lon, accuracy_m)."""
    coarse = spark_uniform(seed, Stream.COARSE, *ids) < F.lit(phones.coarse_fix_share)
    a = spark_uniform(seed, Stream.ACC, *ids)
    (f_lo, f_hi), (c_lo, c_hi) = phones.fine_accuracy_m, phones.coarse_accuracy_m
    accuracy = F.when(coarse, F.lit(c_lo) + a * (c_hi - c_lo)).otherwise(F.lit(f_lo) + a * (f_hi - f_lo))
    nx, ny = spark_normals(seed, Stream.NOISE, *ids)
    sd_km = accuracy * F.lit(SD_PER_ACCURACY / 1000.0)
    dy = dy_km + ny * sd_km
    dx = dx_km + nx * sd_km
    new_lat = lat + dy / F.lit(KM_PER_DEG)
    new_lon = lon + dx / (F.lit(KM_PER_DEG) * F.cos(F.radians(lat)))
    return new_lat, new_lon, F.round(accuracy, 1)


def _device_id(seed: int, stream: int, person: Column, day: Column) -> Column:
    # Daily rotation: the pseudonym is a hash of the person and the day, so no id spans two dates.
    return F.lpad(F.lower(F.hex(F.xxhash64(F.lit(seed).cast("long"), F.lit(stream), person, day))), 16, "0")


def migrant_pings(legs: DataFrame, points: DataFrame, model: Model) -> DataFrame:
    """Pings of the agents during the simulated days: PINGS columns plus ``is_migrant``."""
    cfg, seed, days = model.cfg, model.cfg.seed, model.days
    slots = _slots_per_day(cfg.phones.migrant_pings_per_day)
    keep_p = cfg.phones.migrant_pings_per_day / slots
    start_s = epoch_seconds(model.start)
    # A global grid of slots per agent; a slot belongs to the leg its start time falls in.
    j_lo = F.ceil(F.greatest(F.col("t_enter"), F.lit(0.0)) * slots)
    j_hi = F.ceil(F.least(F.col("t_exit"), F.lit(float(days))) * slots) - 1
    j = F.col("j")
    t_raw = (j + spark_uniform(seed, Stream.SLOT_T, F.col("agent_id"), j)) / F.lit(float(slots))
    # Stay inside the leg (and the run): a ping after the journey ended would fall on a day it is not counted.
    t = F.least(t_raw, F.least(F.col("t_exit"), F.lit(float(days))) - F.lit(1e-6))
    moving = F.col("t") >= F.col("t_move")
    share = F.when(moving, F.col("ping_share")).otherwise(F.lit(1.0))
    f = F.when(
        moving,
        F.col("f_start")
        + (F.col("f_end") - F.col("f_start")) * (F.col("t") - F.col("t_move")) / (F.col("t_exit") - F.col("t_move")),
    ).otherwise(F.col("f_start"))
    pos = F.col("f") * (LINE_POINTS - 1)
    i0 = F.least(F.floor(pos), F.lit(LINE_POINTS - 2)).cast("int")
    pings = (
        legs.select(
            "agent_id",
            "journey",
            "leg",
            "seg_idx",
            "f_start",
            "f_end",
            "t_enter",
            "t_move",
            "t_exit",
            "ping_share",
            "mcc",
        )
        .where((F.col("t_exit") > 0) & (F.col("t_enter") < days))
        .withColumn("j", F.explode(F.sequence(j_lo, j_hi)))  # empty when j_lo > j_hi (no slot in the leg)
        .withColumn("t", t)
        .where(spark_uniform(seed, Stream.KEEP, F.col("agent_id"), j) < F.lit(keep_p) * share)
        .where(spark_uniform(seed, Stream.MISS, F.col("agent_id"), j) >= F.lit(cfg.phones.missing_share))
        .withColumn("f", f)
        .withColumn("i0", i0)
        .join(F.broadcast(points), ["seg_idx", "i0"])
    )
    w = pos - F.col("i0")
    lat = F.col("lat0") + (F.col("lat1") - F.col("lat0")) * w
    lon = F.col("lon0") + (F.col("lon1") - F.col("lon0")) * w
    # Waiting: a fixed spot per agent and leg (a house, a camp); moving: a road beside the centre line.
    sx, sy = spark_normals(seed, Stream.PLACE, F.col("agent_id"), F.col("journey"), F.col("leg"))
    jx, jy = spark_normals(seed, Stream.JITTER, F.col("agent_id"), j)
    spread = F.when(moving, F.lit(cfg.migrants.travel_spread_km)).otherwise(F.lit(cfg.migrants.dwell_spread_km))
    jitter_km = F.lit(0.1)
    ids = [F.col("agent_id"), j]
    p_lat, p_lon, accuracy = _noisy_position(
        seed, lat, lon, sx * spread + jx * jitter_km, sy * spread + jy * jitter_km, ids, cfg.phones
    )
    seconds = F.floor(F.col("t") * 86400)
    day = F.floor(F.col("t")).cast("int")
    return pings.select(
        _device_id(seed, Stream.DEVICE_MIGRANT, F.col("agent_id"), day).alias("device_id"),
        F.timestamp_seconds(F.lit(start_s) + seconds).alias("ts"),
        p_lat.alias("lat"),
        p_lon.alias("lon"),
        accuracy.alias("accuracy_m"),
        F.col("mcc"),
        F.lit(True).alias("is_migrant"),
    )


def resident_pings(spark: SparkSession, model: Model) -> DataFrame:
    """Pings of the residents around every place: PINGS columns plus ``is_migrant`` (false)."""
    cfg, seed, days = model.cfg, model.cfg.seed, model.days
    per_place = model.preset.residents_per_place
    places = spark.createDataFrame(
        [(i, p.key, p.lat, p.lon, p.mcc) for i, p in enumerate(model.places)],
        "place_idx long, place_key long, lat double, lon double, mcc string",
    )
    slots = _slots_per_day(cfg.phones.resident_pings_per_day)
    keep_p = cfg.phones.resident_pings_per_day / slots
    start_s = epoch_seconds(model.start)
    weekday0 = model.start.weekday()
    presence = F.array(*[F.lit(p) for p in cfg.residents.presence])
    total = len(model.places) * per_place
    expected = total * days * cfg.phones.resident_pings_per_day
    rid = F.col("resident_id")
    k = F.col("k")
    slot = F.col("day") * slots + k
    hx, hy = spark_normals(seed, Stream.HOME, rid)
    ax, ay = spark_normals(seed, Stream.JITTER, rid, slot)
    dx = hx * cfg.residents.home_spread_km + ax * cfg.residents.activity_km
    dy = hy * cfg.residents.home_spread_km + ay * cfg.residents.activity_km
    p_lat, p_lon, accuracy = _noisy_position(seed, F.col("lat"), F.col("lon"), dx, dy, [rid, slot], cfg.phones)
    t = F.col("day") + (k + spark_uniform(seed, Stream.SLOT_T, rid, slot)) / F.lit(float(slots))
    present = spark_uniform(seed, Stream.PRESENT, rid, F.col("day")) < F.element_at(
        presence, ((F.col("day") + weekday0) % 7) + 1
    )
    return (
        spark.range(0, total, numPartitions=spark_partitions(spark, expected))
        .select((F.col("id") / per_place).cast("long").alias("place_idx"), (F.col("id") % per_place).alias("n"))
        .join(F.broadcast(places), "place_idx")
        .select((F.col("place_key") * (1 << 24) + F.col("n")).alias("resident_id"), "lat", "lon", "mcc")
        .withColumn("day", F.explode(F.sequence(F.lit(0), F.lit(days - 1))))
        .where(present)
        .withColumn("k", F.explode(F.sequence(F.lit(0), F.lit(slots - 1))))
        .where(spark_uniform(seed, Stream.KEEP, rid, slot) < F.lit(keep_p))
        .where(spark_uniform(seed, Stream.MISS, rid, slot) >= F.lit(cfg.phones.missing_share))
        .select(
            _device_id(seed, Stream.DEVICE_RESIDENT, rid, F.col("day")).alias("device_id"),
            F.timestamp_seconds(F.lit(start_s) + F.floor(t * 86400)).alias("ts"),
            p_lat.alias("lat"),
            p_lon.alias("lon"),
            accuracy.alias("accuracy_m"),
            F.col("mcc"),
            F.lit(False).alias("is_migrant"),
        )
    )
