"""Shifts between routes after past closures, read from Frontex's monthly detections per route (real figures).

A scenario's diversion share says which share of the people a closure holds back take another route instead. For real
routes no official figure counts diverted people; the only trace is in the routes' monthly totals around a past
closure. This script reads two (see README.md beside it): after the EU-Turkey statement (20 March 2016) on the
Eastern Mediterranean, and after the Italy-Libya memorandum (2 February 2017, enforced from July 2017) on the Central
Mediterranean. Against the same months a year before (the counterfactual), it prints each route's change over the
months after, and the other routes' changes as shares of the closed route's shortfall.

    .venv/bin/python experiments/route-shifts/measure.py --data-dir ../shared/data/real
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

FILE = "frontex_ibc_monthly_by_route.csv"
ROUTES = {
    "Eastern Mediterranean Route": "eastern_mediterranean",
    "Central Mediterranean Route": "central_mediterranean",
    "Western Mediterranean Route": "western_mediterranean",
    "Western Balkan Route": "western_balkans",
    "Western African Route": "western_african",
}
# (name, closed route, first month after, months read)
EVENTS = (
    ("EU-Turkey statement, March 2016", "eastern_mediterranean", "2016-04-01", 9),
    ("Italy-Libya memorandum, enforced from July 2017", "central_mediterranean", "2017-08-01", 12),
)


def monthly(path: Path) -> pd.DataFrame:
    """Detections per month (rows) and route (columns, routecast's route ids)."""
    raw = pd.read_csv(path, parse_dates=["date"])
    raw = raw[raw["route"].isin(ROUTES)]
    return raw.pivot_table(index="date", columns="route", values="count", aggfunc="sum").rename(columns=ROUTES)


def shifts(table: pd.DataFrame, closed: str, first: str, months: int) -> pd.DataFrame:
    """Per route: detections over ``months`` from ``first``, the same months a year before, the change, and the
    change as a share of the closed route's shortfall (the closed route's own row: -1)."""
    after = pd.date_range(first, periods=months, freq="MS")
    before = after - pd.DateOffset(years=1)
    missing = [d for d in [*after, *before] if d not in table.index]
    if missing:
        raise SystemExit(f"{FILE} has no row for {missing[0].date()}: the file ends before this reading")
    now, then = table.loc[after].sum(), table.loc[before].sum()
    change = now - then
    shortfall = -change[closed]
    out = pd.DataFrame({"months after": now, "a year before": then, "change": change})
    out["share of the shortfall"] = change / shortfall if shortfall > 0 else float("nan")
    return out.astype({"months after": int, "a year before": int, "change": int})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True, help=f"the folder holding {FILE}")
    args = ap.parse_args()
    path = args.data_dir / FILE
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    table = monthly(path)
    for name, closed, first, months in EVENTS:
        last = (pd.Timestamp(first) + pd.DateOffset(months=months - 1)).strftime("%Y-%m")
        sys.stdout.write(f"\n{name}: {closed} closed; {first[:7]} to {last} against a year before (detections)\n\n")
        out = shifts(table, closed, first, months)
        sys.stdout.write(
            "| route | months after | a year before | change | share of the shortfall |\n|---|---:|---:|---:|---:|\n"
        )
        for route, r in out.iterrows():
            share = r["share of the shortfall"]
            counts = f"{r['months after']:,.0f} | {r['a year before']:,.0f} | {r['change']:+,.0f}"
            sys.stdout.write(f"| {route} | {counts} | {share:+.3f} |\n")


if __name__ == "__main__":
    main()
