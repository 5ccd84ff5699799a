"""Where an official statistic would count a person entering the EU or the UK, in the simulated world.

Coarse figures made from the simulator's truth (monthly arrivals per route as Frontex publishes them, daily
arrivals as the UK publishes the Channel's) count people at these crossing points: every landing site on the sea
routes, plus the land borders into the EU. Central Mediterranean: 'lampedusa' sits on zuwara_lampedusa only, so the
simulator counts there only the landings from Zuwara; every Lampedusa landing (from Zuwara, Sfax, Garabulli...)
passes 'porto_empedocle' after the hotspot transfer, which stands in for them (counting both would count the Zuwara
boats twice).
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
