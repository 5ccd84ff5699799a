"""Where the simulated world's official statistics count arrivals (simulator/official.py), against the catalogue."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from simulator.official import (
    ENTRY_BORDERS,
    EXCLUDED_LANDINGS,
    FRONTEX_FILE,
    LANDINGS_FILE,
    UK_CHANNEL_FILE,
    entry_points,
    official_figures,
    route_entry_points,
)


def test_every_named_crossing_point_is_in_the_catalogue_with_its_role(catalogue):
    for route_id, borders in ENTRY_BORDERS.items():
        roles = {p.id: p.role for p in catalogue.route(route_id).crossing_points}
        assert {roles.get(b) for b in borders} == {"border"}, route_id
    for route_id, landings in EXCLUDED_LANDINGS.items():
        roles = {p.id: p.role for p in catalogue.route(route_id).crossing_points}
        assert {roles.get(p) for p in landings} == {"landing"}, route_id


def test_every_route_has_entry_points_and_lampedusa_is_counted_once(catalogue):
    points = entry_points(catalogue)
    assert set(points) == set(catalogue.route_ids())
    assert all(points.values()), points
    central = points["central_mediterranean"]
    assert "porto_empedocle" in central and "lampedusa" not in central
    # Only the named borders of a land route count, not every border on the way (e.g. leaving Türkiye).
    balkans = route_entry_points(catalogue.route("western_balkans"))
    assert {p.id for p in balkans if p.role == "border"} == set(ENTRY_BORDERS["western_balkans"])


def _arrivals(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["date", "route_id", "crossing_point_id", "arrivals"])
    return frame.assign(date=pd.to_datetime(frame["date"]).dt.date)


def test_official_figures_publish_whole_months_and_every_day_of_entry_arrivals(catalogue):
    arrivals = _arrivals(
        [
            ("2025-05-31", "central_mediterranean", "porto_empedocle", 100),  # May: not a whole month in the run
            ("2025-06-01", "central_mediterranean", "porto_empedocle", 40),
            ("2025-06-30", "central_mediterranean", "pozzallo", 2),
            ("2025-06-15", "central_mediterranean", "lampedusa", 70),  # counted at porto_empedocle already
            ("2025-07-01", "central_mediterranean", "pozzallo", 5),  # July: not whole either
            ("2025-06-10", "channel", "dover", 30),
            ("2025-06-10", "channel", "dungeness", 12),
            ("2025-06-11", "channel", "dunkirk", 9),  # a departure point of the Channel, not an arrival
        ]
    )
    figures = official_figures(arrivals, catalogue, dt.date(2025, 5, 20), dt.date(2025, 7, 3))
    frontex = figures[FRONTEX_FILE]
    names = {route: name for name, route in catalogue.official_name_map("frontex").items()}
    assert set(frontex["date"]) == {"2025-06-01"}  # the only whole month
    assert len(frontex) == len(names)  # every route with a Frontex name, zeros included
    central = frontex.set_index("route").loc[names["central_mediterranean"]]
    assert central["count"] == 42
    assert frontex.set_index("route").loc[names["western_balkans"], "count"] == 0
    uk = figures[UK_CHANNEL_FILE].set_index("date")["migrants_arrived"]
    assert len(uk) == 45 and uk.sum() == 42 and uk["2025-06-10"] == 42 and uk["2025-06-11"] == 0
    landings = figures[LANDINGS_FILE].set_index(["route", "crossing_point"])["count"]
    assert set(figures[LANDINGS_FILE]["date"]) == {"2025-06-01"}  # whole months only, as the route totals
    assert landings["central_mediterranean", "porto_empedocle"] == 40
    assert landings["central_mediterranean", "pozzallo"] == 2
    # The Home Office publishes the Channel's arrivals per day, not per landing place.
    assert "channel" not in set(landings.index.get_level_values("route"))
    assert landings["central_mediterranean", "valletta"] == 0  # zeros are published
    # Only landing places: Lampedusa (counted at Porto Empedocle), departure points and land borders publish none.
    named = set(landings.index.get_level_values("crossing_point"))
    assert not named & {"lampedusa", "dunkirk", "horgos", "kastanies"}
    # Per route, the landing places add up to what Frontex publishes for it where the route has no entry border.
    assert landings["central_mediterranean"].sum() == central["count"]
