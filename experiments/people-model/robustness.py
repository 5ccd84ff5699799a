"""Is the people model robust to how migrants use phones? One table over worlds simulated with one parameter varied.

Each world is a var folder the pipeline ran into (simulate, ingest, aggregate; README.md), one simulated with the
default ``simulator/simulator.toml`` (the baseline) and the others each with one phone-behaviour parameter halved or
doubled. For each world, ``measure.run`` fits the model in-sample (on every coarse figure) and on the held-out split
``measure.py`` uses by default (fit before the start of the month holding the middle of the run, score from it).
Prints markdown: per variant and route the Pearson r of the daily people on the route with the true people
(route presence), the median over routes, and whether every route that reaches the bar on the baseline still does.

    .venv/bin/python experiments/people-model/robustness.py baseline=/tmp/robust/baseline/var \\
        "carried ×0.5=/tmp/robust/carried_x0.5/var" ... [--bar 0.8] [--csv scores.csv]

The first world is the baseline. Reads Parquet with pandas; no Spark.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402  (experiments/people-model is not a package)


def default_split(var_dir: Path) -> pd.Timestamp:
    """The held-out split ``measure.main`` uses without ``--fit-until``: the start of the month holding the middle of
    the signal's days."""
    days = pd.to_datetime(
        pd.read_parquet(var_dir / "lake" / "silver" / "density", columns=["date"])["date"].astype(str)
    )
    first, last = days.min(), days.max()
    return (first + (last - first) / 2).to_period("M").to_timestamp()


def scores(worlds: dict[str, Path], res: int, min_devices: int) -> pd.DataFrame:
    """``variant, fit, route_id, r, feature, true/day, est/day``: the in-sample and held-out fit on each world."""
    rows = []
    for variant, var_dir in worlds.items():
        for fit, until in (("in-sample", None), ("held-out", default_split(var_dir))):
            table = measure.run(var_dir, res, min_devices, until, 1.0, None)
            sys.stderr.write(f"{variant}: {fit} fitted\n")
            for route_id, row in table.iterrows():
                rows.append(
                    {
                        "variant": variant,
                        "fit": fit,
                        "split": "" if until is None else f"{until:%Y-%m-%d}",
                        "route_id": route_id,
                        "r": row["r"],
                        "feature": row["feature"],
                        "true/day": row["true/day"],
                        "est/day": row["est/day"],
                        # the best single feature's r read against the truth (measure.best_features; never fitted)
                        "ceiling": row["its r"],
                    }
                )
    return pd.DataFrame(rows)


def _r(value: float, bar: float) -> str:
    """Two decimals, three where two would round across the bar (0.797 is not 0.80); bold at or above the bar."""
    if not np.isfinite(value):
        return "–"
    text = f"{value:.2f}"
    if (float(text) >= bar) != (value >= bar):
        text = f"{value:.3f}"
    text = text.replace("-", "−")
    return f"**{text}**" if value >= bar else text


def table(frame: pd.DataFrame, fit: str, bar: float) -> str:
    """One markdown table of one fit: a row per variant (in the order given), a column per route (the baseline's
    busiest in-sample first), the median r, and whether the routes at or above ``bar`` on the baseline stay there."""
    variants = list(dict.fromkeys(frame["variant"]))
    order = frame[(frame["variant"] == variants[0]) & (frame["fit"] == "in-sample")].set_index("route_id")
    routes = list(order["true/day"].sort_values(ascending=False).index)
    frame = frame[frame["fit"] == fit]
    baseline = frame[frame["variant"] == variants[0]].set_index("route_id")
    passing = [r for r in routes if np.isfinite(baseline.loc[r, "r"]) and baseline.loc[r, "r"] >= bar]
    r = frame.pivot(index="variant", columns="route_id", values="r").reindex(index=variants, columns=routes)
    head = ["variant", *routes, "median r", f"baseline's r ≥ {bar:g} routes still ≥ {bar:g}"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(routes) + 1) + "---|"]
    for variant, row in r.iterrows():
        failing = [f"{route} {_r(row[route], bar)}" for route in passing if not row[route] >= bar]
        flag = "yes" if not failing else "no: " + ", ".join(failing)
        if not passing:
            flag = "(none on the baseline)"
        median = float(np.nanmedian(row.to_numpy(dtype=float))) if row.notna().any() else float("nan")
        cells = [variant, *(_r(row[route], bar) for route in routes), _r(median, bar), flag]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def features(frame: pd.DataFrame, fit: str) -> str:
    """The feature each fit chose and, in brackets, the ceiling: the best single feature's r read against the truth
    (never fitted on), per variant and route (``blind``: no fit, no people)."""
    variants = list(dict.fromkeys(frame["variant"]))
    order = frame[(frame["variant"] == variants[0]) & (frame["fit"] == "in-sample")].set_index("route_id")
    routes = list(order["true/day"].sort_values(ascending=False).index)
    frame = frame[frame["fit"] == fit].assign(
        cell=lambda d: d["feature"].astype(str) + " (" + d["ceiling"].map(lambda c: _r(c, 2.0)) + ")"
    )
    f = frame.pivot(index="variant", columns="route_id", values="cell").reindex(index=variants, columns=routes)
    lines = ["| variant | " + " | ".join(routes) + " |", "|---|" + "---|" * len(routes)]
    lines += ["| " + " | ".join([v, *(str(x) for x in row)]) + " |" for v, row in f.iterrows()]
    return "\n".join(lines) + "\n"


def _world(text: str) -> tuple[str, Path]:
    name, sep, path = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("worlds", nargs="*", type=_world, help="NAME=VAR_DIR per world, the baseline first")
    parser.add_argument("--res", type=int, default=7, help="the series' H3 resolution (settings h3_res)")
    parser.add_argument("--min-devices", type=int, default=15, help="the suppression threshold of the runs")
    parser.add_argument("--bar", type=float, default=0.8, help="the r a route should keep (the requirement: 0.8)")
    parser.add_argument("--csv", type=Path, help="also write the scores here (or, with no worlds, read them)")
    args = parser.parse_args(argv)
    if args.worlds:
        worlds = dict(args.worlds)
        for name, var_dir in worlds.items():
            if not (var_dir / "lake" / "silver" / "density").exists():
                sys.exit(f"{name}: {var_dir} holds no silver density; simulate, ingest and aggregate into it")
        frame = scores(worlds, args.res, args.min_devices)
        if args.csv:
            frame.to_csv(args.csv, index=False)
    elif args.csv:
        frame = pd.read_csv(args.csv, keep_default_na=False, na_values=[""])
    else:
        parser.error("name at least one world (NAME=VAR_DIR), or --csv with saved scores")
    out = sys.stdout
    split = frame.loc[frame["fit"] == "held-out", "split"].iloc[0]
    out.write("## Route presence r, in-sample (fitted on every coarse figure)\n\n")
    out.write(table(frame, "in-sample", args.bar))
    out.write(f"\n## Route presence r, held-out (fitted before {split}, scored from it)\n\n")
    out.write(table(frame, "held-out", args.bar))
    out.write("\n## Feature chosen in-sample (ceiling: the best single feature's r by the truth)\n\n")
    out.write(features(frame, "in-sample"))


if __name__ == "__main__":
    main()
