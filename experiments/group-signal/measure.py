"""What does the home-network split of the density see of the migrants? Measured on simulated data.

For each route and day: the published devices of each home-network group (silver ``density_by_group``, at the
series' resolution, after suppression) summed over the route's cells, and the published total (silver ``density``
at the same resolution, above the threshold) over the same cells; against the true people on the route
(``var/truth/segment_people``) and the migrants' phones that pinged there (``var/truth/segment_phones``). Prints,
per route, the devices of each group over the whole run, the share of the total the published groups account for,
and the Pearson r of each group's daily devices (and of their sum over the groups that can hold migrants' phones)
with the true people.

    .venv/bin/python experiments/group-signal/measure.py --var-dir /tmp/groups/var

Reads Parquet with pandas; no Spark. A study, not a model: nothing here is fitted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.networks import ROAMING_GROUPS
from geo.catalogue import load_catalogue
from geo.cells import cell_segment_table


def _dates(frame: pd.DataFrame, column: str = "date") -> pd.DataFrame:
    return frame.assign(**{column: pd.to_datetime(frame[column].astype(str))})


def route_days(var_dir: Path, res: int, min_devices: int) -> pd.DataFrame:
    """Per (route_id, date): devices per group, ``total`` (published), the true ``people`` and ``phones_on``."""
    lake, truth = var_dir / "lake" / "silver", var_dir / "truth"
    for path in (lake / "density_by_group", lake / "density", truth / "segment_people", truth / "segment_phones"):
        if not path.exists():
            sys.exit(f"{path} is missing: simulate, then run ingest and aggregate into {var_dir} (README.md)")
    table = cell_segment_table(load_catalogue(), res)
    cells = pd.DataFrame({"cell": table["cell"].astype("int64"), "route_id": table["route_id"].astype(str)})
    cells = cells.drop_duplicates()
    groups = _dates(pd.read_parquet(lake / "density_by_group"))
    groups = groups[groups["res"] == res].merge(cells, on="cell")
    by_group = groups.pivot_table(index=["route_id", "date"], columns="group", values="devices", aggfunc="sum")
    density = _dates(pd.read_parquet(lake / "density", columns=["cell", "res", "devices", "date"]))
    density = density[(density["res"] == res) & (density["devices"] > min_devices)].merge(cells, on="cell")
    total = density.groupby(["route_id", "date"])["devices"].sum().rename("total")
    people = _dates(pd.read_parquet(truth / "segment_people")).groupby(["route_id", "date"])["people"].sum()
    phones = _dates(pd.read_parquet(truth / "segment_phones")).groupby(["route_id", "date"])["phones_on"].sum()
    out = pd.concat([by_group, total], axis=1).reindex(people.index).fillna(0.0)
    return out.assign(people=people, phones_on=phones.reindex(people.index).fillna(0))


def _r(x: pd.Series, y: pd.Series) -> float:
    return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")


def summary(days: pd.DataFrame) -> pd.DataFrame:
    """Per route: devices per group and in total, the share of the total in published groups, and r with people."""
    group_cols = [c for c in days.columns if c not in ("total", "people", "phones_on")]
    migrant_cols = [c for c in group_cols if c in ROAMING_GROUPS]
    rows = []
    for route_id, d in days.groupby(level="route_id"):
        signal = d[migrant_cols].sum(axis=1)
        row = {"route_id": route_id, "days": len(d), "people/day": d["people"].mean()}
        row["phones/day"] = d["phones_on"].mean()
        row["share of total in published groups"] = d[group_cols].to_numpy().sum() / max(d["total"].sum(), 1.0)
        row["migrant-group devices/day"] = signal.mean()
        row["r(migrant groups, people)"] = _r(signal, d["people"])
        row |= {f"r({c})": _r(d[c], d["people"]) for c in group_cols}
        rows.append(row)
    return pd.DataFrame(rows).set_index("route_id")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", type=Path, required=True, help="the var folder the pipeline ran into")
    parser.add_argument("--res", type=int, default=7, help="the series' H3 resolution (settings h3_res)")
    parser.add_argument("--min-devices", type=int, default=15, help="the suppression threshold of the run")
    args = parser.parse_args(argv)
    table = summary(route_days(args.var_dir, args.res, args.min_devices)).round(2).reset_index()
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.values:
        lines.append("| " + " | ".join(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
