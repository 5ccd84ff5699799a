"""Series ids: unique across the gold table and everything published.

``all``, ``route:<route>``, ``segment:<route>/<segment>`` for density; ``flow:<route>/<segment>><to_segment>`` for
a segment-to-segment flow within a route; ``point:<route>/<crossing point>`` for what crosses at a crossing point;
other sources are prefixed: ``frontex/route:central_mediterranean``, ``people/point:central_mediterranean/pozzallo``.
"""

from __future__ import annotations

DENSITY_SOURCE = "density"
# People estimated from the density by the measurement model (forecasting.people): present per route and segment
# (a stock), crossing per crossing point (a flow: arrivals at landings and borders, departures at departure points).
PEOPLE_SOURCE = "people"
LEVELS = ("all", "route", "segment", "flow", "point")


def series_id(
    level: str,
    route_id: str | None = None,
    segment_id: str | None = None,
    source: str = DENSITY_SOURCE,
    *,
    to_segment: str | None = None,
    crossing_point: str | None = None,
) -> str:
    """The id of one series; ``ValueError`` for an unknown level, a flow without ``to_segment`` or a point without
    ``crossing_point``."""
    if level == "all":
        key = "all"
    elif level == "route":
        key = f"route:{route_id}"
    elif level == "segment":
        key = f"segment:{route_id}/{segment_id}"
    elif level == "flow":
        if to_segment is None:
            raise ValueError("a flow series id needs to_segment (the segment the flow goes to)")
        key = f"flow:{route_id}/{segment_id}>{to_segment}"
    elif level == "point":
        if crossing_point is None:
            raise ValueError("a point series id needs crossing_point (the crossing point's id)")
        key = f"point:{route_id}/{crossing_point}"
    else:
        raise ValueError(f"unknown level {level!r}; expected {'|'.join(LEVELS)}")
    return key if source == DENSITY_SOURCE else f"{source}/{key}"


def crossing_point_of(point_series_id: str) -> str:
    """The crossing point's id in a point series id (``[<source>/]point:<route>/<crossing point>``)."""
    if "point:" not in point_series_id:
        raise ValueError(f"{point_series_id!r} is not a point series id (point:<route>/<crossing point>)")
    return point_series_id.rsplit("/", 1)[-1]
