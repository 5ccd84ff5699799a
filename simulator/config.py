"""The migration simulator: synthetic phone pings along the routes, and the ground truth behind them.

A Spark job, so that it scales from tests to hundreds of millions of pings. What it models (parameters in
``simulator/simulator.toml``, one file):

- **departures** per route and day, drawn on the driver: a base rate x scale x yearly season x trend x a slow
  random wave (AR(1) in logs), Poisson. Journeys start ``warmup_days`` before the first simulated day, so the
  routes are already full when the output begins.
- **journeys**, computed per agent on the executors (vectorised numpy in ``mapInPandas``): a path through the
  route's segments (forks weighted by ``branch_weight``), and per segment a wait at its start (dwell) and a
  trip along it at the speed of its travel mode. Boats leave in the evening of a good-weather day.
- **closures**: an agent who would pass a closed crossing point waits until it reopens or, with probability
  ``divert_share``, starts a new journey on ``to_route`` ``lag_days`` later.
- **phones**: agents and a much larger resident population around every place ping in random slots; device ids
  are rotated daily; ``mcc`` is the home network (origin countries for migrants, the local one for residents);
  GPS noise with ``accuracy_m``; a share of pings is lost.

Every random draw is a hash of (seed, stream, ids), never a generator's state, so the output does not depend
on partitioning: the same config and seed give the same rows. Times inside the job are float days since the
first simulated day (``start``), so day ``d`` is ``[d, d + 1)`` and its date is ``start + d``.

Ground truth (``var/truth``), consistent with the pings by construction:

- ``segment_people``: agents on a segment on a day. An agent counts once per day, on the segment of the leg it
  is on at the first moment of that day it is travelling (so per day the segments add up to the agents in
  transit, and every ping of an agent falls on a day it is counted).
- ``arrivals``: agents passing a crossing point on a day — the moment the agent's position passes the point
  along its segment: landing for a landing site, crossing for a border post, leaving (setting sail, setting
  off) for a departure point or a hub at a segment's start.
- ``journeys``: one row per agent and journey (a diverted agent has two), with its outcome.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
import tomllib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation, SparkSession
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

from geo.catalogue import Catalogue, Route, load_catalogue
from geo.countries import country_codes
from jobs.lake import read_table
from jobs.schemas import PINGS, SERIES, TRUTH_JOURNEYS, TRUTH_SEGMENT_PEOPLE
from jobs.settings import JobSettings
from jobs.stages.series import DENSITY_SOURCE

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path(__file__).resolve().with_name("simulator.toml")
SCALES = ("small", "medium", "large")

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
        StructField("mcc", StringType(), False),
    ]
)

KM_PER_DEG = 111.32
# accuracy_m is the 68% radius of a 2-D Gaussian error: P(r <= a) = 1 - exp(-a^2 / 2 sd^2) = 0.68.
SD_PER_ACCURACY = 1.0 / math.sqrt(-2.0 * math.log(1.0 - 0.68))
LINE_POINTS = 129  # points per segment line used to place agents along it
_FRACTION_TOL = 1e-6
_VERTEX_TOL_DEG = 1e-4  # vertices of two segments closer than this (~10 m) are the same place
_CROSSING_TOL_KM = 10.0  # a crossing point further than this from its segment line is never passed

# Random streams: every draw hashes (seed, stream, ids...). One constant per kind of draw keeps them independent.
_S_DEPART, _S_PATH, _S_MCC, _S_DWELL1, _S_DWELL2, _S_SPEED1, _S_SPEED2 = range(1, 8)
_S_SAIL, _S_DIVERT, _S_HOLD1, _S_HOLD2 = range(8, 12)
_S_SLOT_T, _S_KEEP, _S_MISS, _S_PLACE, _S_JITTER, _S_COARSE, _S_ACC, _S_NOISE = range(20, 28)
_S_HOME, _S_PRESENT, _S_DEVICE_MIGRANT, _S_DEVICE_RESIDENT = range(30, 34)
_NORMAL_STREAM_GAP = 1000  # a normal pair uses streams s and s + gap


class SimulatorConfigError(ValueError):
    """The simulator config is malformed or does not fit the catalogue; the message names the key."""


# --- configuration ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalePreset:
    name: str
    days: int
    departures: float
    residents_per_place: int


@dataclass(frozen=True)
class TravelMode:
    name: str
    km_per_day: float
    spread: float
    ping_share: float
    sea: bool = False
    departure_hour_utc: float | None = None


@dataclass(frozen=True)
class RouteParams:
    departures_per_day: float
    seasonal_amplitude: float
    peak_day_of_year: int
    trend_per_year: float
    origin_mcc: dict[str, float] = field(hash=False)
    branch_weight: dict[str, float] = field(hash=False)
    travel: dict[str, str] = field(hash=False)
    dwell_days: dict[str, float] = field(hash=False)


@dataclass(frozen=True)
class Closure:
    crossing: str
    start_day: int
    weeks: float
    divert_share: float
    to_route: str
    lag_days: int
    route: str | None = None


@dataclass(frozen=True)
class Phones:
    migrant_pings_per_day: float
    resident_pings_per_day: float
    missing_share: float
    coarse_fix_share: float
    fine_accuracy_m: tuple[float, float]
    coarse_accuracy_m: tuple[float, float]


@dataclass(frozen=True)
class Residents:
    home_spread_km: float
    activity_km: float
    presence: tuple[float, ...]  # Monday..Sunday


@dataclass(frozen=True)
class Migrants:
    dwell_spread_km: float
    travel_spread_km: float
    volatility: float
    persistence: float
    reopen_spread_days: float
    default_dwell_days: dict[str, float] = field(hash=False)
    default_travel: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class Weather:
    bad_day_share_winter: float
    bad_day_share_summer: float


@dataclass(frozen=True)
class SimulatorConfig:
    """The whole parameter file; use ``dataclasses.replace`` to vary a copy (tests do)."""

    seed: int
    warmup_days: int
    scales: dict[str, ScalePreset] = field(hash=False)
    phones: Phones
    residents: Residents
    migrants: Migrants
    weather: Weather
    travel_modes: dict[str, TravelMode] = field(hash=False)
    routes: dict[str, RouteParams] = field(hash=False)
    closures: tuple[Closure, ...]
    country_mcc: dict[str, str] = field(hash=False)  # Natural Earth country code (ADM0_A3) -> MCC


class _Reader:
    """Strict TOML table access: unknown keys, missing keys and wrong types name the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, what: str) -> SimulatorConfigError:
        return SimulatorConfigError(f"{self.source}: key {key!r}: {what}")

    def table(self, parent: dict, key: str, where: str, allowed: set[str] | None = None) -> dict:
        name = f"{where}.{key}" if where else key
        value = parent.get(key)
        if not isinstance(value, dict):
            raise self.error(name, "missing or not a table")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise self.error(f"{name}.{unknown[0]}", f"not a known key; allowed: {', '.join(sorted(allowed))}")
        return value

    def number(self, t: dict, key: str, where: str, lo: float | None = None, hi: float | None = None) -> float:
        name = f"{where}.{key}"
        value = t.get(key)
        if value is None:
            raise self.error(name, "missing")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise self.error(name, f"must be a number, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(name, f"must be in [{lo}, {hi}], got {value!r}")
        return float(value)

    def integer(self, t: dict, key: str, where: str, lo: int | None = None) -> int:
        value = t.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"{where}.{key}", f"must be a whole number, got {value!r}")
        if lo is not None and value < lo:
            raise self.error(f"{where}.{key}", f"must be >= {lo}, got {value!r}")
        return value

    def pair(self, t: dict, key: str, where: str) -> tuple[float, float]:
        value = t.get(key)
        ok = isinstance(value, list) and len(value) == 2
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value)
        if not ok or value[0] > value[1]:
            raise self.error(f"{where}.{key}", f"must be [low, high] with 0 <= low <= high, got {value!r}")
        return float(value[0]), float(value[1])

    def weights(self, t: dict, key: str, where: str, required: bool = True) -> dict[str, float]:
        value = t.get(key, None if required else {})
        if not isinstance(value, dict):
            raise self.error(f"{where}.{key}", "missing or not a table of name = weight")
        out = {str(k): self.number(value, k, f"{where}.{key}", lo=0.0) for k in value}
        if required and sum(out.values()) <= 0:
            raise self.error(f"{where}.{key}", "needs at least one positive weight")
        return out


def load_config(path: Path | None = None) -> SimulatorConfig:
    """Read and check the simulator parameter file (default: ``simulator/simulator.toml``).

    Raises SimulatorConfigError naming the key for unknown keys, missing values or values out of range.
    """
    path = path or DEFAULT_CONFIG_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimulatorConfigError(f"simulator config {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SimulatorConfigError(f"{path.name}: not valid TOML ({exc})") from None
    r = _Reader(path.name)
    top = {
        "seed",
        "warmup_days",
        "scales",
        "phones",
        "residents",
        "migrants",
        "weather",
        "travel_modes",
        "routes",
        "closures",
        "country_mcc",
    }
    unknown = sorted(set(raw) - top)
    if unknown:
        raise r.error(unknown[0], f"not a known key; allowed: {', '.join(sorted(top))}")

    scales = {}
    for name in SCALES:
        t = r.table(r.table(raw, "scales", ""), name, "scales", {"days", "departures", "residents_per_place"})
        where = f"scales.{name}"
        scales[name] = ScalePreset(
            name=name,
            days=r.integer(t, "days", where, lo=1),
            departures=r.number(t, "departures", where, lo=0.0),
            residents_per_place=r.integer(t, "residents_per_place", where, lo=0),
        )

    t = r.table(
        raw,
        "phones",
        "",
        {
            "migrant_pings_per_day",
            "resident_pings_per_day",
            "missing_share",
            "coarse_fix_share",
            "fine_accuracy_m",
            "coarse_accuracy_m",
        },
    )
    phones = Phones(
        migrant_pings_per_day=r.number(t, "migrant_pings_per_day", "phones", lo=0.0, hi=48.0),
        resident_pings_per_day=r.number(t, "resident_pings_per_day", "phones", lo=0.0, hi=48.0),
        missing_share=r.number(t, "missing_share", "phones", lo=0.0, hi=1.0),
        coarse_fix_share=r.number(t, "coarse_fix_share", "phones", lo=0.0, hi=1.0),
        fine_accuracy_m=r.pair(t, "fine_accuracy_m", "phones"),
        coarse_accuracy_m=r.pair(t, "coarse_accuracy_m", "phones"),
    )

    t = r.table(raw, "residents", "", {"home_spread_km", "activity_km", "presence"})
    presence = t.get("presence")
    if not (isinstance(presence, list) and len(presence) == 7):
        raise r.error("residents.presence", "must list 7 shares, Monday..Sunday")
    residents = Residents(
        home_spread_km=r.number(t, "home_spread_km", "residents", lo=0.0),
        activity_km=r.number(t, "activity_km", "residents", lo=0.0),
        presence=tuple(r.number({"v": v}, "v", "residents.presence", lo=0.0, hi=1.0) for v in presence),
    )

    t = r.table(
        raw,
        "migrants",
        "",
        {
            "dwell_spread_km",
            "travel_spread_km",
            "volatility",
            "persistence",
            "reopen_spread_days",
            "default_dwell_days",
            "default_travel",
        },
    )
    default_dwell = r.table(t, "default_dwell_days", "migrants", {"land", "sea"})
    default_travel = r.table(t, "default_travel", "migrants", {"land", "sea"})
    migrants = Migrants(
        dwell_spread_km=r.number(t, "dwell_spread_km", "migrants", lo=0.0),
        travel_spread_km=r.number(t, "travel_spread_km", "migrants", lo=0.0),
        volatility=r.number(t, "volatility", "migrants", lo=0.0),
        persistence=r.number(t, "persistence", "migrants", lo=0.0, hi=0.999),
        reopen_spread_days=r.number(t, "reopen_spread_days", "migrants", lo=0.0),
        default_dwell_days={
            m: r.number(default_dwell, m, "migrants.default_dwell_days", lo=0.0) for m in ("land", "sea")
        },
        default_travel={m: str(default_travel.get(m)) for m in ("land", "sea")},
    )

    t = r.table(raw, "weather", "", {"bad_day_share_winter", "bad_day_share_summer"})
    weather = Weather(
        bad_day_share_winter=r.number(t, "bad_day_share_winter", "weather", lo=0.0, hi=0.99),
        bad_day_share_summer=r.number(t, "bad_day_share_summer", "weather", lo=0.0, hi=0.99),
    )

    modes = {}
    for name in r.table(raw, "travel_modes", ""):
        where = f"travel_modes.{name}"
        t = r.table(
            raw["travel_modes"],
            name,
            "travel_modes",
            {"km_per_day", "spread", "ping_share", "sea", "departure_hour_utc"},
        )
        sea = t.get("sea", False)
        if not isinstance(sea, bool):
            raise r.error(f"{where}.sea", f"must be true or false, got {sea!r}")
        hour = r.number(t, "departure_hour_utc", where, lo=0.0, hi=24.0) if "departure_hour_utc" in t else None
        modes[name] = TravelMode(
            name=name,
            km_per_day=r.number(t, "km_per_day", where, lo=0.1),
            spread=r.number(t, "spread", where, lo=0.0, hi=2.0),
            ping_share=r.number(t, "ping_share", where, lo=0.0, hi=1.0),
            sea=sea,
            departure_hour_utc=hour,
        )
    for kind in ("land", "sea"):
        mode = migrants.default_travel[kind]
        if mode not in modes or modes[mode].sea != (kind == "sea"):
            raise r.error(f"migrants.default_travel.{kind}", f"must name a {kind} travel mode, got {mode!r}")

    route_keys = {
        "departures_per_day",
        "seasonal_amplitude",
        "peak_day_of_year",
        "trend_per_year",
        "origin_mcc",
        "branch_weight",
        "travel",
        "dwell_days",
    }
    routes = {}
    for route_id in r.table(raw, "routes", ""):
        where = f"routes.{route_id}"
        t = r.table(raw["routes"], route_id, "routes", route_keys)
        travel = t.get("travel", {})
        if not isinstance(travel, dict) or not all(isinstance(v, str) and v in modes for v in travel.values()):
            raise r.error(f"{where}.travel", f"must map segment ids to travel modes ({', '.join(modes)})")
        routes[route_id] = RouteParams(
            departures_per_day=r.number(t, "departures_per_day", where, lo=0.0),
            seasonal_amplitude=r.number(t, "seasonal_amplitude", where, lo=0.0, hi=0.95),
            peak_day_of_year=r.integer(t, "peak_day_of_year", where, lo=1),
            trend_per_year=r.number(t, "trend_per_year", where, lo=-0.9),
            origin_mcc=r.weights(t, "origin_mcc", where),
            branch_weight=r.weights(t, "branch_weight", where, required=False),
            travel=dict(travel),
            dwell_days=r.weights(t, "dwell_days", where, required=False),
        )

    closures = []
    raw_closures = raw.get("closures", [])
    if not isinstance(raw_closures, list):
        raise r.error("closures", "must be an array of tables ([[closures]])")
    closure_keys = {"crossing", "route", "start_day", "weeks", "divert_share", "to_route", "lag_days"}
    for i, t in enumerate(raw_closures):
        where = f"closures[{i}]"
        unknown = sorted(set(t) - closure_keys)
        if unknown:
            raise r.error(f"{where}.{unknown[0]}", f"not a known key; allowed: {', '.join(sorted(closure_keys))}")
        for key in ("crossing", "to_route"):
            if not isinstance(t.get(key), str):
                raise r.error(f"{where}.{key}", "missing or not a string")
        closures.append(
            Closure(
                crossing=t["crossing"],
                route=t.get("route"),
                start_day=r.integer(t, "start_day", where),
                weeks=r.number(t, "weeks", where, lo=0.0),
                divert_share=r.number(t, "divert_share", where, lo=0.0, hi=1.0),
                to_route=t["to_route"],
                # At least a day, so that an agent never counts on two routes on the same day.
                lag_days=r.integer(t, "lag_days", where, lo=1),
            )
        )

    country_mcc: dict[str, str] = {}
    for country, mcc in r.table(raw, "country_mcc", "").items():
        if not re.fullmatch(r"[A-Z]{3}", country) or not isinstance(mcc, str) or not re.fullmatch(r"\d{3}", mcc):
            raise r.error(f"country_mcc.{country}", "expected a 3-letter country code = a 3-digit MCC string")
        country_mcc[country] = mcc

    seed = r.integer(raw, "seed", "", lo=0)
    return SimulatorConfig(
        seed=seed,
        warmup_days=r.integer(raw, "warmup_days", "", lo=0),
        scales=scales,
        phones=phones,
        residents=residents,
        migrants=migrants,
        weather=weather,
        travel_modes=modes,
        routes=routes,
        closures=tuple(closures),
        country_mcc=country_mcc,
    )


# --- the plan: paths, places and departures, built on the driver --------------------------------------------


@dataclass(frozen=True)
class LegPlan:
    """Part of one segment travelled in one go: from fraction ``f_start`` to ``f_end`` of its line."""

    segment_id: str
    f_start: float
    f_end: float
    km: float


@dataclass(frozen=True)
class PathPlan:
    """One way through a route, with the probability that a journey on the route takes it."""

    route_id: str
    legs: tuple[LegPlan, ...]
    probability: float

    @property
    def name(self) -> str:
        return ">".join(leg.segment_id for leg in self.legs)


def _same_place(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) < _VERTEX_TOL_DEG and abs(a[1] - b[1]) < _VERTEX_TOL_DEG


def _ground_km(coords: list[tuple[float, float]]) -> float:
    lon, lat = np.radians(np.array(coords)).T
    a = np.sin(np.diff(lat) / 2) ** 2 + np.cos(lat[:-1]) * np.cos(lat[1:]) * np.sin(np.diff(lon) / 2) ** 2
    return float(np.sum(2 * 6371.0 * np.arcsin(np.sqrt(a))))


def route_paths(route: Route, branch_weight: dict[str, float] | None = None) -> list[PathPlan]:
    """Every way through a route, from the segments' geometry.

    A journey starts on a segment whose first place is not reached by another segment, follows it, and may
    switch to another segment wherever that one continues from a place on it (a shared vertex); where no
    segment continues from its last place, the journey ends there. At every fork the options are weighted by
    ``branch_weight`` of the segment taken (default 1; staying on the current segment uses its own weight).
    """
    weight = branch_weight or {}
    coords = {s.id: list(s.line.coords) for s in route.segments}

    def joins(seg_id: str, vertex: int) -> list[tuple[str, int]]:
        here = coords[seg_id][vertex]
        return [
            (other, j)
            for other, pts in coords.items()
            if other != seg_id
            for j in range(len(pts) - 1)  # a segment cannot be joined at its last place: nowhere to go
            if _same_place(pts[j], here)
        ]

    starts = [
        s.id
        for s in route.segments
        if not any(_same_place(coords[s.id][0], p) for other, pts in coords.items() if other != s.id for p in pts[1:])
    ]
    if not starts:
        raise SimulatorConfigError(f"route {route.id!r}: every segment is reached from another; no journey can start")

    paths: list[PathPlan] = []

    def leg(seg_id: str, a: int, b: int) -> LegPlan:
        line = route.segment(seg_id).line
        pts = coords[seg_id]
        f = [float(line.project(shapely.Point(pts[i]), normalized=True)) for i in (a, b)]
        return LegPlan(seg_id, f[0], f[1], _ground_km(pts[a : b + 1]))

    def walk(seg_id: str, entry: int, prefix: tuple[LegPlan, ...], visited: frozenset[str], p: float) -> None:
        last = len(coords[seg_id]) - 1
        for i in range(entry + 1, last + 1):
            options = [(o, j) for o, j in joins(seg_id, i) if o not in visited]
            if not options:
                continue
            stay = i < last  # at a middle vertex the journey may also go on along this segment
            total = sum(weight.get(o, 1.0) for o, _ in options) + (weight.get(seg_id, 1.0) if stay else 0.0)
            for o, j in options:
                share = weight.get(o, 1.0) / total if total > 0 else 0.0
                walk(o, j, (*prefix, leg(seg_id, entry, i)), visited | {o}, p * share)
            if not stay:
                return
            p *= weight.get(seg_id, 1.0) / total if total > 0 else 0.0
        paths.append(PathPlan(route.id, (*prefix, leg(seg_id, entry, last)), p))

    total_start = sum(weight.get(s, 1.0) for s in starts)
    for s in starts:
        walk(s, 0, (), frozenset({s}), weight.get(s, 1.0) / total_start if total_start > 0 else 0.0)
    kept = [p for p in paths if p.probability > 0]
    norm = sum(p.probability for p in kept)
    if not kept:
        raise SimulatorConfigError(f"route {route.id!r}: every path has weight 0; check branch_weight")
    return [PathPlan(p.route_id, p.legs, p.probability / norm) for p in kept]


@dataclass(frozen=True)
class Place:
    """Somewhere residents live: a segment vertex or a crossing point."""

    key: int
    name: str
    lat: float
    lon: float
    mcc: str


def catalogue_places(catalogue: Catalogue, country_mcc: dict[str, str]) -> list[Place]:
    """Distinct places of the catalogue (vertices and crossing points), each with the MCC of its country.

    The country comes from the Natural Earth outlines (``geo.countries``; a place at sea takes the nearest
    country's); a country missing from ``country_mcc`` is an error naming the place.
    """
    found: dict[tuple[float, float], str] = {}
    for route in catalogue:
        for seg in route.segments:
            for (lon, lat), name in zip(seg.line.coords, seg.places, strict=False):
                found.setdefault((round(lon, 3), round(lat, 3)), name)
        for cp in route.crossing_points:
            found.setdefault((round(cp.lon, 3), round(cp.lat, 3)), cp.name)
    ordered = sorted(found.items(), key=lambda kv: kv[1])
    countries = country_codes([lonlat for lonlat, _ in ordered])
    places = []
    for ((lon, lat), name), country in zip(ordered, countries, strict=True):
        if country not in country_mcc:
            raise SimulatorConfigError(
                f"no [country_mcc] entry for {country} (the country of place {name!r}); residents need a home network"
            )
        key = zlib.crc32(f"{name}@{lat:.3f},{lon:.3f}".encode())
        places.append(Place(key, name, lat, lon, country_mcc[country]))
    if len({p.key for p in places}) != len(places):
        raise SimulatorConfigError("two places hash to the same resident key; rename one of them")
    return places


def _route_key(route_id: str) -> int:
    # Agent ids are route_key << 40 | n: a route's agents stay the same whichever other routes are simulated.
    return zlib.crc32(route_id.encode()) >> 12


def seasonal_factor(day_of_year: np.ndarray, amplitude: float, peak_day: int) -> np.ndarray:
    """The yearly cosine: 1 + amplitude at ``peak_day``, 1 - amplitude half a year later."""
    return 1.0 + amplitude * np.cos(2 * np.pi * (np.asarray(day_of_year) - peak_day) / 365.25)


def daily_departures(
    route_id: str, params: RouteParams, cfg: SimulatorConfig, start: dt.date, first_day: int, n_days: int, scale: float
) -> np.ndarray:
    """Journeys started per day on one route, for days ``first_day .. first_day + n_days - 1`` (seeded)."""
    rng = np.random.default_rng([cfg.seed, _route_key(route_id), _S_DEPART])
    days = np.arange(first_day, first_day + n_days)
    doy = np.array([(start + dt.timedelta(days=int(d))).timetuple().tm_yday for d in days])
    season = seasonal_factor(doy, params.seasonal_amplitude, params.peak_day_of_year)
    trend = np.maximum(1.0 + params.trend_per_year * days / 365.25, 0.05)
    # A slow AR(1) wave in logs, started from its stationary distribution; mean-corrected so E[factor] = 1.
    phi, sd = cfg.migrants.persistence, cfg.migrants.volatility
    eps = rng.normal(0.0, sd * math.sqrt(1 - phi**2), size=n_days)
    wave = np.empty(n_days)
    x = rng.normal(0.0, sd)
    for i in range(n_days):
        x = phi * x + eps[i]
        wave[i] = x
    mean = params.departures_per_day * scale * season * trend * np.exp(wave - sd**2 / 2)
    return rng.poisson(mean)


def bad_weather_days(route_id: str, cfg: SimulatorConfig, start: dt.date, first_day: int, n_days: int) -> np.ndarray:
    """True on days when boats on this route do not sail; likelier in winter (seeded)."""
    rng = np.random.default_rng([cfg.seed, _route_key(route_id), _S_SAIL])
    doy = np.array(
        [(start + dt.timedelta(days=int(d))).timetuple().tm_yday for d in range(first_day, first_day + n_days)]
    )
    w = cfg.weather
    winter = (1 + np.cos(2 * np.pi * (doy - 15) / 365.25)) / 2  # 1 in mid-January, 0 in mid-July
    share = w.bad_day_share_summer + (w.bad_day_share_winter - w.bad_day_share_summer) * winter
    return rng.random(n_days) < share


# --- deterministic randomness -------------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: a bijection on uint64 with good avalanche.
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, ids: np.ndarray, k: int = 0) -> np.ndarray:
    """Uniform [0, 1) per id, a pure function of (seed, stream, id, k): no state, no dependence on batching."""
    key = (seed * 0x9E3779B97F4A7C15 + stream * 0xC2B2AE3D27D4EB4F + k * 0x165667B19E3779F9) & _M64
    key_arr = _mix64(np.array([key], dtype=np.uint64))[0]
    x = _mix64(np.asarray(ids).astype(np.uint64) ^ key_arr)
    with np.errstate(over="ignore"):
        x = _mix64(x + key_arr)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _hash_normal(seed: int, stream: int, ids: np.ndarray, k: int = 0) -> np.ndarray:
    u1 = hash_uniform(seed, stream, ids, k)
    u2 = hash_uniform(seed, stream + _NORMAL_STREAM_GAP, ids, k)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)


def _erlang2(mean: np.ndarray | float, u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    # Sum of two exponentials: a wait that is rarely near zero and has a long right tail.
    return -0.5 * np.asarray(mean) * (np.log1p(-u1) + np.log1p(-u2))


def _u(seed: int, stream: int, *cols: Column) -> Column:
    """Spark twin of the idea: uniform [0, 1) from xxhash64 of (seed, stream, cols) — partition-independent."""
    h = F.xxhash64(F.lit(seed).cast("long"), F.lit(stream).cast("int"), *cols)
    return F.shiftrightunsigned(h, 11).cast("double") * F.lit(2.0**-53)


def _normals(seed: int, stream: int, *cols: Column) -> tuple[Column, Column]:
    """Two independent standard normals (Box-Muller) from hashes."""
    radius = F.sqrt(F.lit(-2.0) * F.log(F.lit(1.0) - _u(seed, stream, *cols)))
    angle = F.lit(2 * math.pi) * _u(seed, stream + _NORMAL_STREAM_GAP, *cols)
    return radius * F.cos(angle), radius * F.sin(angle)


# --- itineraries: the agent logic, vectorised over a batch of agents ------------------------------------------


@dataclass(frozen=True)
class _ClosurePlan:
    seg_idx: int
    f: float
    start: float
    end: float
    divert_share: float
    to_route: int  # -1: the target route is not simulated, diverted agents leave the simulation
    lag: int


@dataclass(frozen=True)
class _ItineraryPlan:
    """Everything the executors need to turn (agent, route, departure time) into legs: small arrays only."""

    seed: int
    warmup: int
    path_lo: np.ndarray  # per route: first global path index
    path_cum: list[np.ndarray]  # per route: cumulative path probabilities
    n_legs: np.ndarray  # per path
    leg_seg: np.ndarray  # [path, leg]
    leg_fs: np.ndarray
    leg_fe: np.ndarray
    leg_km: np.ndarray
    leg_dwell: np.ndarray
    leg_mode: np.ndarray
    mode_speed: np.ndarray
    mode_spread: np.ndarray
    mode_hour: np.ndarray  # departure hour for boats, -1 for land modes
    mode_ping_share: np.ndarray
    next_good: np.ndarray  # [route, day + warmup]: the first good-weather day on or after that day
    closures: tuple[_ClosurePlan, ...]
    reopen_spread: float
    mcc_codes: list[np.ndarray]  # per route
    mcc_cum: list[np.ndarray]

    @property
    def max_legs(self) -> int:
        return int(self.leg_seg.shape[1])


def _sail(
    plan: _ItineraryPlan, ready: np.ndarray, route: np.ndarray, hour: np.ndarray, jitter: np.ndarray
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
    plan: _ItineraryPlan, agent_id: np.ndarray, route: np.ndarray, t0: np.ndarray, journey: int, mcc: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Legs of one journey per agent; also, per agent, when it diverted (NaN if not), to which route, lag."""
    n = len(agent_id)
    jk = journey * 1000  # a second journey draws from fresh streams
    seed = plan.seed
    path = np.zeros(n, dtype=np.int64)
    u_path = hash_uniform(seed, _S_PATH, agent_id, jk)
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
        dwell = _erlang2(
            plan.leg_dwell[p, k], hash_uniform(seed, _S_DWELL1, ids, jk + k), hash_uniform(seed, _S_DWELL2, ids, jk + k)
        )
        speed = plan.mode_speed[mode] * np.exp(plan.mode_spread[mode] * _hash_normal(seed, _S_SPEED1, ids, jk + k))
        travel = plan.leg_km[p, k] / speed
        boat = plan.mode_hour[mode] >= 0
        sail_jitter = hash_uniform(seed, _S_SAIL, ids, jk + k)
        move = enter + dwell
        if boat.any():
            move[boat] = _sail(plan, move[boat], r[boat], plan.mode_hour[mode][boat], sail_jitter[boat])
        diverted = np.zeros(idx.size, dtype=bool)
        for c_i, c in enumerate(plan.closures):
            on = (seg == c.seg_idx) & (fs <= c.f + _FRACTION_TOL) & (fe >= c.f - _FRACTION_TOL) & ~diverted
            if not on.any():
                continue
            frac = np.clip((c.f - fs) / np.maximum(fe - fs, 1e-12), 0.0, 1.0)
            passing = move + frac * travel
            blocked = on & (passing >= c.start) & (passing < c.end)
            divert = blocked & (journey == 0) & (hash_uniform(seed, _S_DIVERT, ids, jk + 50 * c_i + k) < c.divert_share)
            hold = blocked & ~divert
            if hold.any():
                wait = _erlang2(
                    plan.reopen_spread,
                    hash_uniform(seed, _S_HOLD1, ids, jk + 50 * c_i + k),
                    hash_uniform(seed, _S_HOLD2, ids, jk + 50 * c_i + k),
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
                }
            )
        )
        t[idx] = exit_
        alive[idx[diverted]] = False
    legs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LEGS.fieldNames())
    return legs, div_time, div_to, div_lag


def agent_legs(plan: _ItineraryPlan, agents: pd.DataFrame) -> pd.DataFrame:
    """Legs (``LEGS`` columns) of a batch of agents (``agent_id``, ``route_idx``, ``t0``), diversions included."""
    ids = agents["agent_id"].to_numpy(np.int64)
    route = agents["route_idx"].to_numpy(np.int64)
    u_mcc = hash_uniform(plan.seed, _S_MCC, ids)
    mcc = np.empty(len(ids), dtype=object)
    for r in np.unique(route):
        m = route == r
        pick = np.minimum(np.searchsorted(plan.mcc_cum[r], u_mcc[m], side="right"), len(plan.mcc_cum[r]) - 1)
        mcc[m] = plan.mcc_codes[r][pick]
    legs, div_time, div_to, div_lag = _journey_legs(plan, ids, route, agents["t0"].to_numpy(np.float64), 0, mcc)
    again = np.flatnonzero(div_to >= 0)
    if again.size:
        more, *_ = _journey_legs(plan, ids[again], div_to[again], div_time[again] + div_lag[again], 1, mcc[again])
        legs = pd.concat([legs, more], ignore_index=True)
    return legs


# --- the Spark job ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationReport:
    start: dt.date
    days: int
    scale: str
    seed: int
    routes: tuple[str, ...]
    paths: int
    journeys: int  # journeys started during the simulated days (diverted agents' second journeys included)
    diverted: int  # journeys ended at a closed crossing during the simulated days
    residents: int
    migrant_pings: int
    resident_pings: int
    seconds: float
    pings_path: Path | None
    truth_path: Path
    skipped_closures: tuple[str, ...] = ()

    @property
    def pings(self) -> int:
        return self.migrant_pings + self.resident_pings

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)


@dataclass(frozen=True)
class _Model:
    """The driver-side model of one run, shared by the Spark stages."""

    cfg: SimulatorConfig
    preset: ScalePreset
    catalogue: Catalogue
    start: dt.date
    days: int
    plan: _ItineraryPlan
    paths: list[PathPlan]
    segments: list[tuple[str, str, shapely.LineString]]  # (route_id, segment_id, line) by seg_idx
    cohorts: pd.DataFrame  # route_idx, day, n, first_id
    places: list[Place]
    skipped_closures: tuple[str, ...]


def _build_model(cfg: SimulatorConfig, preset: ScalePreset, catalogue: Catalogue, start: dt.date, days: int) -> _Model:
    route_ids = catalogue.route_ids()
    missing = [r for r in route_ids if r not in cfg.routes]
    if missing:
        raise SimulatorConfigError(f"no [routes.{missing[0]}] in the simulator config; every simulated route needs one")
    keys = [_route_key(r) for r in route_ids]
    if len(set(keys)) != len(keys):
        raise SimulatorConfigError("two route ids hash to the same agent-id prefix; rename one of them")

    segments: list[tuple[str, str, shapely.LineString]] = []
    seg_index: dict[tuple[str, str], int] = {}
    for route in catalogue:
        for seg in route.segments:
            seg_index[route.id, seg.id] = len(segments)
            segments.append((route.id, seg.id, seg.line))

    mode_names = list(cfg.travel_modes)
    mode_of = {name: i for i, name in enumerate(mode_names)}
    paths: list[PathPlan] = []
    path_lo, path_cum = [], []
    leg_rows: list[list[tuple[int, float, float, float, float, int]]] = []
    for route in catalogue:
        params = cfg.routes[route.id]
        seg_ids = {s.id for s in route.segments}
        for table_name, table in (
            ("branch_weight", params.branch_weight),
            ("travel", params.travel),
            ("dwell_days", params.dwell_days),
        ):
            unknown = sorted(set(table) - seg_ids)
            if unknown:
                raise SimulatorConfigError(
                    f"routes.{route.id}.{table_name}: unknown segment {unknown[0]!r}; "
                    f"segments are {', '.join(sorted(seg_ids))}"
                )
        route_paths_ = route_paths(route, params.branch_weight)
        path_lo.append(len(paths))
        path_cum.append(np.cumsum([p.probability for p in route_paths_]))
        for p in route_paths_:
            rows = []
            for leg in p.legs:
                seg = route.segment(leg.segment_id)
                mode = params.travel.get(seg.id, cfg.migrants.default_travel[seg.mode])
                if cfg.travel_modes[mode].sea != (seg.mode == "sea"):
                    raise SimulatorConfigError(
                        f"routes.{route.id}.travel.{seg.id}: mode {mode!r} cannot travel a {seg.mode} segment"
                    )
                dwell = params.dwell_days.get(seg.id, cfg.migrants.default_dwell_days[seg.mode])
                rows.append((seg_index[route.id, seg.id], leg.f_start, leg.f_end, leg.km, dwell, mode_of[mode]))
            leg_rows.append(rows)
        paths.extend(route_paths_)

    max_legs = max(len(rows) for rows in leg_rows)
    shape = (len(paths), max_legs)
    leg_arrays = [np.zeros(shape, dtype=dtype) for dtype in (np.int64, float, float, float, float, np.int64)]
    for pi, rows in enumerate(leg_rows):
        for k, row in enumerate(rows):
            for arr, value in zip(leg_arrays, row, strict=True):
                arr[pi, k] = value
    leg_seg, leg_fs, leg_fe, leg_km, leg_dwell, leg_mode = leg_arrays
    modes = [cfg.travel_modes[m] for m in mode_names]

    # Weather reaches past the run: journeys that started late may sail after it (the output stops at the end).
    horizon = cfg.warmup_days + days + 400
    next_good = np.zeros((len(route_ids), horizon), dtype=np.int64)
    for ri, route_id in enumerate(route_ids):
        bad = bad_weather_days(route_id, cfg, start, -cfg.warmup_days, horizon)
        nxt, following = np.empty(horizon, dtype=np.int64), horizon
        for i in range(horizon - 1, -1, -1):
            following = following if bad[i] else i
            nxt[i] = following
        next_good[ri] = nxt - cfg.warmup_days

    closures, skipped = [], []
    full = None
    for c in cfg.closures:
        owners = [
            r for r in catalogue if (c.route in (None, r.id)) and any(cp.id == c.crossing for cp in r.crossing_points)
        ]
        if len(owners) > 1:
            raise SimulatorConfigError(
                f"closure of {c.crossing!r}: the id belongs to routes {', '.join(r.id for r in owners)}; "
                "add route = ... to the closure"
            )
        if not owners:
            full = full or load_catalogue()
            known = any(
                (c.route in (None, r.id)) and any(cp.id == c.crossing for cp in r.crossing_points) for r in full
            )
            if not known:
                raise SimulatorConfigError(f"closure of {c.crossing!r}: no such crossing point in the catalogue")
            skipped.append(f"{c.crossing} (its route is not simulated)")
            continue
        route = owners[0]
        cp = next(cp for cp in route.crossing_points if cp.id == c.crossing)
        line = route.segment(cp.segment_id).line
        point = shapely.Point(cp.lon, cp.lat)
        if line.distance(point) * KM_PER_DEG > _CROSSING_TOL_KM:
            raise SimulatorConfigError(f"closure of {c.crossing!r}: the crossing point is off its segment line")
        if c.to_route not in cfg.routes and c.to_route not in (full or load_catalogue()).route_ids():
            raise SimulatorConfigError(f"closure of {c.crossing!r}: unknown to_route {c.to_route!r}")
        closures.append(
            _ClosurePlan(
                seg_idx=seg_index[route.id, cp.segment_id],
                f=float(line.project(point, normalized=True)),
                start=float(c.start_day),
                end=float(c.start_day + 7 * c.weeks),
                divert_share=c.divert_share,
                to_route=route_ids.index(c.to_route) if c.to_route in route_ids else -1,
                lag=c.lag_days,
            )
        )

    mcc_codes, mcc_cum = [], []
    for route_id in route_ids:
        mix = cfg.routes[route_id].origin_mcc
        weights = np.array(list(mix.values()))
        mcc_codes.append(np.array(list(mix), dtype=object))
        mcc_cum.append(np.cumsum(weights) / weights.sum())

    plan = _ItineraryPlan(
        seed=cfg.seed,
        warmup=cfg.warmup_days,
        path_lo=np.array(path_lo, dtype=np.int64),
        path_cum=path_cum,
        n_legs=np.array([len(rows) for rows in leg_rows], dtype=np.int64),
        leg_seg=leg_seg,
        leg_fs=leg_fs,
        leg_fe=leg_fe,
        leg_km=leg_km,
        leg_dwell=leg_dwell,
        leg_mode=leg_mode,
        mode_speed=np.array([m.km_per_day for m in modes]),
        mode_spread=np.array([m.spread for m in modes]),
        mode_hour=np.array(
            [m.departure_hour_utc if m.sea and m.departure_hour_utc is not None else -1.0 for m in modes]
        ),
        mode_ping_share=np.array([m.ping_share for m in modes]),
        next_good=next_good,
        closures=tuple(closures),
        reopen_spread=cfg.migrants.reopen_spread_days,
        mcc_codes=mcc_codes,
        mcc_cum=mcc_cum,
    )

    rows = []
    for ri, route_id in enumerate(route_ids):
        n = daily_departures(
            route_id, cfg.routes[route_id], cfg, start, -cfg.warmup_days, cfg.warmup_days + days, preset.departures
        )
        first = (_route_key(route_id) << 40) + np.concatenate([[0], np.cumsum(n)[:-1]])
        rows.append(
            pd.DataFrame(
                {
                    "route_idx": np.full(len(n), ri, dtype=np.int32),
                    "day": np.arange(-cfg.warmup_days, days, dtype=np.int32),
                    "n": n.astype(np.int64),
                    "first_id": first.astype(np.int64),
                }
            )
        )
    cohorts = pd.concat(rows, ignore_index=True)
    return _Model(
        cfg=cfg,
        preset=preset,
        catalogue=catalogue,
        start=start,
        days=days,
        plan=plan,
        paths=paths,
        segments=segments,
        cohorts=cohorts[cohorts["n"] > 0].reset_index(drop=True),
        places=catalogue_places(catalogue, cfg.country_mcc),
        skipped_closures=tuple(skipped),
    )


def _partitions(spark: SparkSession, expected_rows: float) -> int:
    # Enough tasks for the cores, and tasks of a few million rows at most for the big scales.
    return max(spark.sparkContext.defaultParallelism, math.ceil(expected_rows / 3e6))


def _legs(spark: SparkSession, model: _Model) -> DataFrame:
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
            (F.col("day") + _u(seed, _S_DEPART, F.col("first_id") + F.col("i"))).alias("t0"),
        )
        .repartition(_partitions(spark, float(model.cohorts["n"].sum()) * 30), "agent_id")
    )

    def batches(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            yield agent_legs(plan, frame)

    return agents.mapInPandas(batches, LEGS)


def _segments_df(spark: SparkSession, model: _Model) -> DataFrame:
    return spark.createDataFrame(
        [(i, r, s) for i, (r, s, _) in enumerate(model.segments)], "seg_idx int, route_id string, segment_id string"
    )


def _line_points_df(spark: SparkSession, model: _Model) -> DataFrame:
    """Per segment, LINE_POINTS points evenly along its line: (seg_idx, i0, lat0, lon0, lat1, lon1) for i0 → i0+1."""
    rows = []
    fractions = np.linspace(0.0, 1.0, LINE_POINTS)
    for i, (_, _, line) in enumerate(model.segments):
        pts = shapely.get_coordinates(shapely.line_interpolate_point(line, fractions, normalized=True))
        for j in range(LINE_POINTS - 1):
            rows.append((i, j, float(pts[j, 1]), float(pts[j, 0]), float(pts[j + 1, 1]), float(pts[j + 1, 0])))
    return spark.createDataFrame(rows, "seg_idx int, i0 int, lat0 double, lon0 double, lat1 double, lon1 double")


def _days_frame(spark: SparkSession, days: int) -> DataFrame:
    return spark.range(days).select(F.col("id").cast("int").alias("day"))


def _date(start: dt.date, day: Column) -> Column:
    return F.date_add(F.lit(start), day.cast("int"))


def truth_segment_people(spark: SparkSession, legs: DataFrame, model: _Model) -> DataFrame:
    """Agents per segment per day (``TRUTH_SEGMENT_PEOPLE``), zero-filled, for the simulated days."""
    days = model.days
    # A leg owns the days whose first travelling moment falls in it: day floor(t_enter) for a journey's first
    # leg (the journey starts mid-day), day d for later legs when t_enter <= d < t_exit.
    lo = F.when(F.col("leg") == 0, F.floor("t_enter")).otherwise(F.ceil("t_enter"))
    hi = F.ceil("t_exit") - 1
    counts = (
        legs.select("seg_idx", F.greatest(lo, F.lit(0)).alias("lo"), F.least(hi, F.lit(days - 1)).alias("hi"))
        .where(F.col("lo") <= F.col("hi"))
        .select("seg_idx", F.explode(F.sequence(F.col("lo").cast("int"), F.col("hi").cast("int"))).alias("day"))
        .groupBy("seg_idx", "day")
        .agg(F.count(F.lit(1)).alias("people"))
    )
    grid = _segments_df(spark, model).crossJoin(_days_frame(spark, days))
    return grid.join(counts, ["seg_idx", "day"], "left").select(
        _date(model.start, F.col("day")).alias("date"),
        "route_id",
        "segment_id",
        F.coalesce("people", F.lit(0)).cast("long").alias("people"),
    )


def _crossings_df(spark: SparkSession, model: _Model) -> DataFrame:
    seg_index = {(r, s): i for i, (r, s, _) in enumerate(model.segments)}
    rows = []
    for route in model.catalogue:
        for cp in route.crossing_points:
            line = route.segment(cp.segment_id).line
            point = shapely.Point(cp.lon, cp.lat)
            on_line = line.distance(point) * KM_PER_DEG <= _CROSSING_TOL_KM
            f = float(line.project(point, normalized=True)) if on_line else -1.0  # -1: never passed
            rows.append((seg_index[route.id, cp.segment_id], route.id, cp.id, f))
    return spark.createDataFrame(rows, "seg_idx int, route_id string, crossing_point_id string, f double")


def truth_arrivals(spark: SparkSession, legs: DataFrame, model: _Model) -> DataFrame:
    """Agents passing each crossing point per day (``TRUTH_ARRIVALS``), zero-filled, for the simulated days."""
    crossings = _crossings_df(spark, model)
    moved = legs.where(F.col("t_exit") > F.col("t_move")).select("seg_idx", "f_start", "f_end", "t_move", "t_exit")
    frac = F.least(
        F.greatest((F.col("f") - F.col("f_start")) / (F.col("f_end") - F.col("f_start")), F.lit(0.0)), F.lit(1.0)
    )
    passing = F.floor(F.col("t_move") + frac * (F.col("t_exit") - F.col("t_move"))).cast("int")
    tol = F.lit(_FRACTION_TOL)
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


def truth_journeys(spark: SparkSession, legs: DataFrame, model: _Model) -> DataFrame:
    """One row per agent and journey (``TRUTH_JOURNEYS``), warm-up journeys included."""
    routes = spark.createDataFrame(list(enumerate(model.catalogue.route_ids())), "route_idx int, route_id string")
    paths = spark.createDataFrame([(i, p.name) for i, p in enumerate(model.paths)], "path_idx int, path string")
    start_s = _epoch_seconds(model.start)
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


def _epoch_seconds(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _slots_per_day(rate: float) -> int:
    # Slots of equal length, each used with probability rate / slots: at most half of them, so ping counts vary.
    return max(2, math.ceil(2 * rate))


def _noisy_position(
    seed: int, lat: Column, lon: Column, dx_km: Column, dy_km: Column, ids: list[Column], phones: Phones
) -> tuple[Column, Column, Column]:
    """Shift a true position by (dx, dy) km, then add GPS noise; returns (lat, lon, accuracy_m)."""
    coarse = _u(seed, _S_COARSE, *ids) < F.lit(phones.coarse_fix_share)
    a = _u(seed, _S_ACC, *ids)
    (f_lo, f_hi), (c_lo, c_hi) = phones.fine_accuracy_m, phones.coarse_accuracy_m
    accuracy = F.when(coarse, F.lit(c_lo) + a * (c_hi - c_lo)).otherwise(F.lit(f_lo) + a * (f_hi - f_lo))
    nx, ny = _normals(seed, _S_NOISE, *ids)
    sd_km = accuracy * F.lit(SD_PER_ACCURACY / 1000.0)
    dy = dy_km + ny * sd_km
    dx = dx_km + nx * sd_km
    new_lat = lat + dy / F.lit(KM_PER_DEG)
    new_lon = lon + dx / (F.lit(KM_PER_DEG) * F.cos(F.radians(lat)))
    return new_lat, new_lon, F.round(accuracy, 1)


def _device_id(seed: int, stream: int, person: Column, day: Column) -> Column:
    # Daily rotation: the pseudonym is a hash of the person and the day, so no id spans two dates.
    return F.lpad(F.lower(F.hex(F.xxhash64(F.lit(seed).cast("long"), F.lit(stream), person, day))), 16, "0")


def migrant_pings(legs: DataFrame, points: DataFrame, model: _Model) -> DataFrame:
    """Pings of the agents during the simulated days: PINGS columns plus ``is_migrant``."""
    cfg, seed, days = model.cfg, model.cfg.seed, model.days
    slots = _slots_per_day(cfg.phones.migrant_pings_per_day)
    keep_p = cfg.phones.migrant_pings_per_day / slots
    start_s = _epoch_seconds(model.start)
    # A global grid of slots per agent; a slot belongs to the leg its start time falls in.
    j_lo = F.ceil(F.greatest(F.col("t_enter"), F.lit(0.0)) * slots)
    j_hi = F.ceil(F.least(F.col("t_exit"), F.lit(float(days))) * slots) - 1
    j = F.col("j")
    t_raw = (j + _u(seed, _S_SLOT_T, F.col("agent_id"), j)) / F.lit(float(slots))
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
        .where(_u(seed, _S_KEEP, F.col("agent_id"), j) < F.lit(keep_p) * share)
        .where(_u(seed, _S_MISS, F.col("agent_id"), j) >= F.lit(cfg.phones.missing_share))
        .withColumn("f", f)
        .withColumn("i0", i0)
        .join(F.broadcast(points), ["seg_idx", "i0"])
    )
    w = pos - F.col("i0")
    lat = F.col("lat0") + (F.col("lat1") - F.col("lat0")) * w
    lon = F.col("lon0") + (F.col("lon1") - F.col("lon0")) * w
    # Waiting: a fixed spot per agent and leg (a house, a camp); moving: a road beside the centre line.
    sx, sy = _normals(seed, _S_PLACE, F.col("agent_id"), F.col("journey"), F.col("leg"))
    jx, jy = _normals(seed, _S_JITTER, F.col("agent_id"), j)
    spread = F.when(moving, F.lit(cfg.migrants.travel_spread_km)).otherwise(F.lit(cfg.migrants.dwell_spread_km))
    jitter_km = F.lit(0.1)
    ids = [F.col("agent_id"), j]
    p_lat, p_lon, accuracy = _noisy_position(
        seed, lat, lon, sx * spread + jx * jitter_km, sy * spread + jy * jitter_km, ids, cfg.phones
    )
    seconds = F.floor(F.col("t") * 86400)
    day = F.floor(F.col("t")).cast("int")
    return pings.select(
        _device_id(seed, _S_DEVICE_MIGRANT, F.col("agent_id"), day).alias("device_id"),
        F.timestamp_seconds(F.lit(start_s) + seconds).alias("ts"),
        p_lat.alias("lat"),
        p_lon.alias("lon"),
        accuracy.alias("accuracy_m"),
        F.col("mcc"),
        F.lit(True).alias("is_migrant"),
    )


def resident_pings(spark: SparkSession, model: _Model) -> DataFrame:
    """Pings of the residents around every place: PINGS columns plus ``is_migrant`` (false)."""
    cfg, seed, days = model.cfg, model.cfg.seed, model.days
    per_place = model.preset.residents_per_place
    places = spark.createDataFrame(
        [(i, p.key, p.lat, p.lon, p.mcc) for i, p in enumerate(model.places)],
        "place_idx long, place_key long, lat double, lon double, mcc string",
    )
    slots = _slots_per_day(cfg.phones.resident_pings_per_day)
    keep_p = cfg.phones.resident_pings_per_day / slots
    start_s = _epoch_seconds(model.start)
    weekday0 = model.start.weekday()
    presence = F.array(*[F.lit(p) for p in cfg.residents.presence])
    total = len(model.places) * per_place
    expected = total * days * cfg.phones.resident_pings_per_day
    rid = F.col("resident_id")
    k = F.col("k")
    slot = F.col("day") * slots + k
    hx, hy = _normals(seed, _S_HOME, rid)
    ax, ay = _normals(seed, _S_JITTER, rid, slot)
    dx = hx * cfg.residents.home_spread_km + ax * cfg.residents.activity_km
    dy = hy * cfg.residents.home_spread_km + ay * cfg.residents.activity_km
    p_lat, p_lon, accuracy = _noisy_position(seed, F.col("lat"), F.col("lon"), dx, dy, [rid, slot], cfg.phones)
    t = F.col("day") + (k + _u(seed, _S_SLOT_T, rid, slot)) / F.lit(float(slots))
    return (
        spark.range(0, total, numPartitions=_partitions(spark, expected))
        .select((F.col("id") / per_place).cast("long").alias("place_idx"), (F.col("id") % per_place).alias("n"))
        .join(F.broadcast(places), "place_idx")
        .select((F.col("place_key") * (1 << 24) + F.col("n")).alias("resident_id"), "lat", "lon", "mcc")
        .withColumn("day", F.explode(F.sequence(F.lit(0), F.lit(days - 1))))
        .where(_u(seed, _S_PRESENT, rid, F.col("day")) < F.element_at(presence, ((F.col("day") + weekday0) % 7) + 1))
        .withColumn("k", F.explode(F.sequence(F.lit(0), F.lit(slots - 1))))
        .where(_u(seed, _S_KEEP, rid, slot) < F.lit(keep_p))
        .where(_u(seed, _S_MISS, rid, slot) >= F.lit(cfg.phones.missing_share))
        .select(
            _device_id(seed, _S_DEVICE_RESIDENT, rid, F.col("day")).alias("device_id"),
            F.timestamp_seconds(F.lit(start_s) + F.floor(t * 86400)).alias("ts"),
            p_lat.alias("lat"),
            p_lon.alias("lon"),
            accuracy.alias("accuracy_m"),
            F.col("mcc"),
            F.lit(False).alias("is_migrant"),
        )
    )


def simulate(
    spark: SparkSession,
    settings: JobSettings,
    start: dt.date,
    days: int | None = None,
    scale: str = "small",
    config_path: Path | None = None,
    catalogue: Catalogue | None = None,
    *,
    config: SimulatorConfig | None = None,
    truth_only: bool = False,
) -> SimulationReport:
    """Simulate ``days`` days from ``start`` (default: the scale's days) and write raw pings and truth.

    Pings (``PINGS``) replace ``settings.raw_dir / "pings"``; the ground truth replaces ``var/truth``.
    ``config`` (already loaded) wins over ``config_path``; ``truth_only`` skips the pings (for quick studies).
    Raises SimulatorConfigError for an unknown scale or a config that does not fit the catalogue.
    """
    began = time.perf_counter()
    cfg = config or load_config(config_path)
    if scale not in cfg.scales:
        raise SimulatorConfigError(f"unknown scale {scale!r}; expected one of {', '.join(cfg.scales)}")
    preset = cfg.scales[scale]
    days = preset.days if days is None else days
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    catalogue = catalogue or load_catalogue()
    model = _build_model(cfg, preset, catalogue, start, days)
    for note in model.skipped_closures:
        log.info("closure skipped: %s", note)

    legs = _legs(spark, model).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        truth = settings.truth_dir
        truth_segment_people(spark, legs, model).write.mode("overwrite").parquet(str(truth / "segment_people"))
        truth_arrivals(spark, legs, model).write.mode("overwrite").parquet(str(truth / "arrivals"))
        journeys = truth_journeys(spark, legs, model)
        journeys.write.mode("overwrite").parquet(str(truth / "journeys"))
        in_run = spark.read.schema(TRUTH_JOURNEYS).parquet(str(truth / "journeys"))
        first_s, end_s = _epoch_seconds(start), _epoch_seconds(start + dt.timedelta(days=days))
        run_window = (F.unix_timestamp("departed") >= first_s) & (F.unix_timestamp("departed") < end_s)
        ended_in_run = (F.unix_timestamp("ended") >= first_s) & (F.unix_timestamp("ended") < end_s)
        counts = in_run.agg(
            F.sum(run_window.cast("int")).alias("journeys"),
            F.sum(((F.col("outcome") == "diverted") & ended_in_run).cast("int")).alias("diverted"),
        ).first()

        migrant_n = resident_n = 0
        pings_path = None
        if not truth_only:
            pings_path = settings.raw_dir / "pings"
            observed = Observation("pings")
            pings = (
                migrant_pings(legs, _line_points_df(spark, model), model)
                .unionByName(resident_pings(spark, model))
                .observe(
                    observed,
                    F.count(F.lit(1)).alias("rows"),
                    F.coalesce(F.sum(F.col("is_migrant").cast("long")), F.lit(0)).alias("migrant"),
                )
                .select(*[F.col(f.name).cast(f.dataType) for f in PINGS.fields])
            )
            pings.write.mode("overwrite").parquet(str(pings_path))
            migrant_n = int(observed.get["migrant"])
            resident_n = int(observed.get["rows"]) - migrant_n
    finally:
        legs.unpersist()

    return SimulationReport(
        start=start,
        days=days,
        scale=scale,
        seed=cfg.seed,
        routes=tuple(catalogue.route_ids()),
        paths=len(model.paths),
        journeys=int(counts["journeys"] or 0),
        diverted=int(counts["diverted"] or 0),
        residents=len(model.places) * preset.residents_per_place,
        migrant_pings=migrant_n,
        resident_pings=resident_n,
        seconds=time.perf_counter() - began,
        pings_path=pings_path,
        truth_path=truth,
        skipped_closures=model.skipped_closures,
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
        read_table(spark, settings.lake("gold", "series"), SERIES)
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
