"""The catalogue's geometry as the simulator sees it: the ways through a route, crossing points on their segments,
and the places residents live around.

A route's segments join where one continues from a vertex of another; ``route_paths`` enumerates every way
through them with its probability (forks weighted by ``branch_weight``), each way a chain of legs (parts of
segments travelled in one go). ``catalogue_places`` lists the distinct vertices and crossing points, each with
its country and that country's network (MCC); ``nearest_place`` finds the place a leg starts from. Pure
functions of the catalogue and the config, run on the driver.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import shapely

from geo.catalogue import Catalogue, CrossingPoint, Route
from geo.countries import country_codes
from simulator.config import SimulatorConfigError

KM_PER_DEG = 111.32
VERTEX_TOL_DEG = 1e-4  # vertices of two segments closer than this (~10 m) are the same place
CROSSING_TOL_KM = 10.0  # a crossing point further than this from its segment line is never passed


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
    return abs(a[0] - b[0]) < VERTEX_TOL_DEG and abs(a[1] - b[1]) < VERTEX_TOL_DEG


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


def crossing_fraction(route: Route, crossing: CrossingPoint) -> float | None:
    """Where a crossing point lies along its segment's line (0..1), or None when it is too far off the line."""
    line = route.segment(crossing.segment_id).line
    point = shapely.Point(crossing.lon, crossing.lat)
    if line.distance(point) * KM_PER_DEG > CROSSING_TOL_KM:
        return None
    return float(line.project(point, normalized=True))


@dataclass(frozen=True)
class Place:
    """Somewhere residents live: a segment vertex or a crossing point."""

    key: int
    name: str
    lat: float
    lon: float
    mcc: str
    country: str  # Natural Earth ADM0_A3 code


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
        places.append(Place(key, name, lat, lon, country_mcc[country], country))
    if len({p.key for p in places}) != len(places):
        raise SimulatorConfigError("two places hash to the same resident key; rename one of them")
    return places


def nearest_place(places: list[Place], lon: float, lat: float) -> Place:
    """The place closest to (lon, lat): where a leg starts (always a segment vertex, so at distance ~0)."""
    lons = np.array([p.lon for p in places])
    lats = np.array([p.lat for p in places])
    d2 = (lats - lat) ** 2 + ((lons - lon) * np.cos(np.radians(lat))) ** 2
    return places[int(np.argmin(d2))]


def line_km(line: shapely.LineString) -> float:
    """Length of a lon/lat line over the ground, in km."""
    return _ground_km(list(line.coords))
