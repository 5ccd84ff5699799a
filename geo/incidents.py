"""Check the route geometry against real events: IOM Missing Migrants incidents inside the route corridors.

The Missing Migrants Project (MMP) records incidents with dead and missing migrants, each with a point
(``lat``, ``lon``) and the MMP name of the route it happened on. An incident *belongs* to a catalogue route when
its MMP route name is one of the route's ``official_names["iom_mmp"]``; it is *inside* when its point lies in
(or on the edge of) the corridor of any of that route's segments (:func:`geo.cells.corridor_polygon`).

MMP sometimes gives two route names joined by a comma (``"Central Mediterranean,Sahara Desert crossing"``);
such an incident belongs to a route when every name maps to that same route, and is left unmapped otherwise.

Incidents are a lower bound on deaths and show where routes run and where they are deadly, not how many people
travel; a share inside well below 1 says where a corridor misses real events, or where the coordinates are
rough (an unspecified point at sea, a town standing for a desert district).

Run ``python -m geo.incidents PATH [--routes-dir DIR]`` to print the table for a file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from geo.catalogue import Catalogue, Route, load_catalogue
from geo.cells import corridor_polygon

logger = logging.getLogger(__name__)

MMP_SOURCE = "iom_mmp"

# The columns every incidents file must have, and what they become. Other columns are kept as text.
INCIDENT_COLUMNS: dict[str, str] = {
    "main_id": "string",
    "date": "string",
    "route": "string",
    "lat": "float64",
    "lon": "float64",
    "dead_and_missing": "int64",
}

CORRIDOR_SHARE_COLUMNS = (
    "route_id",
    "mmp_routes",
    "incidents",
    "unlocated",
    "inside",
    "share_inside",
    "dead_and_missing_inside",
    "dead_and_missing_total",
)
UNMAPPED_COLUMNS = ("mmp_route", "incidents", "dead_and_missing")

_NO_ROUTE = "(no route)"
# How many offending line numbers an error or warning quotes before "...".
_QUOTED_LINES = 5


def load_incidents(path: Path | str) -> pd.DataFrame:
    """The incidents of an MMP CSV file, one row per line, in file order.

    Columns: those of :data:`INCIDENT_COLUMNS` (converted to their types) plus ``located`` (bool), plus any
    other column of the file, as text. Rows whose ``lat``/``lon`` are missing, not numbers, out of range or
    exactly (0, 0) are kept with ``lat``/``lon`` set to NaN and ``located`` False; their number and first line
    numbers are logged as a warning, and :func:`corridor_share` counts them as ``unlocated``.

    Raises ValueError naming the file for a missing column or a ``dead_and_missing`` that is not a whole
    number >= 0.
    """
    path = Path(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    missing = [column for column in INCIDENT_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(
            f"incidents file {path.name}: column {missing[0]!r} missing; expected at least {','.join(INCIDENT_COLUMNS)}"
        )
    # Line numbers as a reader of the file counts them: the header is line 1.
    line_numbers = np.arange(len(frame)) + 2

    count = pd.to_numeric(frame["dead_and_missing"], errors="coerce")
    bad_count = count.isna() | (count < 0) | (count % 1 != 0)
    if bad_count.any():
        raise ValueError(
            f"incidents file {path.name}: column 'dead_and_missing' must be a whole number >= 0; "
            f"not on line(s) {_quote_lines(line_numbers[bad_count.to_numpy()])}"
        )

    lat = pd.to_numeric(frame["lat"], errors="coerce")
    lon = pd.to_numeric(frame["lon"], errors="coerce")
    # (0, 0) is in the Gulf of Guinea, far from every route: there it is a placeholder, not a place.
    located = lat.between(-90.0, 90.0) & lon.between(-180.0, 180.0) & ~((lat == 0.0) & (lon == 0.0))
    if not located.all():
        logger.warning(
            "incidents file %s: %d row(s) without valid lat/lon (missing, not numbers, out of range or 0,0), "
            "kept as unlocated: line(s) %s",
            path.name,
            int((~located).sum()),
            _quote_lines(line_numbers[~located.to_numpy()]),
        )

    frame["main_id"] = frame["main_id"].astype("string")
    frame["date"] = frame["date"].astype("string")
    frame["route"] = frame["route"].astype("string").str.strip()
    frame["lat"] = lat.where(located).astype("float64")
    frame["lon"] = lon.where(located).astype("float64")
    frame["dead_and_missing"] = count.astype("int64")
    frame["located"] = located.to_numpy()
    return frame


def incident_route_ids(catalogue: Catalogue, incidents: pd.DataFrame) -> pd.Series:
    """The catalogue route id of each incident (aligned with ``incidents``), or None where its MMP route maps to
    no route or to several.
    """
    name_to_route = catalogue.official_name_map(MMP_SOURCE)

    def route_of(mmp_route: object) -> str | None:
        if not isinstance(mmp_route, str):
            return None
        if mmp_route in name_to_route:
            return name_to_route[mmp_route]
        routes = {name_to_route.get(part.strip()) for part in mmp_route.split(",")}
        return routes.pop() if len(routes) == 1 else None

    names = incidents["route"].astype(object)
    by_name = {name: route_of(name) for name in pd.unique(names)}
    return pd.Series([by_name[name] for name in names], index=incidents.index, dtype=object, name="route_id")


def route_corridors(route: Route) -> shapely.Geometry:
    """The union of the corridors of the route's segments, in lon/lat."""
    return shapely.union_all([corridor_polygon(segment) for segment in route.segments])


def inside_route_corridors(route: Route, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Boolean array: whether each point lies in (or on the edge of) any corridor of the route; NaN is False."""
    corridors = route_corridors(route)
    shapely.prepare(corridors)
    return shapely.intersects_xy(corridors, np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))


def corridor_share(catalogue: Catalogue, incidents: pd.DataFrame) -> pd.DataFrame:
    """Per catalogue route (catalogue order), how many of its incidents fall inside its corridors.

    Columns (:data:`CORRIDOR_SHARE_COLUMNS`): ``route_id``; ``mmp_routes``, the MMP names mapped to it, joined
    by "; "; ``incidents``, all incidents mapped to it; ``unlocated``, those without valid coordinates;
    ``inside``; ``share_inside`` = inside / (incidents - unlocated), NaN when there is none located; and the
    ``dead_and_missing`` sums over the incidents inside and over all of them. ``incidents`` is a frame from
    :func:`load_incidents` (or one with the same columns).
    """
    route_ids = incident_route_ids(catalogue, incidents).to_numpy()
    located = incidents["located"].to_numpy(dtype=bool)
    lon = incidents["lon"].to_numpy(dtype=float)
    lat = incidents["lat"].to_numpy(dtype=float)
    dead_and_missing = incidents["dead_and_missing"].to_numpy(dtype=np.int64)

    rows = []
    for route in catalogue:
        mine = route_ids == route.id
        inside = np.zeros(len(incidents), dtype=bool)
        inside[mine] = inside_route_corridors(route, lon[mine], lat[mine])
        n_located = int((mine & located).sum())
        rows.append(
            {
                "route_id": route.id,
                "mmp_routes": "; ".join(route.official_names.get(MMP_SOURCE, ())),
                "incidents": int(mine.sum()),
                "unlocated": int((mine & ~located).sum()),
                "inside": int(inside.sum()),
                "share_inside": inside.sum() / n_located if n_located else float("nan"),
                "dead_and_missing_inside": int(dead_and_missing[inside].sum()),
                "dead_and_missing_total": int(dead_and_missing[mine].sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(CORRIDOR_SHARE_COLUMNS))


def unmapped_incidents(catalogue: Catalogue, incidents: pd.DataFrame) -> pd.DataFrame:
    """The incidents whose MMP route maps to no catalogue route, counted per MMP route name.

    Columns (:data:`UNMAPPED_COLUMNS`): ``mmp_route`` (``"(no route)"`` for a blank one), ``incidents``,
    ``dead_and_missing``; most incidents first, then by name.
    """
    unmapped = incidents[incident_route_ids(catalogue, incidents).isna().to_numpy()]
    names = unmapped["route"].astype(object).fillna(_NO_ROUTE)
    counts = (
        unmapped.assign(mmp_route=names)
        .groupby("mmp_route", sort=False)
        .agg(incidents=("route", "size"), dead_and_missing=("dead_and_missing", "sum"))
        .reset_index()
    )
    counts = counts.sort_values(["incidents", "mmp_route"], ascending=[False, True], ignore_index=True)
    return counts.astype({"incidents": "int64", "dead_and_missing": "int64"})[list(UNMAPPED_COLUMNS)]


def _quote_lines(lines: np.ndarray) -> str:
    quoted = ", ".join(str(n) for n in lines[:_QUOTED_LINES])
    return quoted + (", ..." if len(lines) > _QUOTED_LINES else "")


# --- command line ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m geo.incidents PATH [--routes-dir DIR]``: print the corridor share and the unmapped routes."""
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(
        prog="python -m geo.incidents",
        description="Share of IOM Missing Migrants incidents inside each catalogue route's corridors.",
    )
    parser.add_argument("path", type=Path, help="incidents CSV (e.g. shared/data/real/mmp_europe_incidents.csv)")
    parser.add_argument("--routes-dir", type=Path, default=None, help="route catalogue (default: packaged)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    # Piped output gets a fixed width so the table is not squeezed to rich's default of 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    try:
        incidents = load_incidents(args.path)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    catalogue = load_catalogue(args.routes_dir)
    share = corridor_share(catalogue, incidents)

    table = Table(title=f"Incidents inside the route corridors — {args.path.name}")
    for column in ("route", "MMP route names", "incidents", "inside", "share", "dead+missing inside / total"):
        table.add_column(column, justify="left" if column in ("route", "MMP route names") else "right", no_wrap=True)
    for row in share.itertuples(index=False):
        table.add_row(
            row.route_id,
            row.mmp_routes,
            f"{row.incidents:,}" + (f" ({row.unlocated} unlocated)" if row.unlocated else ""),
            f"{row.inside:,}",
            "—" if np.isnan(row.share_inside) else f"{row.share_inside:.1%}",
            f"{row.dead_and_missing_inside:,} / {row.dead_and_missing_total:,}",
        )
    console.print(table)

    unmapped = unmapped_incidents(catalogue, incidents)
    other = Table(title="Incidents whose MMP route maps to no catalogue route")
    for column in ("MMP route", "incidents", "dead+missing"):
        other.add_column(column, justify="left" if column == "MMP route" else "right")
    for row in unmapped.itertuples(index=False):
        other.add_row(row.mmp_route, f"{row.incidents:,}", f"{row.dead_and_missing:,}")
    console.print(other)
    console.print(
        f"{len(incidents):,} incidents in the file, {int((~incidents['located']).sum()):,} without valid lat/lon."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
