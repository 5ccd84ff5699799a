"""Which forecasting procedure for the people series? Next-7-day totals of each series against its own next 7 days.

The people series (``people/route:…``, ``people/point:…`` in gold ``series``) are the measurement model's estimates:
smooth shares of a route's people, lagged by Little's law. At each origin (the series cut there) every procedure
forecasts 7 days, and its 7-day total is compared with the series' own next 7 days (what a forecast of the series
can be asked to know; the people model's own error against the truth is ``routecast truth``'s). Prints, per level,
each procedure's MAE over the better of naive (the last day × 7) and seasonal naive (the last 7 days), and how
often the published 7-day total's 80 % interval held the series' total.

    .venv/bin/python experiments/people-model/procedure.py --var-dir /tmp/med/var \\
        --origins 2025-06-05,2025-06-12,2025-06-19,2025-06-26

Reads Parquet with pandas; no Spark. The origins must leave 7 days of the series after them.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from forecasting.selection import SelectionConfig, select  # noqa: E402

# The procedures compared: the signal:D procedure the people series had (Prophet or seasonal naive on one 14-day
# holdout), and per-series picks or means among cheap candidates on 21 daily origins of 28 days (log1p calibration,
# 7- and 28-day totals): what a people:D procedure could be.
MANY = {"holdout": 28, "horizon": 28, "origins": 21, "step": 1, "totals": (7, 28), "calibration_space": "log1p"}
PROCEDURES = {
    "prophet|snaive, 1 origin": SelectionConfig(holdout=14, horizon=28, candidates=("seasonal_naive", "prophet")),
    "snaive": SelectionConfig(candidates=("seasonal_naive",), **MANY),
    "best of snaive, naive": SelectionConfig(candidates=("seasonal_naive", "naive"), **MANY),
    "best of snaive, naive, 8-week mean": SelectionConfig(
        candidates=("naive", "seasonal_naive", "window_mean"), **MANY
    ),
    "mean of snaive, naive, 8-week mean": SelectionConfig(
        candidates=("naive", "seasonal_naive", "window_mean"),
        champion="ensemble",
        ensemble_top=3,
        ensemble_stat="mean",
        **MANY,
    ),
    "best of those and AutoETS": SelectionConfig(
        candidates=("naive", "seasonal_naive", "window_mean", "auto_ets"), **MANY
    ),
}


def scores(series: pd.DataFrame, origins: list[pd.Timestamp]) -> pd.DataFrame:
    """One row per series and origin: the true 7-day total, each baseline's and procedure's absolute miss, and
    whether each procedure's published 7-day total's 80 % interval held it."""
    rows = []
    for sid, g in series.groupby("series_id"):
        g = g.sort_values("ds")
        if g["y"].sum() == 0:
            continue
        for origin in origins:
            past = g[g["ds"] <= origin]
            future = g[(g["ds"] > origin) & (g["ds"] <= origin + pd.Timedelta(days=7))]
            if len(future) < 7 or past.empty:
                continue
            true = float(future["y"].sum())
            row = {
                "series_id": sid,
                "level": g["level"].iloc[0],
                "origin": origin,
                "true": true,
                "naive": abs(7 * past["y"].iloc[-1] - true),
                "seasonal naive": abs(past["y"].iloc[-7:].sum() - true),
            }
            for name, cfg in PROCEDURES.items():
                try:
                    found = select(past[["series_id", "ds", "y"]], cfg)
                except ValueError:  # too short for this procedure at this origin
                    row[name] = row[f"{name} in 80 %"] = np.nan
                    continue
                row[name] = abs(float(found.forecast["yhat"].iloc[:7].sum()) - true)
                week = found.totals[found.totals["window"] == 7]
                inside = (week["lo80"] <= true) & (true <= week["hi80"])
                row[f"{name} in 80 %"] = float(inside.iloc[0]) if len(week) else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def table(frame: pd.DataFrame) -> str:
    """Per level, on the series × origins every procedure could forecast (a short series at an early origin is too
    short for some), each MAE over the better baseline's on the same rows."""
    lines = []
    for level, part in frame.groupby("level"):
        everyone = part[list(PROCEDURES)].notna().all(axis=1)
        left_out = int((~everyone).sum())
        part = part[everyone]
        best = min(part["naive"].mean(), part["seasonal naive"].mean())
        lines += [
            f"\n{level}: {part['series_id'].nunique()} series, {len(part)} series × origins"
            + (f" ({left_out} left out: too short for some procedure)" if left_out else "")
            + "\n",
            "| procedure | 7-day MAE / better naive | 7-day total in its 80 % interval |",
            "|---|---:|---:|",
        ]
        for name in ["naive", "seasonal naive", *PROCEDURES]:
            inside = part.get(f"{name} in 80 %")
            share = "" if inside is None or inside.isna().all() else f"{inside.mean():.2f}"
            lines.append(f"| {name} | {part[name].mean() / best:.3f} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", type=Path, required=True, help="a var folder whose gold series hold people")
    parser.add_argument("--origins", required=True, help="comma-separated dates, each leaving 7 days after it")
    parser.add_argument("--levels", default="route,point", help="people series levels to score")
    parser.add_argument("--csv", type=Path, help="also write the scores per series and origin here")
    args = parser.parse_args(argv)
    series = pd.read_parquet(args.var_dir / "lake" / "gold" / "series")
    series = series[(series["source"] == "people") & series["level"].isin(args.levels.split(","))]
    if series.empty:
        sys.exit(f"{args.var_dir}: no people series in gold; run the people and series stages first")
    series = series.assign(ds=pd.to_datetime(series["ds"]))
    warnings.filterwarnings("ignore")  # Prophet's and statsforecast's chatter on short series
    frame = scores(series, [pd.Timestamp(o) for o in args.origins.split(",")])
    if args.csv:
        frame.to_csv(args.csv, index=False)
    sys.stdout.write(table(frame))


if __name__ == "__main__":
    main()
