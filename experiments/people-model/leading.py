"""Do the people already on a route forecast its arrivals better than univariate forecasts of the same people series?

Rolling origins over a simulated world that went through ingest and aggregate (and whose official files the
simulator wrote, ``truth/official``). At each origin the people stage's pure part (``jobs.stages.people``) is fitted
on what a nightly run on that day would have: the signal up to the origin, the Frontex months that ended by then and
the UK's days up to then. It gives, per entry point and route, the people crossing per day up to the origin and the
crossings the people present imply for the next W/2 days (``ahead``, the leading indicator). Three forecasts of the
next 7 days' arrivals are then scored against the truth's arrivals (never used to fit):

- **leading**: the ``ahead`` days, then the last of them carried on if W/2 < 7;
- **naive**: the last day's people crossing, every day; **seasonal naive**: the last 7 days again;
- **champion**: the pipeline's univariate selection on the people crossing series (``forecasting.selection``,
  the nightly's daily candidates and backtest), the model the nightly would publish without the leading indicator.

Printed per route (the sum of its entry points) and for the ten busiest entry points: MAE of the 7-day total over
the origins for each forecast and the ratio of leading (and champion) to the better naive; logged to MLflow
(experiment ``routecast-people-leading``) unless ``--no-mlflow``.

    .venv/bin/python experiments/people-model/leading.py --var-dir /tmp/med/var --first 2025-06-01 --last 2025-07-24
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.schemas import AHEAD, CROSSING
from contracts.series import PEOPLE_SOURCE
from forecasting.selection import select
from geo.catalogue import load_catalogue
from geo.entry import entry_points
from jobs.settings import JobSettings
from jobs.stages.counts import read_counts
from jobs.stages.forecast import fitted_to, procedure_key, selection_configs
from jobs.stages.people import coarse_figures, estimate_people, load_priors
from simulator.official import FILE_SOURCES

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import load_signal, markdown  # noqa: E402

HORIZON = 7
EXPERIMENT = "routecast-people-leading"


def official(var_dir: Path, catalogue) -> pd.DataFrame:
    """The simulated world's official files, read and checked as ``routecast ingest-counts`` reads them: their gold
    series rows (``jobs.stages.people.coarse_figures`` turns them into what the model is fitted on)."""
    folder = var_dir / "truth" / "official"
    return pd.concat(
        [read_counts(folder / name, source, catalogue).series for name, source in FILE_SOURCES.items()],
        ignore_index=True,
    )


def true_arrivals(var_dir: Path, catalogue) -> pd.DataFrame:
    """Per (route, entry point, day): the simulated arrivals (0 where none), plus each route's total as point ``*``."""
    arrivals = pd.read_parquet(var_dir / "truth" / "arrivals")
    arrivals["date"] = pd.to_datetime(arrivals["date"].astype(str))
    entries = {(r, p) for r, ps in entry_points(catalogue).items() for p in ps}
    keep = [(r, p) in entries for r, p in zip(arrivals["route_id"], arrivals["crossing_point_id"], strict=True)]
    at = arrivals[keep].groupby(["route_id", "crossing_point_id", "date"])["arrivals"].sum()
    routes = at.groupby(level=["route_id", "date"]).sum()
    routes.index = pd.MultiIndex.from_arrays(
        [routes.index.get_level_values(0), ["*"] * len(routes), routes.index.get_level_values(1)], names=at.index.names
    )
    return pd.concat([at, routes]).astype("float64")


def forecasts_at(origin: pd.Timestamp, signal, gold, priors, catalogue, champion_cfg) -> pd.DataFrame:
    """The four 7-day forecasts of every entry point and route from what a nightly run on ``origin`` has."""
    monthly, daily = coarse_figures(gold, priors, origin.date())
    result = estimate_people(signal[signal["date"] <= origin], monthly, daily, priors, catalogue)
    rows = result.rows.assign(date=lambda f: pd.to_datetime(f["date"]))
    entries = {(r, p) for r, ps in entry_points(catalogue).items() for p in ps}
    crossing = rows[
        [(r, p) in entries for r, p in zip(rows["route_id"], rows["crossing_point_id"], strict=True)]
        & rows["people"].notna()
    ]
    days = pd.date_range(origin + pd.Timedelta(days=1), periods=HORIZON, freq="D")
    out = []
    for (route_id, point), one in crossing.groupby(["route_id", "crossing_point_id"]):
        past = one[one["measure"] == CROSSING].set_index("date")["people"].sort_index()
        ahead = one[one["measure"] == AHEAD].set_index("date")["people"].sort_index()
        if len(past) < 28:
            continue
        leading = ahead.reindex(days).ffill().fillna(ahead.iloc[-1] if len(ahead) else past.iloc[-1])
        naive = pd.Series(past.iloc[-1], index=days)
        seasonal = pd.Series(past.iloc[-7:].to_numpy(), index=days)
        champion = _champion(past, route_id, point, champion_cfg, days)
        for name, f in (("leading", leading), ("naive", naive), ("seasonal naive", seasonal), ("champion", champion)):
            if f.isna().all():  # no forecast (too short): left out, not counted as zero
                continue
            out.append((origin, route_id, point, name, float(f.sum())))
    frame = pd.DataFrame(out, columns=["origin", "route_id", "point", "forecast", "total7"])
    routes = frame.groupby(["origin", "route_id", "forecast"], as_index=False)["total7"].sum().assign(point="*")
    return pd.concat([frame, routes], ignore_index=True)


def _champion(past: pd.Series, route_id: str, point: str, cfg, days: pd.DatetimeIndex) -> pd.Series:
    series = pd.DataFrame({"series_id": f"{route_id}/{point}", "ds": past.index, "y": past.to_numpy()})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chosen = select(series, fitted_to(cfg, procedure_key(PEOPLE_SOURCE, "D"), len(series)))
        return chosen.forecast.set_index(pd.to_datetime(chosen.forecast["ds"]))["yhat"].reindex(days).clip(lower=0)
    except ValueError:
        return pd.Series(np.nan, index=days)


def scores(forecasts: pd.DataFrame, truth: pd.Series) -> pd.DataFrame:
    """Per route and point: true 7-day total per origin (mean), MAE of each forecast, and the ratios to the better
    naive."""

    def true_total(row) -> float:
        days = pd.date_range(row.origin + pd.Timedelta(days=1), periods=HORIZON, freq="D")
        try:
            return float(truth.loc[(row.route_id, row.point)].reindex(days, fill_value=0.0).sum())
        except KeyError:
            return 0.0

    forecasts = forecasts.assign(truth=[true_total(r) for r in forecasts.itertuples()])
    forecasts["error"] = (forecasts["total7"] - forecasts["truth"]).abs()
    mae = forecasts.pivot_table(index=["route_id", "point"], columns="forecast", values="error", aggfunc="mean")
    true = forecasts.groupby(["route_id", "point"])["truth"].mean().rename("true 7-day total")
    out = pd.concat([true, mae], axis=1)
    out["origins"] = forecasts.groupby(["route_id", "point"])["origin"].nunique()
    best = out[["naive", "seasonal naive"]].min(axis=1)
    out["leading / best naive"] = out["leading"] / best
    out["champion / best naive"] = out["champion"] / best
    out["leading / champion"] = out["leading"] / out["champion"]
    return out.sort_values("true 7-day total", ascending=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", type=Path, required=True)
    parser.add_argument("--first", required=True, help="first origin (YYYY-MM-DD)")
    parser.add_argument("--last", required=True, help="last origin: at least 7 days before the truth ends")
    parser.add_argument("--every", type=int, default=7, help="days between origins")
    parser.add_argument("--res", type=int, default=7)
    parser.add_argument("--min-devices", type=int, default=15)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    catalogue = load_catalogue()
    signal = load_signal(args.var_dir, args.res, args.min_devices)
    gold = official(args.var_dir, catalogue)
    priors = load_priors()
    cfg = selection_configs(JobSettings())[procedure_key(PEOPLE_SOURCE, "D")]
    origins = pd.date_range(args.first, args.last, freq=f"{args.every}D")
    frames = []
    for i, origin in enumerate(origins, 1):
        sys.stderr.write(f"origin {origin:%Y-%m-%d} ({i}/{len(origins)})\n")
        frames.append(forecasts_at(origin, signal, gold, priors, catalogue, cfg))
    table = scores(pd.concat(frames, ignore_index=True), true_arrivals(args.var_dir, catalogue))
    routes = table.xs("*", level="point")
    points = table.drop("*", level="point").head(10)
    sys.stdout.write(f"## Routes (sum of their entry points), {len(origins)} origins\n\n")
    sys.stdout.write(markdown(routes.round(2)))
    sys.stdout.write("\n## The ten busiest entry points\n\n")
    sys.stdout.write(markdown(points.round(2)))
    if not args.no_mlflow:
        import mlflow

        mlflow.set_tracking_uri(JobSettings().tracking_uri)
        mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run(run_name=f"leading-{args.first}-{args.last}"):
            mlflow.log_params({"var_dir": str(args.var_dir), "origins": len(origins), "horizon": HORIZON})
            for (route_id, point), row in table.iterrows():
                key = route_id if point == "*" else f"{route_id}.{point}"
                for column in ("leading / best naive", "champion / best naive", "leading / champion"):
                    if np.isfinite(row[column]):
                        mlflow.log_metric(f"{column.replace(' / ', '_over_').replace(' ', '_')}.{key}", row[column])
            mlflow.log_text(markdown(table.round(3)), "leading.md")


if __name__ == "__main__":
    main()
