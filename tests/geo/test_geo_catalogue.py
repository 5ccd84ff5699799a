"""The route catalogue: the packaged routes, lookups, GeoJSON export, and every validation failure."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from geo.catalogue import (
    DEFAULT_ROUTES_DIR,
    Catalogue,
    CatalogueError,
    RouteNotFound,
    SegmentNotFound,
    cached_catalogue,
    load_catalogue,
    route_to_geojson,
)

SEVEN_ROUTES = [
    "central_mediterranean",
    "channel",
    "eastern_borders",
    "eastern_mediterranean",
    "western_african",
    "western_balkans",
    "western_mediterranean",
]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


# --- the packaged catalogue ---------------------------------------------------------------------------------


def test_all_seven_routes_load_with_ids_matching_file_names(catalogue):
    assert catalogue.route_ids() == SEVEN_ROUTES
    assert sorted(p.stem for p in DEFAULT_ROUTES_DIR.glob("*.geojson")) == SEVEN_ROUTES


@pytest.mark.parametrize("route_id", SEVEN_ROUTES)
def test_each_route_has_segments_in_order_and_crossing_points(catalogue, route_id):
    route = catalogue.route(route_id)
    assert len(route.segments) >= (1 if route_id == "channel" else 2)
    assert len(route.crossing_points) >= 2
    assert [s.order for s in route.segments] == list(range(1, len(route.segments) + 1))
    for segment in route.segments:
        # The packaged files name one place per vertex, in travel order.
        assert len(segment.places) == len(segment.line.coords)
        assert segment.mode in ("land", "sea")
        assert segment.buffer_km == 25 if segment.mode == "land" else 15 <= segment.buffer_km <= 30
    roles = {p.role for p in route.crossing_points}
    assert roles & {"departure", "border"}, "a route needs somewhere arrivals start or cross"


@pytest.mark.parametrize("route_id", SEVEN_ROUTES)
def test_route_geometry_is_lon_lat_between_west_africa_and_belarus(catalogue, route_id):
    # Every place lies in 10..60°N, 20°W..40°E; a lat/lon swap would put Europe's latitudes (35..56) in
    # the longitude slot, outside this box for all but the easternmost points, and latitudes 0..30 below 10.
    route = catalogue.route(route_id)
    points = [xy for s in route.segments for xy in s.line.coords] + [(p.lon, p.lat) for p in route.crossing_points]
    for lon, lat in points:
        assert -20 < lon < 40 and 10 < lat < 60, (route_id, lon, lat)


def test_known_places_have_their_coordinates(catalogue):
    # Checked by hand on a map: Dover 1.31°E 51.13°N, Lampedusa 12.61°E 35.50°N, Agadez 7.99°E 16.97°N.
    dover = next(p for p in catalogue.route("channel").crossing_points if p.id == "dover")
    assert (dover.lon, dover.lat) == pytest.approx((1.31, 51.13), abs=0.01)
    lampedusa = next(p for p in catalogue.route("central_mediterranean").crossing_points if p.id == "lampedusa")
    assert (lampedusa.lon, lampedusa.lat) == pytest.approx((12.61, 35.50), abs=0.01)
    agadez_sabha = catalogue.route("central_mediterranean").segment("agadez_sabha")
    assert agadez_sabha.line.coords[0] == pytest.approx((7.99, 16.97), abs=0.01)
    assert agadez_sabha.places[0] == "Agadez" and agadez_sabha.places[-1] == "Sabha"


def test_official_names_map_to_routes(catalogue):
    assert catalogue.official_name_map("frontex") == {
        "Central Mediterranean Route": "central_mediterranean",
        "Eastern Mediterranean Route": "eastern_mediterranean",
        "Western Balkan Route": "western_balkans",
        "Western Mediterranean Route": "western_mediterranean",
        "Western African Route": "western_african",
        "Eastern Borders Route": "eastern_borders",
    }
    assert catalogue.official_name_map("iom_dtm") == {
        "ITA": "central_mediterranean",
        "MLT": "central_mediterranean",
        "GRC": "eastern_mediterranean",
        "CYP": "eastern_mediterranean",
        "BGR": "eastern_mediterranean",
        "ESP-WMR": "western_mediterranean",
        "ESP-WAAR": "western_african",
    }
    assert catalogue.official_name_map("uk_home_office") == {"small boats": "channel"}
    assert catalogue.official_name_map("no_such_source") == {}


def test_every_route_has_a_missing_migrants_project_name(catalogue):
    assert set(catalogue.official_name_map("iom_mmp").values()) == set(SEVEN_ROUTES)


# --- lookups ------------------------------------------------------------------------------------------------


def test_route_not_found_lists_known_ids(catalogue):
    with pytest.raises(RouteNotFound) as info:
        catalogue.route("aegean")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "unknown route 'aegean'; known routes: " + ", ".join(SEVEN_ROUTES)


def test_segment_lookup_and_segment_not_found(catalogue):
    route = catalogue.route("channel")
    assert route.segment("calais_dover").places == ("Calais", "Dover")
    with pytest.raises(SegmentNotFound) as info:
        route.segment("dover_calais")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == (
        "route 'channel' has no segment 'dover_calais'; "
        "its segments are: french_coast, calais_dover, boulogne_dungeness"
    )


def test_subset_keeps_catalogue_order_and_refuses_unknown_ids(catalogue):
    sub = catalogue.subset(["western_balkans", "channel"])
    assert sub.route_ids() == ["channel", "western_balkans"]
    assert [r.id for r in sub] == ["channel", "western_balkans"] and len(sub) == 2
    assert catalogue.subset("channel").route_ids() == ["channel"]
    with pytest.raises(RouteNotFound, match=r"unknown route\(s\) 'atlantis', 'arctic'; known routes: central_"):
        catalogue.subset(["channel", "atlantis", "arctic"])


def test_cached_catalogue_is_loaded_once_and_equals_a_fresh_load(catalogue):
    assert cached_catalogue() is cached_catalogue(DEFAULT_ROUTES_DIR)
    assert cached_catalogue() == catalogue


def test_catalogue_is_hashable_so_it_can_key_caches(catalogue):
    assert hash(catalogue) == hash(load_catalogue())


# --- GeoJSON export -----------------------------------------------------------------------------------------


def test_route_to_geojson_lists_segments_then_points_with_route_id(catalogue):
    doc = route_to_geojson(catalogue.route("channel"))
    assert doc["type"] == "FeatureCollection"
    kinds = [f["properties"]["kind"] for f in doc["features"]]
    assert kinds == ["segment"] * 3 + ["crossing_point"] * 7
    assert {f["properties"]["route_id"] for f in doc["features"]} == {"channel"}
    calais_dover = doc["features"][1]
    assert calais_dover["geometry"] == {
        "type": "LineString",
        "coordinates": [[1.8564, 50.9519], [1.3126, 51.126]],
    }
    json.dumps(doc)  # serialisable as is


@pytest.mark.parametrize("route_id", SEVEN_ROUTES)
def test_route_to_geojson_loads_back_to_the_same_route(catalogue, route_id, tmp_path):
    route = catalogue.route(route_id)
    (tmp_path / f"{route_id}.geojson").write_text(json.dumps(route_to_geojson(route)), encoding="utf-8")
    assert load_catalogue(tmp_path).route(route_id) == route


# --- validation ---------------------------------------------------------------------------------------------


def _feature(doc: dict, feature_id: str) -> dict:
    return next(f for f in doc["features"] if f["properties"].get("id") == feature_id)


def _broken_channel(tmp_path: Path, breakage: Callable[[dict], None]) -> Path:
    doc = json.loads((DEFAULT_ROUTES_DIR / "channel.geojson").read_text(encoding="utf-8"))
    breakage(doc)
    (tmp_path / "channel.geojson").write_text(json.dumps(doc), encoding="utf-8")
    return tmp_path


def _set(feature_id: str, key: str, value) -> Callable[[dict], None]:
    return lambda doc: _feature(doc, feature_id)["properties"].__setitem__(key, value)


def _drop(feature_id: str, key: str) -> Callable[[dict], None]:
    return lambda doc: _feature(doc, feature_id)["properties"].pop(key)


def _set_coordinates(feature_id: str, coordinates) -> Callable[[dict], None]:
    return lambda doc: _feature(doc, feature_id)["geometry"].__setitem__("coordinates", coordinates)


# (breakage, text the message must contain after "channel.geojson: ")
BROKEN = {
    "route member missing": (lambda d: d.pop("route"), "field 'route' missing"),
    "route id missing": (lambda d: d["route"].pop("id"), "field 'route.id' missing"),
    "route name missing": (lambda d: d["route"].pop("name"), "field 'route.name' missing"),
    "route id not matching file name": (
        lambda d: d["route"].__setitem__("id", "channel_crossing"),
        "field 'route.id': 'channel_crossing' does not match the file name",
    ),
    "route id not snake_case": (
        lambda d: d["route"].__setitem__("id", "Channel"),
        "field 'route.id' must be snake",
    ),
    "unknown route field": (
        lambda d: d["route"].__setitem__("colour", "red"),
        "field 'route.colour' is not a known",
    ),
    "unknown frontex name": (
        lambda d: d["route"]["official_names"].__setitem__("frontex", ["Channel Route"]),
        "field 'route.official_names.frontex': 'Channel Route' is not a Frontex route name",
    ),
    "dtm country not iso3": (
        lambda d: d["route"]["official_names"].__setitem__("iom_dtm", ["UK"]),
        "field 'route.official_names.iom_dtm': 'UK' is not an ISO-3 country code",
    ),
    "segment order missing": (
        _drop("calais_dover", "order"),
        "feature 1 (segment 'calais_dover'): field 'order' missing",
    ),
    "segment order not a number": (
        _set("calais_dover", "order", "2"),
        "feature 1 (segment 'calais_dover'): field 'order'",
    ),
    "segment order gap": (
        _set("calais_dover", "order", 5),
        "segments: field 'order' must number the segments 1..3",
    ),
    "segment order repeated": (_set("calais_dover", "order", 1), "got [1, 1, 3]"),
    "segment mode invalid": (
        _set("calais_dover", "mode", "air"),
        "(segment 'calais_dover'): field 'mode' must be one of",
    ),
    "segment name missing": (_drop("calais_dover", "name"), "(segment 'calais_dover'): field 'name' missing"),
    "segment id missing": (_drop("calais_dover", "id"), "feature 1 (segment): field 'id' missing"),
    "segment id not snake_case": (
        _set("calais_dover", "id", "calais-dover"),
        "field 'id' must be snake_case",
    ),
    "segment places missing": (
        _drop("calais_dover", "places"),
        "(segment 'calais_dover'): field 'places' missing",
    ),
    "unknown segment field": (_set("calais_dover", "bufer_km", 20), "field 'bufer_km' is not a known field"),
    "buffer_km zero": (
        _set("calais_dover", "buffer_km", 0),
        "(segment 'calais_dover'): field 'buffer_km' must be a pos",
    ),
    "buffer_km negative": (
        _set("calais_dover", "buffer_km", -5),
        "field 'buffer_km' must be a positive number",
    ),
    "buffer_km missing on sea": (
        _drop("calais_dover", "buffer_km"),
        "field 'buffer_km' missing (required for sea",
    ),
    "duplicate segment id": (
        _set("boulogne_dungeness", "id", "calais_dover"),
        "feature 2 (segment 'calais_dover'): field 'id' duplicates feature 1",
    ),
    "segment with one vertex": (
        _set_coordinates("calais_dover", [[1.8564, 50.9519]]),
        "(segment 'calais_dover'): field 'geometry.coordinates' needs at least 2 vertices, got 1",
    ),
    "segment repeating a vertex": (
        _set_coordinates("calais_dover", [[1.8564, 50.9519], [1.8564, 50.9519]]),
        "field 'geometry.coordinates[1]' repeats the previous vertex",
    ),
    "longitude out of range": (
        _set_coordinates("calais_dover", [[181.0, 50.9519], [1.3126, 51.126]]),
        "field 'geometry.coordinates[0]': longitude 181.0 out of range -180..180",
    ),
    "latitude out of range": (
        _set_coordinates("calais_dover", [[1.8564, 50.9519], [1.3126, -91]]),
        "field 'geometry.coordinates[1]': latitude -91 out of range -90..90",
    ),
    "position not numbers": (
        _set_coordinates("calais_dover", [[1.8564, "50.9519"], [1.3126, 51.126]]),
        "field 'geometry.coordinates[0]' must be a [lon, lat] position",
    ),
    "point latitude out of range": (
        _set_coordinates("dover", [1.3126, 151.126]),
        "feature 8 (crossing_point 'dover'): field 'geometry.coordinates': latitude 151.126 out of range",
    ),
    "segment geometry is a point": (
        lambda d: _feature(d, "calais_dover").__setitem__("geometry", {"type": "Point", "coordinates": [1, 50]}),
        "(segment 'calais_dover'): field 'geometry.type' must be 'LineString'",
    ),
    "unknown kind": (
        _set("dover", "kind", "harbour"),
        "feature 8: field 'kind' must be one of segment, crossing_p",
    ),
    "kind missing": (_drop("dover", "kind"), "feature 8: field 'kind' missing"),
    "crossing role invalid": (
        _set("dover", "role", "port"),
        "(crossing_point 'dover'): field 'role' must be one of",
    ),
    "crossing segment missing": (
        _drop("dover", "segment"),
        "(crossing_point 'dover'): field 'segment' missing",
    ),
    "crossing point on unknown segment": (
        _set("dover", "segment", "dover_calais"),
        "feature 8 (crossing_point 'dover'): field 'segment' names unknown segment 'dover_calais'",
    ),
    "duplicate crossing point id": (
        _set("calais", "id", "dover"),
        "feature 8 (crossing_point 'dover'): field 'id' duplicates feature 5",
    ),
    "no segments": (
        lambda d: d.__setitem__("features", [f for f in d["features"] if f["properties"]["kind"] != "segment"]),
        "field 'features': no feature of kind 'segment'",
    ),
    "not a feature collection": (
        lambda d: d.__setitem__("type", "Feature"),
        "field 'type': the file must be",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_route_file_is_refused_naming_file_and_field(tmp_path, case):
    breakage, expected = BROKEN[case]
    directory = _broken_channel(tmp_path, breakage)
    with pytest.raises(CatalogueError) as info:
        load_catalogue(directory)
    message = str(info.value)
    assert message.startswith("channel.geojson: ")
    assert expected in message
    assert isinstance(info.value, ValueError)


def test_missing_field_message_is_exact(tmp_path):
    directory = _broken_channel(tmp_path, _drop("calais_dover", "order"))
    with pytest.raises(CatalogueError) as info:
        load_catalogue(directory)
    assert str(info.value) == "channel.geojson: feature 1 (segment 'calais_dover'): field 'order' missing"


def test_land_segment_without_buffer_gets_25_km(tmp_path):
    directory = _broken_channel(tmp_path, _drop("french_coast", "buffer_km"))
    assert load_catalogue(directory).route("channel").segment("french_coast").buffer_km == 25.0


def test_file_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "channel.geojson").write_text('{"type": "FeatureCollection",\n  "route": }', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"^channel\.geojson: not valid JSON \(line 2, column 12: "):
        load_catalogue(tmp_path)


def test_json_with_a_repeated_key_is_refused(tmp_path):
    (tmp_path / "channel.geojson").write_text('{"type": "FeatureCollection", "type": "x"}', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"^channel\.geojson: not valid JSON \(duplicate key 'type'\)"):
        load_catalogue(tmp_path)


def test_duplicate_route_id_across_files_is_refused(tmp_path):
    shutil.copy(DEFAULT_ROUTES_DIR / "channel.geojson", tmp_path / "channel.geojson")
    shutil.copy(DEFAULT_ROUTES_DIR / "channel.geojson", tmp_path / "channel_copy.geojson")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(tmp_path)
    assert str(info.value) == (
        "channel_copy.geojson: field 'route.id': 'channel' is already defined by channel.geojson"
    )


def test_official_name_claimed_by_two_routes_is_refused(tmp_path):
    shutil.copy(DEFAULT_ROUTES_DIR / "channel.geojson", tmp_path / "channel.geojson")
    doc = json.loads((DEFAULT_ROUTES_DIR / "western_balkans.geojson").read_text(encoding="utf-8"))
    doc["route"]["official_names"]["uk_home_office"] = ["small boats"]
    (tmp_path / "western_balkans.geojson").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CatalogueError) as info:
        load_catalogue(tmp_path)
    assert str(info.value).startswith(
        "western_balkans.geojson: field 'route.official_names.uk_home_office': "
        "'small boats' is already mapped to route 'channel'"
    )


def test_empty_or_missing_directory_is_refused(tmp_path):
    with pytest.raises(CatalogueError, match=r"routes directory .*: no \*\.geojson route files"):
        load_catalogue(tmp_path)
    with pytest.raises(CatalogueError, match=r"routes directory .*nowhere: not a directory"):
        load_catalogue(tmp_path / "nowhere")


def test_successions_are_the_legs_that_start_where_another_ends_or_passes(catalogue):
    central = catalogue.route("central_mediterranean").successions()
    assert ("agadez_sabha", "sabha_tripoli") in central and ("sabha_tripoli", "agadez_sabha") not in central
    # A coast leg leads to the crossings that leave from its towns, not only from its last one.
    assert set(catalogue.route("channel").successions()) == {
        ("french_coast", "calais_dover"),
        ("french_coast", "boulogne_dungeness"),
    }
    for route in catalogue:
        ids = {s.id for s in route.segments}
        assert all(a in ids and b in ids and a != b for a, b in route.successions())
