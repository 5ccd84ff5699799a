"""Entry points: the crossing points of each route where a person enters the EU or the UK, and where official
statistics count arrivals (Frontex per route, the Home Office on the Channel).

Every landing site on the sea routes, plus the land borders into the EU; internal transit borders (Niger-Libya,
Greece-North Macedonia, ...) are not entry points. Central Mediterranean: 'lampedusa' sits on zuwara_lampedusa only,
so it would count only the landings from Zuwara; every Lampedusa landing (from Zuwara, Sfax, Garabulli...) passes
'porto_empedocle' after the hotspot transfer, which stands in for them (counting both would count the Zuwara boats
twice). Used by the simulator to make its official figures and by the people stage to split a route's arrivals.
"""

from __future__ import annotations

from geo.catalogue import Catalogue, CrossingPoint, Route

EXCLUDED_LANDINGS = {"central_mediterranean": ("lampedusa",)}
ENTRY_BORDERS = {
    "eastern_mediterranean": ("kastanies",),
    "western_mediterranean": ("ceuta", "melilla"),
    "western_balkans": ("horgos", "velika_kladusa", "sid", "apatin"),
    "eastern_borders": (
        "kuznica",
        "bialowieza",
        "medininkai",
        "braslaw",
        "verkhnyadzvinsk",
        "berastavitsa",
        "janow_podlaski",
        "wlodawa",
    ),
}


def route_entry_points(route: Route) -> tuple[CrossingPoint, ...]:
    """The crossing points of ``route`` where an official statistic counts an arrival, in catalogue order."""
    excluded = EXCLUDED_LANDINGS.get(route.id, ())
    borders = ENTRY_BORDERS.get(route.id, ())
    return tuple(
        p
        for p in route.crossing_points
        if (p.role == "landing" and p.id not in excluded) or (p.role == "border" and p.id in borders)
    )


def entry_points(catalogue: Catalogue) -> dict[str, tuple[str, ...]]:
    """Per route of ``catalogue``, the ids of its entry points (:func:`route_entry_points`)."""
    return {route.id: tuple(p.id for p in route_entry_points(route)) for route in catalogue}
