"""Where the simulated world's official statistics count arrivals (simulator/official.py), against the catalogue."""

from __future__ import annotations

from simulator.official import ENTRY_BORDERS, EXCLUDED_LANDINGS, entry_points, route_entry_points


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
