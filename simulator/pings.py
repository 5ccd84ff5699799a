"""The phones: pings of the migrants along their legs and of the people around them (Spark columns).

Every phone pings in random slots of a day (at most half of the slots are used, so counts vary), loses a share
of pings, reports a position with GPS noise (``accuracy_m`` is the 68% radius; a share of fixes are coarse, from
cell towers or wifi) and its network's ``mcc``. Device ids are daily pseudonyms: a hash of the phone and the
day, so no id spans two dates.

- Migrants carry 0, 1 or 2 phones, each its own device pinging independently, on the home network until a
  local SIM is bought (``simulator.journeys``). Waiting at a leg's start they ping from a fixed spot (a house,
  a camp); moving, from a road beside the segment's line, less often (``ping_share`` of the travel mode), and
  at sea not at all beyond ``[coverage] sea_coastal_km`` from the leg's coasts.
- Residents live around a home near every place, on its country's network, and are seen on a weekday-dependent
  share of days; foreign workers in transit countries do the same on their home networks; tourists at seasonal
  coastal places are present on a share of days that follows a yearly cosine, on visitors' networks.
- Long-haul drivers go back and forth along the desert-truck segments, pinging as rarely as that mode allows.

Every draw is a hash (``simulator.draws``), so the rows do not depend on partitioning.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import shapely
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from simulator.config import Phones
from simulator.departures import seasonal_factor
from simulator.draws import Stream, spark_normals, spark_uniform
from simulator.journeys import MAX_PHONES
from simulator.model import TOURIST, Model, epoch_seconds, spark_partitions
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
    # Daily rotation: the pseudonym is a hash of the phone (or person) and the day, so no id spans two dates.
    return F.lpad(F.lower(F.hex(F.xxhash64(F.lit(seed).cast("long"), F.lit(stream), person, day))), 16, "0")


def _pick_network(seed: int, person: Column, draw: Column) -> Column:
    """A network from the row's ``codes`` and cumulative ``cum`` (arrays), by a hash of (person, draw)."""
    u = spark_uniform(seed, Stream.NETWORK, person, draw)
    i = F.size(F.filter(F.col("cum"), lambda c: c <= u)) + 1
    return F.element_at(F.col("codes"), F.least(i, F.size(F.col("codes"))))


def _line_position(points: DataFrame, rows: DataFrame) -> tuple[DataFrame, Column, Column]:
    """Join rows with ``seg_idx`` and ``f`` (0..1 along the line) to the line points; returns (rows, lat, lon)."""
    pos = F.col("f") * (LINE_POINTS - 1)
    i0 = F.least(F.floor(pos), F.lit(LINE_POINTS - 2)).cast("int")
    joined = rows.withColumn("i0", i0).join(F.broadcast(points), ["seg_idx", "i0"])
    w = pos - F.col("i0")
    return (
        joined,
        F.col("lat0") + (F.col("lat1") - F.col("lat0")) * w,
        F.col("lon0") + (F.col("lon1") - F.col("lon0")) * w,
    )


def migrant_phone_pings(legs: DataFrame, points: DataFrame, model: Model) -> DataFrame:
    """Pings of the migrants' phones during the simulated days, one row per ping: ``agent_id, phone, seg_idx,
    day`` (the leg's segment, the ping's day) and the PINGS columns plus ``is_migrant``."""
    cfg, seed, days = model.cfg, model.cfg.seed, model.days
    slots = _slots_per_day(cfg.phones.migrant_pings_per_day)
    keep_p = cfg.phones.migrant_pings_per_day / slots
    start_s = epoch_seconds(model.start)
    phone_id = F.col("phone_id")
    # A global grid of slots per phone; a slot belongs to the leg its start time falls in.
    j_lo = F.ceil(F.greatest(F.col("t_enter"), F.lit(0.0)) * slots)
    j_hi = F.ceil(F.least(F.col("t_exit"), F.lit(float(days))) * slots) - 1
    j = F.col("j")
    t_raw = (j + spark_uniform(seed, Stream.SLOT_T, phone_id, j)) / F.lit(float(slots))
    # Stay inside the leg (and the run): a ping after the journey ended would fall on a day it is not counted.
    t = F.least(t_raw, F.least(F.col("t_exit"), F.lit(float(days))) - F.lit(1e-6))
    moving = F.col("t") >= F.col("t_move")
    share = F.when(moving, F.col("ping_share")).otherwise(F.lit(1.0))
    span = F.col("f_end") - F.col("f_start")
    f = F.when(
        moving, F.col("f_start") + span * (F.col("t") - F.col("t_move")) / (F.col("t_exit") - F.col("t_move"))
    ).otherwise(F.col("f_start"))
    # At sea the signal reaches coastal_km from the leg's start and end (ports, beaches, islands: coasts).
    from_coast_km = (
        F.least(F.col("f") - F.col("f_start"), F.col("f_end") - F.col("f"))
        / F.greatest(span, F.lit(1e-12))
        * F.col("km")
    )
    no_signal = moving & F.col("sea") & (from_coast_km > F.lit(cfg.coverage.sea_coastal_km))
    first = F.col("phone") == 0
    mcc = F.when(first, F.when(F.col("t") >= F.col("switch0"), F.col("local_mcc")).otherwise(F.col("mcc0"))).otherwise(
        F.when(F.col("t") >= F.col("switch1"), F.col("local_mcc")).otherwise(F.col("mcc1"))
    )
    phone_rows = (
        legs.where((F.col("t_exit") > 0) & (F.col("t_enter") < days) & (F.col("phones") > 0))
        .withColumn("phone", F.explode(F.sequence(F.lit(0), F.least(F.col("phones"), F.lit(MAX_PHONES)) - 1)))
        .withColumn("phone_id", F.col("agent_id") * MAX_PHONES * 2 + F.col("phone"))
        .withColumn("j", F.explode(F.sequence(j_lo, j_hi)))  # empty when j_lo > j_hi (no slot in the leg)
        .withColumn("t", t)
        .where(spark_uniform(seed, Stream.KEEP, phone_id, j) < F.lit(keep_p) * share)
        .where(spark_uniform(seed, Stream.MISS, phone_id, j) >= F.lit(cfg.phones.missing_share))
        .withColumn("f", f)
        .where(~no_signal)
    )
    pings, lat, lon = _line_position(points, phone_rows)
    # Waiting: a fixed spot per agent and leg (a house, a camp); moving: a road beside the centre line.
    sx, sy = spark_normals(seed, Stream.PLACE, F.col("agent_id"), F.col("journey"), F.col("leg"))
    jx, jy = spark_normals(seed, Stream.JITTER, phone_id, j)
    spread = F.when(moving, F.lit(cfg.migrants.travel_spread_km)).otherwise(F.lit(cfg.migrants.dwell_spread_km))
    jitter_km = F.lit(0.1)
    p_lat, p_lon, accuracy = _noisy_position(
        seed, lat, lon, sx * spread + jx * jitter_km, sy * spread + jy * jitter_km, [phone_id, j], cfg.phones
    )
    day = F.floor(F.col("t")).cast("int")
    return pings.select(
        "agent_id",
        "phone",
        "seg_idx",
        day.alias("day"),
        _device_id(seed, Stream.DEVICE_MIGRANT, phone_id, day).alias("device_id"),
        F.timestamp_seconds(F.lit(start_s) + F.floor(F.col("t") * 86400)).alias("ts"),
        p_lat.alias("lat"),
        p_lon.alias("lon"),
        accuracy.alias("accuracy_m"),
        mcc.alias("mcc"),
        F.lit(True).alias("is_migrant"),
    )


PING_COLUMNS = ("device_id", "ts", "lat", "lon", "accuracy_m", "mcc", "is_migrant")


def migrant_pings(legs: DataFrame, points: DataFrame, model: Model) -> DataFrame:
    """Pings of the migrants' phones during the simulated days: PINGS columns plus ``is_migrant``."""
    return migrant_phone_pings(legs, points, model).select(*PING_COLUMNS)


def tourist_presence(model: Model) -> list[float]:
    """Per simulated day, the share of tourist beds taken: 1 at the season's peak, (1 - a) / (1 + a) opposite."""
    t = model.cfg.tourists
    doy = [(model.start + dt.timedelta(days=d)).timetuple().tm_yday for d in range(model.days)]
    season = seasonal_factor(np.array(doy), t.seasonal_amplitude, t.peak_day_of_year)
    return [float(x) for x in season / (1.0 + t.seasonal_amplitude)]


def stayer_pings(spark: SparkSession, model: Model) -> DataFrame:
    """Pings of the people living around places — residents, foreign workers, tourists (``kind`` 0, 1, 2 as
    in ``simulator.model``): PINGS columns plus ``is_migrant`` (false) and ``kind``."""
    cfg, seed, days = model.cfg, model.cfg.seed, model.days
    groups_pdf = model.stayer_groups[model.stayer_groups["n"] > 0]
    groups = spark.createDataFrame(
        [tuple(r) for r in groups_pdf.itertuples(index=False)],
        "group_key long, kind int, lat double, lon double, n int, codes array<string>, cum array<double>",
    )
    slots = _slots_per_day(cfg.phones.resident_pings_per_day)
    keep_p = cfg.phones.resident_pings_per_day / slots
    start_s = epoch_seconds(model.start)
    weekday0 = model.start.weekday()
    weekly = F.array(*[F.lit(p) for p in cfg.residents.presence])
    season = F.array(*[F.lit(p) for p in tourist_presence(model)])
    total = int(groups_pdf["n"].sum())
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
    tourist = F.col("kind") == TOURIST
    share = F.when(tourist, F.element_at(season, F.col("day") + 1)).otherwise(
        F.element_at(weekly, ((F.col("day") + weekday0) % 7) + 1)
    )
    present = spark_uniform(seed, Stream.PRESENT, rid, F.col("day")) < share
    # A tourist bed's guest, and so its network, changes every stay_days; the others keep theirs.
    draw = F.when(tourist, F.floor(F.col("day") / F.lit(cfg.tourists.stay_days))).otherwise(F.lit(0)).cast("long")
    return (
        groups.repartition(spark_partitions(spark, expected))
        .withColumn("i", F.explode(F.sequence(F.lit(0), F.col("n") - 1)))
        .select((F.col("group_key") + F.col("i")).alias("resident_id"), "kind", "lat", "lon", "codes", "cum")
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
            F.when(F.col("kind") == 0, F.element_at(F.col("codes"), 1))
            .otherwise(_pick_network(seed, rid, draw))
            .alias("mcc"),
            F.lit(False).alias("is_migrant"),
            F.col("kind"),
        )
    )


def resident_pings(spark: SparkSession, model: Model) -> DataFrame:
    """Pings of everyone living around the places (residents, workers, tourists): PINGS columns plus
    ``is_migrant`` (false)."""
    return stayer_pings(spark, model).select(*PING_COLUMNS)


def driver_pings(spark: SparkSession, model: Model, points: DataFrame) -> DataFrame:
    """Pings of the long-haul drivers on the desert-truck segments: PINGS columns plus ``is_migrant`` (false).

    A driver goes back and forth along the segment at ``desert_truck``'s ``km_per_day`` (a triangle wave from a
    random phase) every day, and pings at the residents' rate times that mode's ``ping_share``."""
    cfg, seed, days = model.cfg, model.cfg.seed, model.days
    segs = model.driver_segments
    truck = cfg.travel_modes.get("desert_truck")
    if segs.empty or truck is None:
        return spark.createDataFrame(
            [],
            "device_id string, ts timestamp, lat double, lon double, accuracy_m double, mcc string, is_migrant boolean",
        )
    frame = spark.createDataFrame(
        [tuple(r) for r in segs.itertuples(index=False)],
        "seg_idx int, driver_key long, n int, km double, codes array<string>, cum array<double>",
    )
    slots = _slots_per_day(cfg.phones.resident_pings_per_day)
    keep_p = cfg.phones.resident_pings_per_day / slots * truck.ping_share
    start_s = epoch_seconds(model.start)
    pid, k = F.col("driver_id"), F.col("k")
    slot = F.col("day") * slots + k
    t = F.col("day") + (k + spark_uniform(seed, Stream.SLOT_T, pid, slot)) / F.lit(float(slots))
    phase = F.lit(2.0) * spark_uniform(seed, Stream.ROAD, pid) + F.col("t") * F.lit(truck.km_per_day) / F.col("km")
    f = F.lit(1.0) - F.abs(F.lit(1.0) - F.pmod(phase, F.lit(2.0)))
    rows = (
        frame.withColumn("i", F.explode(F.sequence(F.lit(0), F.col("n") - 1)))
        .select("seg_idx", "km", "codes", "cum", (F.col("driver_key") + F.col("i")).alias("driver_id"))
        .withColumn("day", F.explode(F.sequence(F.lit(0), F.lit(days - 1))))
        .withColumn("k", F.explode(F.sequence(F.lit(0), F.lit(slots - 1))))
        .where(spark_uniform(seed, Stream.KEEP, pid, slot) < F.lit(keep_p))
        .where(spark_uniform(seed, Stream.MISS, pid, slot) >= F.lit(cfg.phones.missing_share))
        .withColumn("t", t)
        .withColumn("f", f)
    )
    pings, lat, lon = _line_position(points, rows)
    sx, sy = spark_normals(seed, Stream.PLACE, pid)
    jx, jy = spark_normals(seed, Stream.JITTER, pid, slot)
    spread, jitter_km = F.lit(cfg.migrants.travel_spread_km), F.lit(0.1)
    p_lat, p_lon, accuracy = _noisy_position(
        seed, lat, lon, sx * spread + jx * jitter_km, sy * spread + jy * jitter_km, [pid, slot], cfg.phones
    )
    return pings.select(
        _device_id(seed, Stream.DEVICE_DRIVER, pid, F.col("day")).alias("device_id"),
        F.timestamp_seconds(F.lit(start_s) + F.floor(F.col("t") * 86400)).alias("ts"),
        p_lat.alias("lat"),
        p_lon.alias("lon"),
        accuracy.alias("accuracy_m"),
        _pick_network(seed, pid, F.lit(0).cast("long")).alias("mcc"),
        F.lit(False).alias("is_migrant"),
    )
