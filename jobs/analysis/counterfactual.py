"""The scenario engine checked against a counterfactual world: what it predicts a closure changes, against what the
simulator shows it changes.

The simulator runs twice with the same seed: once as is (the baseline world, which the pipeline turns into a release)
and once with an intervention (a closure of a crossing point from a day on). The same seed gives the same people,
departures and journeys, so the difference between the two worlds' ground truth (``truth/arrivals``: people passing
each crossing point per day) is what the intervention did. The engine gets only the baseline world's release (its
people forecasts and route network) and the scenario a planner would write; its prediction of the difference is
compared per route and week with the simulated one.

A route's figure is its arrivals: people passing its entry points (``geo.entry``, where official statistics count
arrivals), summed per week (7 days from the intervention's start).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.published import CURRENT, FORECASTS, MANIFEST, RELEASES, SCENARIO_NETWORK
from contracts.series import PEOPLE_SOURCE
from forecasting.scenario import Network, ScenarioParameters, ScenarioSpec, simulate_scenario
from geo.catalogue import Catalogue
from geo.entry import entry_points

__all__ = ["CheckRow", "compare", "predicted_weekly", "simulated_weekly"]

TRUTH_ARRIVALS = "arrivals"


@dataclass(frozen=True)
class Release:
    """What the engine may read of the baseline world: its people forecasts and its route network."""

    release_id: str
    forecasts: pd.DataFrame
    network: Network


def read_release(store_dir: Path, release_id: str | None = None) -> Release:
    """The current (or named) release of ``store_dir``; ``ValueError`` if it has no route network."""
    release_id = release_id or (store_dir / CURRENT).read_text().strip()
    folder = store_dir / RELEASES / release_id
    manifest = json.loads((folder / MANIFEST).read_text())
    if not manifest.get(SCENARIO_NETWORK):
        raise ValueError(f"release {release_id} has no route network for scenarios (no people series?)")
    forecasts = pd.read_parquet(folder / FORECASTS)
    return Release(
        release_id, forecasts[forecasts["source"] == PEOPLE_SOURCE], Network.from_dict(manifest[SCENARIO_NETWORK])
    )


def _weeks(days: pd.Series, start: dt.date) -> pd.Series:
    return (pd.to_datetime(days) - pd.Timestamp(start)).dt.days // 7


def simulated_weekly(
    baseline_truth: Path, intervened_truth: Path, catalogue: Catalogue, start: dt.date, weeks: int
) -> pd.DataFrame:
    """Per route and week from ``start``: arrivals at its entry points in each world and their difference (people).

    ``*_truth``: the simulator's truth folders (``var/truth``) of the two runs."""
    entries = entry_points(catalogue)
    frames = []
    for name, folder in (("baseline", baseline_truth), ("intervened", intervened_truth)):
        a = pd.read_parquet(folder / TRUTH_ARRIVALS)
        a = a[[p in entries.get(r, ()) for r, p in zip(a["route_id"], a["crossing_point_id"], strict=True)]]
        a = a.assign(week=_weeks(a["date"], start))
        a = a[(a["week"] >= 0) & (a["week"] < weeks)]
        frames.append(a.groupby(["route_id", "week"])["arrivals"].sum().rename(name))
    out = pd.concat(frames, axis=1).fillna(0.0)
    full = pd.MultiIndex.from_product([sorted(entries), range(weeks)], names=["route_id", "week"])
    out = out.reindex(full, fill_value=0.0)
    out["simulated"] = out["intervened"] - out["baseline"]
    return out.reset_index()


def predicted_weekly(
    release: Release,
    spec: ScenarioSpec,
    catalogue: Catalogue,
    start: dt.date,
    weeks: int,
    n_draws: int = 1000,
    seed: int = 0,
    parameters: ScenarioParameters | None = None,
) -> pd.DataFrame:
    """Per route and week from ``start``: the engine's predicted change in arrivals at the route's entry points,
    the median and the 80 % and 95 % intervals of the per-draw weekly sums (people); ``parameters``: the behaviour
    the engine runs with (None: its defaults)."""
    draws = simulate_scenario(
        spec, release.network, release.forecasts, parameters=parameters, n_draws=n_draws, seed=seed
    )
    entries = entry_points(catalogue)
    days = pd.Series(pd.to_datetime(list(draws.days)))
    week = _weeks(days, start).to_numpy()
    rows = []
    change = draws.scenario - draws.baseline  # (rows, draws, days)
    for route_id, points in sorted(entries.items()):
        idx = [
            i for i, r in enumerate(draws.rows) if r.kind == "point" and r.route_id == route_id and r.point_id in points
        ]
        total = change[idx].sum(axis=0) if idx else np.zeros((draws.n_draws, len(days)))
        for w in range(weeks):
            in_week = week == w
            if not in_week.any():
                continue
            weekly = total[:, in_week].sum(axis=1)
            q = np.quantile(weekly, [0.5, 0.1, 0.9, 0.025, 0.975])
            rows.append((route_id, w, int(in_week.sum()), bool(idx), *q))
    columns = ["route_id", "week", "days", "shown", "predicted", "lo80", "hi80", "lo95", "hi95"]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class CheckRow:
    """One route over the weeks checked: simulated and predicted total change (people), their relative error, and in
    how many weeks the 80 % interval held the simulated change."""

    route_id: str
    simulated: float
    predicted: float
    relative_error: float
    weeks_covered: int
    weeks: int


def compare(simulated: pd.DataFrame, predicted: pd.DataFrame, routes: list[str]) -> tuple[pd.DataFrame, list[CheckRow]]:
    """The weekly table of both and, per route of ``routes``, the totals over the weeks the prediction covers.

    A week is covered when the simulated change lies in the 80 % interval read at the world's resolution, whole
    people (lower bound rounded down, upper up): a week the world leaves exactly unchanged is inside [0.0001, 0.4]."""
    table = simulated.merge(predicted, on=["route_id", "week"], how="inner")
    table["covered80"] = (np.floor(table["lo80"]) <= table["simulated"]) & (
        table["simulated"] <= np.ceil(table["hi80"])
    )
    rows = []
    for route_id in routes:
        t = table[table["route_id"] == route_id]
        sim, pred = float(t["simulated"].sum()), float(t["predicted"].sum())
        rel = abs(pred - sim) / abs(sim) if sim != 0 else float("inf")
        rows.append(CheckRow(route_id, sim, pred, rel, int(t["covered80"].sum()), len(t)))
    return table, rows
