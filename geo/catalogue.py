"""The route catalogue: one GeoJSON file per migration route, loaded and validated into frozen dataclasses.

A route file is ``<route_id>.geojson``: a FeatureCollection with a foreign member ``route``
(``id``, ``name``, ``official_names``, ``sources``) and two kinds of feature, told apart by
``properties.kind``:

- ``segment``: a LineString through the places in travel order, with ``id``, ``name``, ``order`` (the segments
  of a route are numbered 1..n), ``mode`` (land|sea), ``buffer_km`` (corridor half-width; defaults to 25 for
  land, required for sea) and ``places`` (the place names of the vertices);
- ``crossing_point``: a Point with ``id``, ``name``, ``role`` (departure|border|landing|hub) and the
  ``segment`` id it belongs to.

``official_names`` maps a source (``frontex``, ``uk_home_office``, ``iom_dtm``, ``iom_mmp``, ...) to the names
that source uses for this route, so official counts can be mapped to route ids; a name may belong to one
route only.

Everything is checked when loading: a broken file raises :class:`CatalogueError` naming the file, the feature
(by its 0-based index in ``features``) and the field. Unknown property keys are refused too, so that a typo
such as ``bufer_km`` cannot silently fall back to a default.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely

DEFAULT_ROUTES_DIR: Path = Path(__file__).resolve().parent / "routes"

SEGMENT_MODES = ("land", "sea")
CROSSING_ROLES = ("departure", "border", "landing", "hub")
FEATURE_KINDS = ("segment", "crossing_point")
DEFAULT_LAND_BUFFER_KM = 25.0

# The route names exactly as they appear in Frontex's monthly detections of illegal border crossings.
FRONTEX_ROUTE_NAMES = (
    "Central Mediterranean Route",
    "Eastern Mediterranean Route",
    "Western Balkan Route",
    "Western Mediterranean Route",
    "Western African Route",
    "Eastern Borders Route",
    "Circular Route from Albania to Greece",
    "Black Sea Route",
    "Other",
)

_ID_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_ISO3_PATTERN = re.compile(r"[A-Z]{3}(-[A-Z]{2,6})?")  # a country, or a part of one (IOM: ESP-WMR)
_ROUTE_KEYS = {"id", "name", "official_names", "sources"}
_SEGMENT_KEYS = {"kind", "id", "name", "order", "mode", "buffer_km", "places", "route_id"}
_CROSSING_KEYS = {"kind", "id", "name", "role", "segment", "route_id"}


class CatalogueError(ValueError):
    """A route file or the routes directory is malformed; the message names the file and the field."""


class _LookupError(KeyError):
    # KeyError.__str__ repr()s its argument, which wraps a readable message in quotes.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RouteNotFound(_LookupError):
    """No route with this id in the catalogue; the message lists the known ids."""


class SegmentNotFound(_LookupError):
    """No segment with this id in the route; the message lists the route's segment ids."""


# Two legs are consecutive when the second starts within this distance of where the first ends.
SUCCESSION_KM = 10.0


def ground_km(p: tuple[float, ...], q: tuple[float, ...]) -> float:
    """Great-circle distance in km between two (lon, lat) points."""
    lon1, lat1, lon2, lat2 = map(math.radians, (p[0], p[1], q[0], q[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class CrossingPoint:
    """A place where arrivals are counted: a departure coast, border post, landing site or hub."""

    id: str
    name: str
    role: str
    segment_id: str
    lon: float
    lat: float


@dataclass(frozen=True)
class Segment:
    """One leg of a route: its centre line (lon/lat, travel order) and corridor half-width in km."""

    id: str
    name: str
    order: int
    mode: str
    buffer_km: float
    line: shapely.LineString
    places: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    """A named chain of segments (sorted by order) with its crossing points and official names."""

    id: str
    name: str
    segments: tuple[Segment, ...]
    crossing_points: tuple[CrossingPoint, ...]
    # Left out of the hash (a dict is unhashable) so that routes and catalogues can key caches.
    official_names: dict[str, tuple[str, ...]] = field(hash=False)
    sources: str

    def successions(self, tolerance_km: float = SUCCESSION_KM) -> tuple[tuple[str, str], ...]:
        """(a, b) pairs of this route's segments where b starts at a place on a after a's first (within
        ``tolerance_km``): the consecutive legs a traveller takes, branches included (a hub can lead to
        several next legs, and a coast leg to a crossing from any of its towns)."""
        pairs = []
        for a in self.segments:
            places = a.line.coords[1:]
            for b in self.segments:
                if b is not a and any(ground_km(p, b.line.coords[0]) <= tolerance_km for p in places):
                    pairs.append((a.id, b.id))
        return tuple(pairs)

    def segment(self, segment_id: str) -> Segment:
        """The segment with this id; raises SegmentNotFound."""
        for segment in self.segments:
            if segment.id == segment_id:
                return segment
        known = ", ".join(s.id for s in self.segments)
        raise SegmentNotFound(f"route {self.id!r} has no segment {segment_id!r}; its segments are: {known}")


@dataclass(frozen=True)
class Catalogue:
    """The routes, in the order given (load_catalogue sorts them by id)."""

    routes: tuple[Route, ...]

    def route(self, route_id: str) -> Route:
        """The route with this id; raises RouteNotFound."""
        for route in self.routes:
            if route.id == route_id:
                return route
        raise RouteNotFound(f"unknown route {route_id!r}; known routes: {', '.join(self.route_ids())}")

    def route_ids(self) -> list[str]:
        """The route ids, in catalogue order."""
        return [route.id for route in self.routes]

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)

    def subset(self, route_ids: Iterable[str]) -> Catalogue:
        """A catalogue of just these routes (catalogue order kept); a single str is one id.

        Raises RouteNotFound naming every unknown id.
        """
        wanted = [route_ids] if isinstance(route_ids, str) else list(route_ids)
        known = set(self.route_ids())
        unknown = [route_id for route_id in wanted if route_id not in known]
        if unknown:
            listed = ", ".join(map(repr, unknown))
            raise RouteNotFound(f"unknown route(s) {listed}; known routes: {', '.join(self.route_ids())}")
        keep = set(wanted)
        return Catalogue(tuple(route for route in self.routes if route.id in keep))

    def official_name_map(self, source: str) -> dict[str, str]:
        """``{official name: route id}`` for one source (e.g. ``"frontex"``); unclaimed names are absent."""
        return {name: route.id for route in self.routes for name in route.official_names.get(source, ())}


def load_catalogue(directory: Path | str | None = None) -> Catalogue:
    """Load and validate every ``*.geojson`` route file in ``directory`` (default: the packaged routes).

    Returns the routes sorted by id. Raises CatalogueError for an empty or missing directory, any malformed
    file, a route id that does not match its file name, or an id or official name defined twice.
    """
    directory = DEFAULT_ROUTES_DIR if directory is None else Path(directory)
    if not directory.is_dir():
        raise CatalogueError(f"routes directory {directory}: not a directory")
    paths = sorted(directory.glob("*.geojson"))
    if not paths:
        raise CatalogueError(f"routes directory {directory}: no *.geojson route files")

    routes: list[Route] = []
    defined_in: dict[str, str] = {}
    claimed: dict[tuple[str, str], str] = {}
    for path in paths:
        route = _read_route_file(path)
        # Checked before the file-name rule so that a copied file reports the duplicate, the likelier mistake.
        if route.id in defined_in:
            raise CatalogueError(
                f"{path.name}: field 'route.id': {route.id!r} is already defined by {defined_in[route.id]}"
            )
        if route.id != path.stem:
            raise CatalogueError(
                f"{path.name}: field 'route.id': {route.id!r} does not match the file name; "
                f"rename the file to {route.id}.geojson or fix the id"
            )
        for source, names in route.official_names.items():
            for name in names:
                if (source, name) in claimed:
                    raise CatalogueError(
                        f"{path.name}: field 'route.official_names.{source}': {name!r} is already mapped to "
                        f"route {claimed[source, name]!r}; an official name may belong to one route only"
                    )
                claimed[source, name] = route.id
        defined_in[route.id] = path.name
        routes.append(route)
    return Catalogue(tuple(sorted(routes, key=lambda r: r.id)))


def cached_catalogue(directory: Path | str | None = None) -> Catalogue:
    """load_catalogue, memoised per resolved directory for the life of the process (files read once).

    For read-only catalogues such as the packaged one; call load_catalogue to see edits on disk.
    """
    return _load_catalogue_cached(routes_dir_key(directory))


def routes_dir_key(directory: Path | str | None) -> str:
    """The cache key of a routes directory: its resolved absolute path (default: the packaged routes)."""
    return str((DEFAULT_ROUTES_DIR if directory is None else Path(directory)).resolve())


@functools.lru_cache(maxsize=16)
def _load_catalogue_cached(directory: str) -> Catalogue:
    return load_catalogue(directory)


def route_to_geojson(route: Route) -> dict:
    """The route as a GeoJSON FeatureCollection in the catalogue file format, loadable again.

    Segment (LineString) features come first, in order, then crossing points (Point); every feature's
    properties carry ``kind`` and ``route_id``.
    """
    features: list[dict[str, Any]] = []
    for segment in route.segments:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[x, y] for x, y in segment.line.coords]},
                "properties": {
                    "kind": "segment",
                    "route_id": route.id,
                    "id": segment.id,
                    "name": segment.name,
                    "order": segment.order,
                    "mode": segment.mode,
                    "buffer_km": segment.buffer_km,
                    "places": list(segment.places),
                },
            }
        )
    for point in route.crossing_points:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [point.lon, point.lat]},
                "properties": {
                    "kind": "crossing_point",
                    "route_id": route.id,
                    "id": point.id,
                    "name": point.name,
                    "role": point.role,
                    "segment": point.segment_id,
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "route": {
            "id": route.id,
            "name": route.name,
            "official_names": {source: list(names) for source, names in route.official_names.items()},
            "sources": route.sources,
        },
        "features": features,
    }


# --- reading and validating one file ---------------------------------------------------------------------


class _File:
    """Error messages for one route file: ``<file>: <where>: <what>``."""

    def __init__(self, path: Path) -> None:
        self.name = path.name

    def error(self, where: str, what: str) -> CatalogueError:
        return CatalogueError(f"{self.name}: {where}: {what}" if where else f"{self.name}: {what}")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads silently keeps the last of two equal keys; in a hand-edited file that hides a mistake.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _read_route_file(path: Path) -> Route:
    file = _File(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise file.error("", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise file.error("", f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:  # from _reject_duplicate_keys
        raise file.error("", f"not valid JSON ({exc})") from None

    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise file.error("field 'type'", "the file must be a GeoJSON object with type 'FeatureCollection'")
    meta = document.get("route")
    if meta is None:
        raise file.error("", "field 'route' missing; expected a member with id, name, official_names, sources")
    if not isinstance(meta, dict):
        raise file.error("field 'route'", f"must be an object, got {type(meta).__name__}")
    _check_keys(file, "", meta, _ROUTE_KEYS, prefix="route.")
    route_id = _id_field(file, "", meta, "id", prefix="route.")
    route_name = _text_field(file, "", meta, "name", prefix="route.")
    sources = _text_field(file, "", meta, "sources", prefix="route.")
    official_names = _official_names(file, meta.get("official_names", {}))

    features = document.get("features")
    if not isinstance(features, list):
        raise file.error("field 'features'", "missing or not a list")

    segments: dict[str, Segment] = {}
    segment_feature: dict[str, int] = {}
    crossing_points: list[tuple[int, CrossingPoint]] = []
    crossing_feature: dict[str, int] = {}
    for index, feature in enumerate(features):
        where = f"feature {index}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise file.error(where, "field 'type' must be 'Feature'")
        properties = feature.get("properties")
        if not isinstance(properties, dict):
            raise file.error(where, "field 'properties' missing or not an object")
        kind = properties.get("kind")
        if kind is None:
            raise file.error(where, "field 'kind' missing")
        if kind not in FEATURE_KINDS:
            raise file.error(where, f"field 'kind' must be one of {', '.join(FEATURE_KINDS)}; got {kind!r}")
        raw_id = properties.get("id")
        where = f"{where} ({kind} {raw_id!r})" if isinstance(raw_id, str) else f"{where} ({kind})"

        if kind == "segment":
            segment = _segment(file, where, feature, properties)
            if segment.id in segments:
                raise file.error(where, f"field 'id' duplicates feature {segment_feature[segment.id]}")
            segments[segment.id] = segment
            segment_feature[segment.id] = index
        else:
            point = _crossing_point(file, where, feature, properties)
            if point.id in crossing_feature:
                raise file.error(where, f"field 'id' duplicates feature {crossing_feature[point.id]}")
            crossing_feature[point.id] = index
            crossing_points.append((index, point))

    if not segments:
        raise file.error("field 'features'", "no feature of kind 'segment'; a route needs at least one")
    orders = sorted(segment.order for segment in segments.values())
    if orders != list(range(1, len(orders) + 1)):
        raise file.error("segments", f"field 'order' must number the segments 1..{len(orders)} once each; got {orders}")
    for index, point in crossing_points:
        if point.segment_id not in segments:
            raise file.error(
                f"feature {index} (crossing_point {point.id!r})",
                f"field 'segment' names unknown segment {point.segment_id!r}; "
                f"segments are: {', '.join(sorted(segments))}",
            )

    return Route(
        id=route_id,
        name=route_name,
        segments=tuple(sorted(segments.values(), key=lambda s: s.order)),
        crossing_points=tuple(point for _, point in crossing_points),
        official_names=official_names,
        sources=sources,
    )


def _segment(file: _File, where: str, feature: dict, properties: dict) -> Segment:
    _check_keys(file, where, properties, _SEGMENT_KEYS)
    segment_id = _id_field(file, where, properties, "id")
    name = _text_field(file, where, properties, "name")
    order = properties.get("order")
    if order is None:
        raise file.error(where, "field 'order' missing")
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise file.error(where, f"field 'order' must be a whole number >= 1, got {order!r}")
    mode = properties.get("mode")
    if mode is None:
        raise file.error(where, "field 'mode' missing")
    if mode not in SEGMENT_MODES:
        raise file.error(where, f"field 'mode' must be one of {', '.join(SEGMENT_MODES)}; got {mode!r}")
    if "buffer_km" in properties:
        buffer_km = _positive_number(file, where, properties, "buffer_km")
    elif mode == "land":
        buffer_km = DEFAULT_LAND_BUFFER_KM
    else:
        # A sea corridor's width depends on the crossing (a strait or open sea): no default fits all.
        raise file.error(where, "field 'buffer_km' missing (required for sea segments)")
    places = properties.get("places")
    if places is None:
        raise file.error(where, "field 'places' missing")
    if not isinstance(places, list) or not all(isinstance(p, str) and p.strip() for p in places):
        raise file.error(where, "field 'places' must be a list of place names")

    vertices = _coordinates(file, where, feature, "LineString")
    if len(vertices) < 2:
        raise file.error(where, f"field 'geometry.coordinates' needs at least 2 vertices, got {len(vertices)}")
    for i in range(1, len(vertices)):
        if vertices[i] == vertices[i - 1]:
            raise file.error(where, f"field 'geometry.coordinates[{i}]' repeats the previous vertex")
    return Segment(
        id=segment_id,
        name=name,
        order=order,
        mode=mode,
        buffer_km=buffer_km,
        line=shapely.LineString(vertices),
        places=tuple(places),
    )


def _crossing_point(file: _File, where: str, feature: dict, properties: dict) -> CrossingPoint:
    _check_keys(file, where, properties, _CROSSING_KEYS)
    point_id = _id_field(file, where, properties, "id")
    name = _text_field(file, where, properties, "name")
    role = properties.get("role")
    if role is None:
        raise file.error(where, "field 'role' missing")
    if role not in CROSSING_ROLES:
        raise file.error(where, f"field 'role' must be one of {', '.join(CROSSING_ROLES)}; got {role!r}")
    segment_id = _id_field(file, where, properties, "segment")
    [(lon, lat)] = _coordinates(file, where, feature, "Point")
    return CrossingPoint(id=point_id, name=name, role=role, segment_id=segment_id, lon=lon, lat=lat)


def _coordinates(file: _File, where: str, feature: dict, geometry_type: str) -> list[tuple[float, float]]:
    """The feature's positions as (lon, lat); a Point gives a one-element list."""
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        raise file.error(where, "field 'geometry' missing or not an object")
    if geometry.get("type") != geometry_type:
        raise file.error(where, f"field 'geometry.type' must be {geometry_type!r}, got {geometry.get('type')!r}")
    coordinates = geometry.get("coordinates")
    if coordinates is None:
        raise file.error(where, "field 'geometry.coordinates' missing")
    if geometry_type == "Point":
        return [_position(file, where, "geometry.coordinates", coordinates)]
    if not isinstance(coordinates, list):
        raise file.error(where, "field 'geometry.coordinates' must be a list of [lon, lat] positions")
    return [_position(file, where, f"geometry.coordinates[{i}]", p) for i, p in enumerate(coordinates)]


def _position(file: _File, where: str, name: str, value: Any) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) not in (2, 3)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise file.error(where, f"field {name!r} must be a [lon, lat] position of numbers, got {value!r}")
    lon, lat = float(value[0]), float(value[1])
    # GeoJSON puts longitude first; a swapped pair usually fails one of these ranges.
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise file.error(where, f"field {name!r}: longitude {value[0]!r} out of range -180..180")
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise file.error(where, f"field {name!r}: latitude {value[1]!r} out of range -90..90")
    return lon, lat


def _check_keys(file: _File, where: str, mapping: dict, allowed: set[str], prefix: str = "") -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise file.error(
            where,
            f"field {prefix + unknown[0]!r} is not a known field; allowed: {', '.join(sorted(allowed))}",
        )


def _text_field(file: _File, where: str, mapping: dict, key: str, prefix: str = "") -> str:
    value = mapping.get(key)
    if value is None:
        raise file.error(where, f"field {prefix + key!r} missing")
    if not isinstance(value, str) or not value.strip():
        raise file.error(where, f"field {prefix + key!r} must be a non-empty string, got {value!r}")
    return value


def _id_field(file: _File, where: str, mapping: dict, key: str, prefix: str = "") -> str:
    value = _text_field(file, where, mapping, key, prefix)
    if not _ID_PATTERN.fullmatch(value):
        raise file.error(where, f"field {prefix + key!r} must be snake_case ASCII (a-z, 0-9, _), got {value!r}")
    return value


def _positive_number(file: _File, where: str, mapping: dict, key: str) -> float:
    value = mapping[key]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise file.error(where, f"field {key!r} must be a positive number of km, got {value!r}")
    return float(value)


def _official_names(file: _File, value: Any) -> dict[str, tuple[str, ...]]:
    where = "field 'route.official_names'"
    if not isinstance(value, dict):
        raise file.error(where, "must be an object mapping a source to a list of names")
    result: dict[str, tuple[str, ...]] = {}
    for source, names in value.items():
        field_name = f"field 'route.official_names.{source}'"
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise file.error(field_name, "must be a list of names")
        if source == "frontex":
            unknown = [n for n in names if n not in FRONTEX_ROUTE_NAMES]
            if unknown:
                raise file.error(
                    field_name,
                    f"{unknown[0]!r} is not a Frontex route name; expected one of {FRONTEX_ROUTE_NAMES}",
                )
        if source == "iom_dtm":
            bad = [n for n in names if not _ISO3_PATTERN.fullmatch(n)]
            if bad:
                raise file.error(
                    field_name, f"{bad[0]!r} is not an ISO-3 country code (e.g. 'ITA') or part of one (e.g. 'ESP-WMR')"
                )
        result[source] = tuple(names)
    return result
