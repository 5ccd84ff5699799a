"""Series ids: unique across the gold table and everything published.

``all``, ``route:<route>``, ``segment:<route>/<segment>`` for density; ``flow:<route>/<segment>><to_segment>`` for
a segment-to-segment flow within a route; other sources are prefixed: ``frontex/route:central_mediterranean``.
"""

from __future__ import annotations

DENSITY_SOURCE = "density"
LEVELS = ("all", "route", "segment", "flow")


def series_id(
    level: str,
    route_id: str | None = None,
    segment_id: str | None = None,
    source: str = DENSITY_SOURCE,
    *,
    to_segment: str | None = None,
) -> str:
    """The id of one series; ``ValueError`` for an unknown level or a flow without ``to_segment``."""
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
    else:
        raise ValueError(f"unknown level {level!r}; expected {'|'.join(LEVELS)}")
    return key if source == DENSITY_SOURCE else f"{source}/{key}"
