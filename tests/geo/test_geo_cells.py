"""Corridors as H3 cells: id conversion, corridor geometry on the ground, cell → segment table, GeoJSON.

Ground distances here are measured independently of geo.cells: geodesics (pyproj.Geod, WGS84) from a point
to the centre line sampled every 20 m along its lon/lat-straight pieces.
"""

import functools
import math

import h3
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.catalogue import DEFAULT_ROUTES_DIR, Catalogue, Route, Segment, load_catalogue
from geo.cells import (
    cached_cell_segment_table,
    cell_segment_table,
    cell_to_int,
    cells_to_geojson,
    check_res,
    corridor_cells,
    corridor_polygon,
    int_to_cell,
)

GEOD = pyproj.Geod(ellps="WGS84")
CATALOGUE = load_catalogue()
SEGMENT_KEYS = [(route.id, segment.id) for route in CATALOGUE for segment in route.segments]
RESOLUTIONS = [5, 6, 7]


def _segment(key: tuple[str, str]) -> Segment:
    return CATALOGUE.route(key[0]).segment(key[1])


@functools.cache
def _polygon(key: tuple[str, str]) -> shapely.Polygon:
    return corridor_polygon(_segment(key))


@functools.cache
def _cells(key: tuple[str, str], res: int) -> frozenset[int]:
    return frozenset(corridor_cells(_segment(key), res).tolist())


@functools.cache
def _dense_line(key: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    coords = np.asarray(_segment(key).line.coords)
    lons, lats = [], []
    for (x0, y0), (x1, y1) in zip(coords[:-1], coords[1:], strict=True):
        n = int(math.ceil(GEOD.line_length([x0, x1], [y0, y1]) / 20.0)) + 1
        t = np.linspace(0.0, 1.0, n)
        lons.append(x0 + t * (x1 - x0))
        lats.append(y0 + t * (y1 - y0))
    return np.concatenate(lons), np.concatenate(lats)


def ground_distance_m(key: tuple[str, str], lon: float, lat: float) -> float:
    """Geodesic distance from (lon, lat) to the segment's centre line; inf beyond ~60 km."""
    lons, lats = _dense_line(key)
    # Only line samples within ~65 km can be the nearest one for the distances these tests compare.
    near = (np.abs(lats - lat) < 0.6) & (np.abs(lons - lon) < 1.2)
    if not near.any():
        return math.inf
    _, _, distance = GEOD.inv(np.full(near.sum(), lon), np.full(near.sum(), lat), lons[near], lats[near])
    return float(distance.min())


def _centre(cell: int) -> tuple[float, float]:
    """(lon, lat) of a cell centre."""
    lat, lon = h3.cell_to_latlng(int_to_cell(cell))
    return lon, lat


# --- ids and resolutions ------------------------------------------------------------------------------------


@given(
    lat=st.floats(-90, 90, allow_nan=False),
    lon=st.floats(-180, 180, allow_nan=False),
    res=st.integers(0, 15),
)
def test_cell_id_round_trips_between_string_and_int(lat, lon, res):
    cell = h3.latlng_to_cell(lat, lon, res)
    as_int = cell_to_int(cell)
    assert as_int == int(cell, 16)
    assert 0 < as_int < 2**63  # fits int64
    assert int_to_cell(as_int) == cell
    assert int_to_cell(np.int64(as_int)) == cell


def test_known_cell_id_near_calais():
    cell = h3.latlng_to_cell(50.9519, 1.8564, 7)
    assert cell_to_int(cell) == int(cell, 16) == 608430707701710847
    assert int_to_cell(608430707701710847) == "87194814affffff"


@pytest.mark.parametrize("bad", ["zz", "0", "", "87194814bfffffg", None, 5])
def test_cell_to_int_refuses_what_is_not_a_cell(bad):
    with pytest.raises(ValueError, match="not an H3 cell id"):
        cell_to_int(bad)


@pytest.mark.parametrize("bad", [0, -1, 2**63, 2**64, 1.5, "87194814bffffff", 608430707718488062])
def test_int_to_cell_refuses_what_is_not_a_cell(bad):
    with pytest.raises(ValueError, match="not an H3 cell id"):
        int_to_cell(bad)


@pytest.mark.parametrize("bad", [-1, 16, 7.0, True, "7", None])
def test_resolution_outside_0_to_15_is_refused(bad):
    with pytest.raises(ValueError, match="H3 resolution must be a whole number 0..15"):
        check_res(bad)
    with pytest.raises(ValueError):
        corridor_cells(_segment(("channel", "calais_dover")), bad)
    with pytest.raises(ValueError):
        cell_segment_table(CATALOGUE.subset(["channel"]), bad)


def test_numpy_resolution_is_accepted():
    assert check_res(np.int64(7)) == 7


# --- corridor geometry --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(SEGMENT_KEYS),
    fraction=st.floats(0, 1),
    azimuth=st.floats(-180, 180),
    offset=st.floats(0, 2),
)
def test_corridor_polygon_is_buffer_km_wide_on_the_ground(key, fraction, azimuth, offset):
    # Points within 99% of buffer_km of the centre line are in the corridor, points beyond 101% are not: the
    # buffer is metric along the whole line, including the 1,200 km Sahara leg and the far ends of long legs.
    segment = _segment(key)
    start = segment.line.interpolate(fraction, normalized=True)
    lon, lat, _ = GEOD.fwd(start.x, start.y, azimuth, offset * segment.buffer_km * 1000.0)
    distance = ground_distance_m(key, lon, lat)
    inside = _polygon(key).contains(shapely.Point(lon, lat))
    if distance < 0.99 * segment.buffer_km * 1000.0:
        assert inside, (key, lon, lat, distance)
    elif distance > 1.01 * segment.buffer_km * 1000.0:
        assert not inside, (key, lon, lat, distance)


@pytest.mark.parametrize("route_id", [r.id for r in CATALOGUE])
def test_crossing_points_lie_in_their_segment_corridor(route_id):
    route = CATALOGUE.route(route_id)
    for point in route.crossing_points:
        assert _polygon((route_id, point.segment_id)).contains(shapely.Point(point.lon, point.lat)), point.id


@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("key", SEGMENT_KEYS, ids=lambda k: f"{k[0]}.{k[1]}")
def test_corridor_cells_hold_every_vertex_and_exclude_points_3_buffers_away(key, res):
    segment = _segment(key)
    cells = corridor_cells(segment, res)
    assert cells.dtype == np.int64 and np.all(np.diff(cells) > 0)  # sorted and unique
    members = set(cells.tolist())

    # The cell containing a vertex has its centre at most one res-5 cell radius (~10 km) away, inside the
    # >= 15 km buffer.
    for lon, lat in segment.line.coords:
        assert cell_to_int(h3.latlng_to_cell(lat, lon, res)) in members, (lon, lat)

    # From the middle of each piece, 3 buffers out at right angles on either side; kept only if the whole line
    # stays at least 2.5 buffers away (a bending line may come back near the point).
    far = []
    coords = list(segment.line.coords)
    for (x0, y0), (x1, y1) in zip(coords[:-1], coords[1:], strict=True):
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        bearing, _, _ = GEOD.inv(xm, ym, x1, y1)
        for side in (90, -90):
            lon, lat, _ = GEOD.fwd(xm, ym, bearing + side, 3 * segment.buffer_km * 1000.0)
            if ground_distance_m(key, lon, lat) >= 2.5 * segment.buffer_km * 1000.0:
                far.append((lon, lat))
    assert far, "no test point found"
    for lon, lat in far:
        assert cell_to_int(h3.latlng_to_cell(lat, lon, res)) not in members, (lon, lat)


@pytest.mark.parametrize(
    ("key", "res"),
    [
        (("channel", "calais_dover"), 7),
        (("western_mediterranean", "tangier_tarifa"), 7),
        (("eastern_mediterranean", "piraeus_athens"), 6),
        (("central_mediterranean", "agadez_sabha"), 5),
    ],
)
def test_corridor_cells_are_exactly_the_cells_centred_in_the_polygon(key, res):
    # Every cell within two rings of the corridor cells is checked against the polygon directly.
    cells = _cells(key, res)
    candidates = {c for cell in cells for c in h3.grid_disk(int_to_cell(cell), 2)}
    polygon = _polygon(key)
    centred_inside = {cell_to_int(c) for c in candidates if polygon.contains(shapely.Point(_centre(cell_to_int(c))))}
    assert len(candidates) > len(cells)  # the ring outside was really looked at
    assert cells == centred_inside


PARENT_CHILD_SEGMENTS = [
    ("channel", "calais_dover"),
    ("eastern_mediterranean", "bodrum_kos"),
    ("eastern_borders", "minsk_grodno"),
    ("western_african", "dakhla_gran_canaria"),
]


@pytest.mark.parametrize("res", RESOLUTIONS)
@pytest.mark.parametrize("key", PARENT_CHILD_SEGMENTS, ids=lambda k: k[1])
def test_parent_of_a_deep_child_cell_is_a_corridor_cell(key, res):
    # Exact property: a child's centre lies inside its parent's hexagon, so within the parent's circumradius R
    # (longest centre-to-vertex distance) of the parent centre. If the child centre is more than R inside the
    # polygon, the parent centre is inside too, so the parent is a corridor cell at res.
    parents_at_res = _cells(key, res)
    children = sorted(_cells(key, res + 1))
    polygon = _polygon(key)
    centre = polygon.centroid
    aeqd = pyproj.Proj(proj="aeqd", lat_0=centre.y, lon_0=centre.x, ellps="WGS84")
    boundary = shapely.transform(polygon.exterior, lambda xy: np.column_stack(aeqd(xy[:, 0], xy[:, 1])))
    lons, lats = np.array([_centre(c) for c in children]).T
    depth = shapely.distance(shapely.points(*aeqd(lons, lats)), boundary)

    checked = 0
    for child, child_depth in zip(children, depth, strict=True):
        parent = h3.cell_to_parent(int_to_cell(child), res)
        plat, plon = h3.cell_to_latlng(parent)
        radius = max(h3.great_circle_distance((plat, plon), v, unit="m") for v in h3.cell_to_boundary(parent))
        if child_depth > radius:
            checked += 1
            assert cell_to_int(parent) in parents_at_res, int_to_cell(child)
    # Even the narrowest case (a 30 km wide corridor at res 5, parent radius ~9 km) checks several children.
    assert checked >= 5


# --- cell → segment table -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table_res6() -> pd.DataFrame:
    return cell_segment_table(CATALOGUE, 6)


def test_table_has_one_row_per_cell_with_declared_columns(table_res6):
    assert list(table_res6.columns) == ["cell", "route_id", "segment_id"]
    assert table_res6["cell"].dtype == np.int64
    assert table_res6["route_id"].map(type).eq(str).all() and table_res6["segment_id"].map(type).eq(str).all()
    assert table_res6["cell"].is_unique and table_res6["cell"].is_monotonic_increasing


def test_table_covers_exactly_the_corridor_cells_and_assigns_each_to_a_corridor_holding_it(table_res6):
    union = set().union(*(_cells(key, 6) for key in SEGMENT_KEYS))
    assert set(table_res6["cell"].tolist()) == union
    for (route_id, segment_id), group in table_res6.groupby(["route_id", "segment_id"]):
        assert set(group["cell"].tolist()) <= _cells((route_id, segment_id), 6)


def _shared_pairs() -> list[tuple[tuple[str, str], int]]:
    """(segment, cell) for every cell of res-6 corridors that lies in more than one corridor."""
    owners: dict[int, list[tuple[str, str]]] = {}
    for key in SEGMENT_KEYS:
        for cell in _cells(key, 6):
            owners.setdefault(cell, []).append(key)
    return [(key, cell) for cell, keys in owners.items() if len(keys) > 1 for key in keys]


SHARED_PAIRS = _shared_pairs()


def test_routes_do_share_cells_at_res_6():
    # Junctions such as Izmir or Belgrade and overlapping legs such as Calais: the rule below is exercised.
    assert len(SHARED_PAIRS) > 1000


@settings(max_examples=150, deadline=None)
@given(pair=st.sampled_from(SHARED_PAIRS))
def test_shared_cell_goes_to_a_segment_at_least_as_near(table_res6, pair):
    own, cell = pair
    row = table_res6.loc[table_res6["cell"] == cell].iloc[0]
    assigned = (row["route_id"], row["segment_id"])
    if assigned == own:
        return
    lon, lat = _centre(cell)
    # 12 m: the table compares to the metre in a local projection; the 20 m sampling here adds up to 10 m.
    assert ground_distance_m(assigned, lon, lat) <= ground_distance_m(own, lon, lat) + 12.0


def _synthetic(*routes: tuple[str, list[tuple[str, int, list[tuple[float, float]]]]]) -> Catalogue:
    return Catalogue(
        tuple(
            Route(
                id=route_id,
                name=route_id,
                segments=tuple(
                    Segment(seg_id, seg_id, order, "land", 25.0, shapely.LineString(line), ())
                    for seg_id, order, line in segments
                ),
                crossing_points=(),
                official_names={},
                sources="test",
            )
            for route_id, segments in routes
        )
    )


def _owner(table: pd.DataFrame, lat: float, lon: float) -> tuple[str, str]:
    row = table.loc[table["cell"] == cell_to_int(h3.latlng_to_cell(lat, lon, 7))].iloc[0]
    return row["route_id"], row["segment_id"]


def test_cell_between_two_parallel_corridors_goes_to_the_nearer_line():
    # Two 25 km corridors along 10.0°N and 10.2°N (22 km apart) overlap; 10.05°N is 5.5 km from the first
    # line and 16.6 km from the second, 10.15°N the reverse.
    table = cell_segment_table(
        _synthetic(
            ("north", [("n", 1, [(0.0, 10.2), (1.0, 10.2)])]),
            ("south", [("s", 1, [(0.0, 10.0), (1.0, 10.0)])]),
        ),
        7,
    )
    assert _owner(table, 10.05, 0.5) == ("south", "s")
    assert _owner(table, 10.15, 0.5) == ("north", "n")
    assert _owner(table, 9.85, 0.5) == ("south", "s")  # only in the southern corridor
    assert _owner(table, 10.35, 0.5) == ("north", "n")  # only in the northern corridor


def test_equal_distance_goes_to_the_smallest_route_id_then_order():
    line = [(5.0, 20.0), (5.5, 20.0)]
    # Listed "zulu" first, to show the rule does not depend on catalogue order.
    table = cell_segment_table(_synthetic(("zulu", [("z", 1, line)]), ("alpha", [("a2", 2, line), ("a1", 1, line)])), 7)
    assert set(map(tuple, table[["route_id", "segment_id"]].drop_duplicates().values)) == {("alpha", "a1")}


def test_empty_catalogue_gives_an_empty_table_with_the_columns():
    table = cell_segment_table(Catalogue(()), 7)
    assert list(table.columns) == ["cell", "route_id", "segment_id"] and len(table) == 0
    assert table["cell"].dtype == np.int64


def test_cached_table_equals_a_fresh_one_and_is_a_copy():
    fresh = cell_segment_table(load_catalogue(), 5)
    cached = cached_cell_segment_table(5)
    pd.testing.assert_frame_equal(cached, fresh)
    cached.loc[0, "route_id"] = "changed"
    pd.testing.assert_frame_equal(cached_cell_segment_table(5, DEFAULT_ROUTES_DIR), fresh)


# --- cells as GeoJSON ---------------------------------------------------------------------------------------


def test_cell_near_calais_becomes_a_closed_lon_lat_hexagon():
    cell = cell_to_int(h3.latlng_to_cell(50.9519, 1.8564, 7))
    doc = cells_to_geojson([cell])
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 1
    feature = doc["features"][0]
    assert feature["properties"] == {"cell": "87194814affffff"}
    assert feature["geometry"]["type"] == "Polygon"
    [ring] = feature["geometry"]["coordinates"]
    assert len(ring) == 7 and ring[0] == ring[-1]
    # Calais is at 1.86°E 50.95°N; a res-7 cell spans ~3 km, so every vertex is within 0.05° of it.
    for lon, lat in ring:
        assert abs(lon - 1.86) < 0.05 and abs(lat - 50.95) < 0.05
    assert shapely.Polygon(ring).exterior.is_ccw  # RFC 7946: exterior rings counter-clockwise
    assert shapely.Polygon(ring).contains(shapely.Point(1.8564, 50.9519))


def test_cells_to_geojson_merges_properties_and_keeps_the_cell_id():
    cells = corridor_cells(_segment(("channel", "calais_dover")), 5)
    first = int(cells[0])
    doc = cells_to_geojson(cells, {first: {"devices": 42, "cell": "overridden"}})
    assert len(doc["features"]) == len(cells)
    assert doc["features"][0]["properties"] == {"devices": 42, "cell": int_to_cell(first)}
    assert doc["features"][1]["properties"] == {"cell": int_to_cell(int(cells[1]))}


def test_cells_to_geojson_refuses_an_invalid_cell():
    with pytest.raises(ValueError, match="not an H3 cell id"):
        cells_to_geojson([12345])
