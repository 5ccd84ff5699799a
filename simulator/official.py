"""Where an official statistic would count a person entering the EU or the UK in the simulated world, and what it
would publish.

Coarse figures made from the simulator's truth (monthly arrivals per route as Frontex publishes them, daily
arrivals as the UK publishes the Channel's, monthly arrivals per landing place as the coastal states publish them)
count people at the routes' entry points (``geo.entry``: every landing site on the sea routes, plus the land borders
into the EU; the names are re-exported here).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from geo.catalogue import Catalogue
from geo.entry import ENTRY_BORDERS, EXCLUDED_LANDINGS, entry_points, route_entry_points

__all__ = ["ENTRY_BORDERS", "EXCLUDED_LANDINGS", "entry_points", "route_entry_points"]

# The official files the simulated world publishes, in the layouts `routecast ingest-counts` reads (as the real
# ones in shared/data/real): Frontex's monthly detections by route, the Home Office's daily small-boat arrivals.
FRONTEX_FILE = "frontex_monthly_by_route.csv"
UK_CHANNEL_FILE = "uk_small_boats_daily.csv"
# Monthly sea arrivals per landing place, as Greece (per island, through UNHCR), Spain (per island and city) and Italy
# (per region) publish them: the landing entry points of the sea routes. Land border posts publish no such figure,
# and neither does the UK: the Home Office counts the Channel's small boats per day, not per landing place. The
# simulated figures are per place everywhere else, finer than Italy's regions: a deployment has coarser ones.
LANDINGS_FILE = "landings_monthly_by_point.csv"
LANDINGS_NOT_PUBLISHED = frozenset({"channel"})
# The `routecast ingest-counts --source` each file is read as.
FILE_SOURCES = {FRONTEX_FILE: "frontex", UK_CHANNEL_FILE: "uk-channel", LANDINGS_FILE: "landings"}


def entry_arrivals(arrivals: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """Per route and day, the arrivals at its entry points: ``route_id, date`` (datetime), ``arrivals``.

    ``arrivals``: ``date, route_id, crossing_point_id, arrivals`` (truth ``arrivals``). Days without any are absent.
    """
    entry = pd.DataFrame(
        [(route, cp) for route, cps in entry_points(catalogue).items() for cp in cps],
        columns=["route_id", "crossing_point_id"],
    )
    at_entry = arrivals.merge(entry, on=["route_id", "crossing_point_id"])
    return (
        at_entry.assign(date=pd.to_datetime(at_entry["date"]))
        .groupby(["route_id", "date"], as_index=False)["arrivals"]
        .sum()
    )


def official_figures(
    arrivals: pd.DataFrame, catalogue: Catalogue, first: dt.date, last: dt.date
) -> dict[str, pd.DataFrame]:
    """What the official sources would publish of the simulated arrivals between ``first`` and ``last``.

    ``arrivals``: ``date, route_id, crossing_point_id, arrivals`` (truth ``arrivals``). Returns, by file name:
    Frontex-like ``date, route, count, n_source_rows`` for every complete calendar month and every route with a
    Frontex name (a month the run covers only in part is not published: Frontex publishes whole months), and
    UK-like ``date, migrants_arrived`` for every day, zeros included, if the catalogue has the Channel route, and
    landings ``date, route, crossing_point, count`` for every complete month and every landing entry point of the
    routes not in ``LANDINGS_NOT_PUBLISHED``, zeros included. Counts are the arrivals at each route's entry points
    (:func:`entry_points`).
    """
    daily = entry_arrivals(arrivals, catalogue).set_index(["route_id", "date"])["arrivals"]
    days = pd.date_range(first, last, freq="D")
    out: dict[str, pd.DataFrame] = {}

    def every_day(route_id: str) -> pd.Series:
        return daily.get(route_id, pd.Series(dtype="int64")).reindex(days, fill_value=0)

    months = [
        m
        for m in pd.period_range(first, last, freq="M")
        if m.start_time >= days[0] and m.end_time < days[-1] + pd.Timedelta(days=1)
    ]
    rows = []
    for name, route_id in sorted(catalogue.official_name_map("frontex").items()):
        per_day = every_day(route_id)
        per_month = per_day.groupby(per_day.index.to_period("M")).sum()
        rows += [(m.start_time.date().isoformat(), name, int(per_month.get(m, 0)), 1) for m in months]
    out[FRONTEX_FILE] = pd.DataFrame(rows, columns=["date", "route", "count", "n_source_rows"])

    landings = [
        (r.id, p.id)
        for r in catalogue
        if r.id not in LANDINGS_NOT_PUBLISHED
        for p in route_entry_points(r)
        if p.role == "landing"
    ]
    at_point = arrivals.assign(date=pd.to_datetime(arrivals["date"]).dt.to_period("M"))
    at_point = at_point.groupby(["route_id", "crossing_point_id", "date"])["arrivals"].sum()
    out[LANDINGS_FILE] = pd.DataFrame(
        [
            (m.start_time.date().isoformat(), route_id, point_id, int(at_point.get((route_id, point_id, m), 0)))
            for route_id, point_id in landings
            for m in months
        ],
        columns=["date", "route", "crossing_point", "count"],
    )

    channel = catalogue.official_name_map("uk_home_office")
    if channel:
        (route_id,) = set(channel.values())
        per_day = every_day(route_id)
        out[UK_CHANNEL_FILE] = pd.DataFrame(
            {"date": [d.date().isoformat() for d in days], "migrants_arrived": per_day.astype("int64").to_numpy()}
        )
    return out


def write_official_files(
    arrivals: pd.DataFrame, catalogue: Catalogue, first: dt.date, last: dt.date, directory: Path
) -> list[Path]:
    """Write :func:`official_figures` as CSV files into ``directory``; returns their paths.

    Replaces what an earlier run wrote there; a figure with no row (no complete month) is not written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.csv"):
        stale.unlink()
    paths = []
    for name, frame in official_figures(arrivals, catalogue, first, last).items():
        if len(frame):
            frame.to_csv(directory / name, index=False)
            paths.append(directory / name)
    return paths
