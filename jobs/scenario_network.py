"""The route network the scenario engine runs on (``forecasting.scenario.Network``), built when a release is published.

**Points.** Every crossing point of the catalogue's routes that the release has series of, with its role.

**Links** follow the catalogue's geometry. A point lies on its own segment and on every other segment of its route
that starts or ends within ``ON_LINE_KM`` of it (a junction); along each such segment its people go on to the next
point on the line, or, where the segment ends (or a leg branches off) before one, to the first point of each leg
that follows (``Route.successions``, a leg starting between the point and the next one), through legs without points
if need be.
A point with no way on (a landing at the end of its route, a dead end) has no link: its people leave the route.

**Shares.** Of a point's people, the share going each way is proportional to a weight of the point reached: its
published mean of people crossing per day over the release's history when it has a people series, else the mean
people present on the leg that leads there (``people/segment:…``), else an equal part. All of a point's people go
on unless it has no way on. These are rough: they read "which way do people go" off where people are seen, and a
leg seen by nobody (a sea crossing without phones) weighs nothing.

**Modes.** Each link carries its leg's mode. A land link out of a departure point (the coast road from Tripoli
to Sabratha) carries people who pass the point without setting sail there: the engine adds them to the point's
published crossings when a closure holds everyone passing it (``Network.onward_links``).

**Lags.** Days from one point to the next: the distance along the legs at an assumed pace (``KM_PER_DAY`` by the
leg's mode) plus an assumed wait before each new leg (``WAIT_DAYS`` by mode): people crossing a departure point are
leaving on its leg, so the wait comes before it; people crossing a landing wait after it for their next leg.
Assumptions, not estimates: the pipeline sees no journeys. They are stated in the network's ``notes``, and the
engine spreads them (its transit uncertainty).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd
from shapely.geometry import Point

from forecasting.scenario import Link, Network, NetworkPoint
from geo.catalogue import Catalogue, CrossingPoint, Route, Segment, ground_km

__all__ = ["KM_PER_DAY", "ON_LINE_KM", "WAIT_DAYS", "build_network", "sea_feeders"]

ON_LINE_KM = 5.0
KM_PER_DAY = {"land": 300.0, "sea": 220.0}  # a day's progress, stops included (assumed)
WAIT_DAYS = {"land": 3.0, "sea": 4.0}  # waiting before a leg: for a lift, a boat, good weather (assumed)
_EPS = 1e-6
_MAX_DEPTH = 6  # legs without points walked through before giving up on a way


@dataclass(frozen=True)
class _Place:
    """Where a point (or a leg's start) lies on a segment: the fraction along its line."""

    segment: str
    fraction: float


def _length_km(segment: Segment) -> float:
    coords = list(segment.line.coords)
    return sum(ground_km(coords[i], coords[i + 1]) for i in range(len(coords) - 1))


def _on(segment: Segment, lon: float, lat: float, own: bool) -> float | None:
    """The fraction along ``segment`` where (lon, lat) lies: anywhere on its own segment (``own``), else only at the
    other segment's start or end (within ON_LINE_KM: a junction; a line merely passing by is not a way), else None."""
    line = segment.line
    if not own:
        ends = ((0.0, line.coords[0]), (1.0, line.coords[-1]))
        return next((f for f, xy in ends if ground_km((lon, lat), (xy[0], xy[1])) <= ON_LINE_KM), None)
    return float(line.project(Point(lon, lat), normalized=True))


class _RouteGeometry:
    def __init__(self, route: Route, points: list[CrossingPoint]) -> None:
        self.route = route
        self.segments = {s.id: s for s in route.segments}
        self.length = {s.id: _length_km(s) for s in route.segments}
        self.successors: dict[str, list[str]] = {}
        for a, b in route.successions():
            self.successors.setdefault(a, []).append(b)
        # Per segment: the points on its line, by fraction.
        self.on: dict[str, list[tuple[float, str]]] = {s.id: [] for s in route.segments}
        self.places: dict[str, list[_Place]] = {}
        for p in points:
            for s in route.segments:
                f = _on(s, p.lon, p.lat, own=s.id == p.segment_id)
                if f is not None:
                    self.on[s.id].append((f, p.id))
                    self.places.setdefault(p.id, []).append(_Place(s.id, f))
        for items in self.on.values():
            items.sort()
        self.own = {p.id: p.segment_id for p in points}
        # Where each successor leg starts along its predecessor.
        self.branch_at: dict[tuple[str, str], float] = {}
        for a, bs in self.successors.items():
            for b in bs:
                start = self.segments[b].line.coords[0]
                self.branch_at[(a, b)] = float(self.segments[a].line.project(Point(start), normalized=True))

    def _at_start(self, point_id: str) -> bool:
        own = self.own[point_id]
        return any(pl.segment == own and pl.fraction < _EPS for pl in self.places.get(point_id, []))

    def ways(self, point_id: str) -> list[tuple[str, float, str]]:
        """(next point, lag in days, the leg that reaches it) for each way on from ``point_id``."""
        out: dict[str, tuple[float, str]] = {}
        for place in self.places.get(point_id, []):
            # Starting another leg where it begins (a landing's people taking the ferry on): wait for it first.
            start = self.segments[place.segment]
            wait = WAIT_DAYS[start.mode] if place.segment != self.own[point_id] and place.fraction < _EPS else 0.0
            for q, lag, leg in self._along(place.segment, place.fraction, point_id, wait, 0):
                if lag < out.get(q, (math.inf, ""))[0]:
                    out[q] = (lag, leg)
        return [(q, lag, leg) for q, (lag, leg) in sorted(out.items())]

    def _along(self, seg: str, f: float, origin: str, lag: float, depth: int) -> list[tuple[str, float, str]]:
        segment = self.segments[seg]
        km_day = KM_PER_DAY[segment.mode]
        after = [(g, q) for g, q in self.on[seg] if g > f + _EPS and q != origin]
        stop = after[0][0] if after else 1.0 + _EPS
        found = []
        if after:
            g, q = after[0]
            reach = lag + (g - f) * self.length[seg] / km_day
            # A point at the start of its own leg (a departure coast) counts people leaving on that leg: they wait
            # for it first.
            own = self.segments[self.own[q]]
            if own.id != seg and self._at_start(q):
                reach += WAIT_DAYS[own.mode]
            found.append((q, reach, seg))
        if depth >= _MAX_DEPTH:
            return found
        for b in self.successors.get(seg, []):
            g = self.branch_at[(seg, b)]
            if f - _EPS <= g < stop:
                leg = self.segments[b]
                to_branch = lag + (g - f) * self.length[seg] / km_day + WAIT_DAYS[leg.mode]
                found += self._along(b, -2 * _EPS, origin, to_branch, depth + 1)
        return found


def _mean_people(history: pd.DataFrame | None) -> dict[str, float]:
    if history is None or history.empty:
        return {}
    people = history[history["series_id"].str.startswith("people/")]
    return people.groupby("series_id")["y"].mean().dropna().to_dict()


def build_network(
    catalogue: Catalogue,
    history: pd.DataFrame | None,
    routes: Iterable[str] | None = None,
    level_sigma: Mapping[str, float] | None = None,
) -> Network:
    """The network of ``routes`` (default: every route of ``catalogue`` the release has a series of) of
    ``catalogue``: all their crossing points, and the links between them.

    ``history``: the release's observed values (``series_id``, ``ds``, ``y``). A route without people series takes
    part too (a scenario may divert people to it; they are counted, and shown where its points have forecasts);
    the people series (``people/…``) weigh the shares. ``level_sigma``: per people series id, the log-scale error
    of its level (``jobs.stages.forecast.people_level_sigma``), given to its point.
    """
    level_sigma = level_sigma or {}
    means = _mean_people(history)
    released = set() if history is None else set(history["series_id"].unique())
    wanted = set(routes) if routes is not None else {s.split(":", 1)[1].split("/", 1)[0] for s in released if ":" in s}
    points: list[NetworkPoint] = []
    links: list[Link] = []
    for route in catalogue:
        if route.id not in wanted:
            continue
        crossing = list(route.crossing_points)
        geometry = _RouteGeometry(route, crossing)
        points += [
            NetworkPoint(route.id, p.id, p.role, p.segment_id, _sigma(level_sigma, f"people/point:{route.id}/{p.id}"))
            for p in crossing
        ]
        candidates: list[Link] = []
        for p in crossing:
            ways = geometry.ways(p.id)
            if not ways:
                continue
            weights = [_weight(route.id, q, leg, means) for q, _, leg in ways]
            known = [w for w in weights if w is not None]
            fill = (sum(known) / len(known) if known and sum(known) > 0 else 1.0) if len(known) < len(weights) else 0
            weights = [fill if w is None else w for w in weights]
            total = sum(weights)
            if total <= 0:
                weights, total = [1.0] * len(ways), float(len(ways))
            candidates += [
                Link(route.id, p.id, q, share=w / total, lag_days=round(lag, 2), mode=geometry.segments[leg].mode)
                for (q, lag, leg), w in zip(ways, weights, strict=True)
            ]
        links += _without_loops(candidates)
    notes = (
        "points: the catalogue's crossing points of the routes with people series",
        "shares: of a point's people, proportional to the published mean people crossing at the next point, else "
        "the mean people on the leg leading there, else equal",
        f"lags: distance at {KM_PER_DAY['land']:g} km/day overland and {KM_PER_DAY['sea']:g} km/day at sea, plus "
        f"{WAIT_DAYS['land']:g} days' wait before a land leg and {WAIT_DAYS['sea']:g} before a sea leg (assumed)",
    )
    return Network(points=tuple(points), links=tuple(links), notes=notes)


def _sigma(level_sigma: Mapping[str, float], sid: str) -> float | None:
    value = level_sigma.get(sid)
    return float(value) if value is not None and math.isfinite(value) and value >= 0 else None


def _without_loops(links: list[Link]) -> list[Link]:
    """``links`` less those that would close a loop, shortest lags first: two points a few km apart (a beach next to
    a port) can each lie on the other's way; the longer way round is dropped and its share given to the others."""
    kept: list[Link] = []
    succ: dict[str, set[str]] = {}

    def reaches(a: str, b: str) -> bool:
        seen, todo = {a}, [a]
        while todo:
            for n in succ.get(todo.pop(), ()):
                if n == b:
                    return True
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return False

    for link in sorted(links, key=lambda k: (k.lag_days, k.from_point, k.to_point)):
        if link.to_point != link.from_point and not reaches(link.to_point, link.from_point):
            kept.append(link)
            succ.setdefault(link.from_point, set()).add(link.to_point)
    out: dict[str, float] = {}
    for link in kept:
        out[link.from_point] = out.get(link.from_point, 0.0) + link.share
    return [
        Link(k.route_id, k.from_point, k.to_point, k.share / out[k.from_point], k.lag_days, k.mode)
        for k in sorted(kept, key=lambda k: (k.from_point, k.to_point))
    ]


def _weight(route_id: str, point_id: str, leg: str, means: dict[str, float]) -> float | None:
    """How many people go the way to ``point_id`` (reached along ``leg``), relative to the other ways: its published
    mean people crossing per day, else the mean people on the leg, else None (unknown)."""
    for sid in (f"people/point:{route_id}/{point_id}", f"people/segment:{route_id}/{leg}"):
        mean = means.get(sid)
        if mean is not None and mean > 0:
            return float(mean)
    return None


def sea_feeders(route: Route, entries: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Per departure point of ``route``, the entry points (``entries``) its boats reach: the points met first along
    its ways (``_RouteGeometry.ways``) whose first step is a sea leg, walking on through points that are not entry
    points (Zuwara's boats land at Lampedusa, whose people go on to Porto Empedocle). A departure point whose boats
    reach no entry point (a leg to a coast without one) is absent."""
    entries = set(entries)
    geometry = _RouteGeometry(route, list(route.crossing_points))
    sea = {s.id for s in route.segments if s.mode == "sea"}
    out: dict[str, tuple[str, ...]] = {}
    for p in route.crossing_points:
        if p.role != "departure":
            continue
        reached: set[str] = set()
        todo = [q for q, _, leg in geometry.ways(p.id) if leg in sea]
        seen = {p.id, *todo}
        while todo:
            q = todo.pop()
            if q in entries:
                reached.add(q)
                continue
            for nxt, _, _ in geometry.ways(q):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        if reached:
            out[p.id] = tuple(sorted(reached))
    return out
