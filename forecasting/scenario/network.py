"""The route network as the scenario engine sees it: crossing points per route and the links between them.

A plain structure, built by whoever knows the catalogue (the engine imports nothing of routecast's): the crossing
points of each route with their role, and links "of the people passing point A on route R, a share s pass point B
``lag_days`` later". A point's links out need not add up to 1: the rest of its people leave the route there (a
landing's people have arrived; some are returned or lost at sea). Points are keyed by ``(route_id, point_id)``:
the same id may appear on two routes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from forecasting.scenario.spec import ScenarioError, Target

__all__ = ["ROLES", "Link", "Network", "NetworkError", "NetworkPoint", "PointKey", "point_label"]

ROLES = ("departure", "border", "landing", "hub")
MODES = (None, "land", "sea")
PointKey = tuple[str, str]  # (route_id, point_id)
_SHARE_TOL = 1e-9


class NetworkError(ValueError):
    """The network handed to the engine is inconsistent (a programming error of whoever built it)."""


def point_label(key: PointKey) -> str:
    """``point:<route>/<point>``, the way targets are written."""
    return f"point:{key[0]}/{key[1]}"


@dataclass(frozen=True)
class NetworkPoint:
    """A crossing point of a route: ``role`` is departure, border, landing or hub; ``segment_id`` is optional.
    ``level_sigma``: the log-scale error of the level of its published people (a measurement error, the same on
    every day), which its published intervals include; None where unknown."""

    route_id: str
    point_id: str
    role: str
    segment_id: str | None = None
    level_sigma: float | None = None

    @property
    def key(self) -> PointKey:
        return (self.route_id, self.point_id)


@dataclass(frozen=True)
class Link:
    """Of the people passing ``from_point`` on ``route_id``, ``share`` (0..1) pass ``to_point`` ``lag_days`` later
    (on average; the engine spreads people's transit times around it). ``mode`` is the leg's (``land`` or ``sea``)
    where known: a land link out of a departure point carries people who pass it without setting sail there
    (``Network.onward_links``)."""

    route_id: str
    from_point: str
    to_point: str
    share: float
    lag_days: float
    mode: str | None = None

    @property
    def source(self) -> PointKey:
        return (self.route_id, self.from_point)

    @property
    def target(self) -> PointKey:
        return (self.route_id, self.to_point)


@dataclass(frozen=True)
class Network:
    """Crossing points and links; checked on construction (``NetworkError``): unique points, known roles, links
    between points of their own route with a share in [0, 1], shares out of a point adding up to at most 1, lags
    >= 0, and no loop."""

    points: tuple[NetworkPoint, ...]
    links: tuple[Link, ...] = ()
    notes: tuple[str, ...] = ()  # how the network was made (sources of its shares and lags), for the reader

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))
        object.__setattr__(self, "links", tuple(self.links))
        object.__setattr__(self, "notes", tuple(self.notes))
        seen: set[PointKey] = set()
        for p in self.points:
            if p.role not in ROLES:
                raise NetworkError(f"point {point_label(p.key)}: unknown role {p.role!r}; expected {'|'.join(ROLES)}")
            if p.key in seen:
                raise NetworkError(f"point {point_label(p.key)} is listed twice")
            if p.level_sigma is not None and not p.level_sigma >= 0:
                raise NetworkError(f"point {point_label(p.key)}: level_sigma {p.level_sigma} is not >= 0")
            seen.add(p.key)
        out: dict[PointKey, float] = {}
        for link in self.links:
            for key in (link.source, link.target):
                if key not in seen:
                    raise NetworkError(f"link {link.from_point}->{link.to_point}: no point {point_label(key)}")
            if not 0.0 <= link.share <= 1.0:
                raise NetworkError(f"link {link.from_point}->{link.to_point}: share {link.share} outside [0, 1]")
            if link.lag_days < 0:
                raise NetworkError(f"link {link.from_point}->{link.to_point}: negative lag_days {link.lag_days}")
            if link.mode not in MODES:
                raise NetworkError(f"link {link.from_point}->{link.to_point}: unknown mode {link.mode!r}")
            out[link.source] = out.get(link.source, 0.0) + link.share
        for key, total in out.items():
            if total > 1.0 + _SHARE_TOL:
                raise NetworkError(f"the links out of {point_label(key)} share {total:g} of its people, more than 1")
        topological_order(self.keys, [(link.source, link.target) for link in self.links])

    @functools.cached_property
    def keys(self) -> tuple[PointKey, ...]:
        """Every point's key, in the order given."""
        return tuple(p.key for p in self.points)

    @functools.cached_property
    def _by_key(self) -> dict[PointKey, NetworkPoint]:
        return {p.key: p for p in self.points}

    @functools.cached_property
    def routes(self) -> tuple[str, ...]:
        """The route ids, sorted."""
        return tuple(sorted({p.route_id for p in self.points}))

    def point(self, key: PointKey) -> NetworkPoint:
        return self._by_key[key]

    def to_dict(self) -> dict:
        """The network as plain JSON-able data (``from_dict`` reads it back): ``points`` and ``links``, each a list of
        mappings of their fields, plus ``notes`` (how the network was made; kept, never read by the engine)."""
        return {
            "points": [
                {
                    "route_id": p.route_id,
                    "point_id": p.point_id,
                    "role": p.role,
                    "segment_id": p.segment_id,
                    "level_sigma": p.level_sigma,
                }
                for p in self.points
            ],
            "links": [
                {
                    "route_id": k.route_id,
                    "from_point": k.from_point,
                    "to_point": k.to_point,
                    "share": k.share,
                    "lag_days": k.lag_days,
                    "mode": k.mode,
                }
                for k in self.links
            ],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Network:
        """The network ``to_dict`` wrote; ``NetworkError`` naming what is malformed."""
        try:
            points = tuple(NetworkPoint(**p) for p in data["points"])
            links = tuple(
                Link(
                    route_id=k["route_id"],
                    from_point=k["from_point"],
                    to_point=k["to_point"],
                    share=float(k["share"]),
                    lag_days=float(k["lag_days"]),
                    mode=k.get("mode"),
                )
                for k in data.get("links", ())
            )
        except (KeyError, TypeError, ValueError) as e:
            raise NetworkError(f"malformed network: {type(e).__name__}: {e}") from e
        return cls(points=points, links=links, notes=tuple(str(n) for n in data.get("notes", ())))

    def has_point(self, key: PointKey) -> bool:
        return key in self._by_key

    @functools.cached_property
    def _out(self) -> dict[PointKey, tuple[Link, ...]]:
        out: dict[PointKey, list[Link]] = {}
        for link in self.links:
            out.setdefault(link.source, []).append(link)
        return {k: tuple(v) for k, v in out.items()}

    def links_from(self, key: PointKey) -> tuple[Link, ...]:
        """The links out of a point, in the order given."""
        return self._out.get(key, ())

    def onward_links(self, key: PointKey) -> tuple[Link, ...]:
        """The links out of a departure point along a land leg: the people passing it on their way to the next
        points without setting sail there (a town on the coast road to the next beach). Its published crossings
        count only those who set sail; its other links carry them. Empty for any other point, or a link of unknown
        mode."""
        if self.point(key).role != "departure":
            return ()
        return tuple(link for link in self.links_from(key) if link.mode == "land")

    def exit_share(self, key: PointKey) -> float:
        """The share of the people passing ``key`` who leave the route there (1 minus the shares of its links out)."""
        return max(0.0, 1.0 - sum(link.share for link in self.links_from(key)))

    def downstream(self, keys: Iterable[PointKey], *, sailing: bool = False) -> set[PointKey]:
        """``keys`` and every point some of their people reach through links (``sailing``: only the people who set
        sail, not along a departure point's onward links)."""
        reached, todo = set(keys), list(keys)
        while todo:
            key = todo.pop()
            skip = set(self.onward_links(key)) if sailing else set()
            for link in self.links_from(key):
                if link in skip:
                    continue
                if link.target not in reached:
                    reached.add(link.target)
                    todo.append(link.target)
        return reached

    def resolve(self, target: Target, field: str, *, sailing: bool = False) -> tuple[PointKey, ...]:
        """The points a target acts on; ``ScenarioError`` naming ``field`` for an unknown or ambiguous target.

        A point target is that point. A segment or route target is its departure points (role ``departure``) or,
        where it has none (a land route), all its points; of those, the ones no other of them leads to through
        links (so that nobody is blocked or multiplied twice). ``sailing`` (a surge of departures, which acts on
        those who set sail): a departure point reached only along another's onward links is kept, since the people
        setting sail at each are different people."""
        if target.point is not None:
            return (self._resolve_point(target, field),)
        if target.route not in self.routes:
            raise ScenarioError(f"{field}: unknown route {target.route!r}; known routes: {', '.join(self.routes)}")
        members = [p for p in self.points if p.route_id == target.route]
        if target.segment is not None:
            segments = sorted({p.segment_id for p in members if p.segment_id})
            if target.segment not in segments:
                raise ScenarioError(
                    f"{field}: no crossing point on segment {target.segment!r} of route {target.route}; "
                    f"segments with points: {', '.join(segments) or 'none'}"
                )
            members = [p for p in members if p.segment_id == target.segment]
        departures = [p.key for p in members if p.role == "departure"]
        candidates = departures or [p.key for p in members]
        below = {o: self.downstream([o], sailing=sailing) - {o} for o in candidates}
        return tuple(k for k in candidates if not any(k in below[o] for o in candidates if o != k))

    def _resolve_point(self, target: Target, field: str) -> PointKey:
        if target.route is not None:
            key = (target.route, target.point)
            if key in self._by_key:
                return key
            if target.route not in self.routes:
                raise ScenarioError(f"{field}: unknown route {target.route!r}; known routes: {', '.join(self.routes)}")
            raise ScenarioError(f"{field}: route {target.route} has no crossing point {target.point!r}")
        owners = [p.route_id for p in self.points if p.point_id == target.point]
        if not owners:
            raise ScenarioError(f"{field}: unknown crossing point {target.point!r}")
        if len(owners) > 1:
            raise ScenarioError(
                f"{field}: crossing point {target.point!r} is on routes {', '.join(owners)}; "
                f"write point:<route>/{target.point}"
            )
        return (owners[0], target.point)


def topological_order(nodes: Iterable[PointKey], edges: Iterable[tuple[PointKey, PointKey]]) -> list[PointKey]:
    """``nodes`` so that every edge goes forward (ties in the given order); ``NetworkError`` naming a loop."""
    nodes = list(nodes)
    succ: dict[PointKey, list[PointKey]] = {n: [] for n in nodes}
    indegree = dict.fromkeys(nodes, 0)
    for a, b in edges:
        if a in succ and b in succ:
            succ[a].append(b)
            indegree[b] += 1
    ready = [n for n in nodes if indegree[n] == 0]
    order: list[PointKey] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indegree[m] -= 1
            if indegree[m] == 0:
                ready.append(m)
    if len(order) < len(nodes):
        stuck = sorted(point_label(n) for n in nodes if indegree[n] > 0)
        raise NetworkError(f"the links loop through {', '.join(stuck[:4])}")
    return order
