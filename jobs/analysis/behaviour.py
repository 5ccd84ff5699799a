"""The scenario engine's behaviour parameters, estimated from a past closure in daily counts per crossing point.

``routecast scenario estimate`` reads people passing crossing points per day — the simulator's history
(``var/truth/arrivals``) or a CSV of official counts per place and day — and a release's route network, which says
which points a target means (a route destination: its departure points, where the engine puts diverted people).
``forecasting.scenario.estimate.estimate_block`` turns the closure's marks on those counts into parameters; this
module writes them as a parameters file (``ScenarioParameters`` as JSON) that ``routecast scenario run
--parameters`` and the API (``ROUTECAST_SCENARIO_PARAMETERS``) use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from forecasting.scenario import Network, ScenarioParameters, Target
from forecasting.scenario.estimate import BlockEstimate, estimate_block
from jobs.analysis.counterfactual import TRUTH_ARRIVALS

__all__ = [
    "COUNT_COLUMNS",
    "control_points",
    "daily_people",
    "estimate_closure",
    "read_point_counts",
    "target_key",
    "with_estimate",
]

COUNT_COLUMNS = ("date", "route_id", "crossing_point_id", "people")


def read_point_counts(path: Path) -> pd.DataFrame:
    """People passing crossing points per day (``COUNT_COLUMNS``) from ``path``: the simulator's truth folder (its
    ``arrivals`` table), a parquet table, or a CSV with those columns. A day without a row, between the table's first
    and last day, is a day nobody passed."""
    path = Path(path)
    if path.is_dir() and (path / TRUTH_ARRIVALS).exists():
        table = pd.read_parquet(path / TRUTH_ARRIVALS).rename(columns={"arrivals": "people"})
    elif path.is_dir() or path.suffix == ".parquet":
        table = pd.read_parquet(path)
    elif path.is_file():
        table = pd.read_csv(path)
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    missing = [c for c in COUNT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COUNT_COLUMNS)}")
    table = table[list(COUNT_COLUMNS)].copy()
    table["date"] = pd.to_datetime(table["date"], errors="coerce")
    table["people"] = pd.to_numeric(table["people"], errors="coerce")
    bad = table["date"].isna() | table["people"].isna() | (table["people"] < 0)
    if bad.any():
        first = table.index[bad.to_numpy()][0]
        raise ValueError(f"{path}: {int(bad.sum())} row(s) without a valid date or a count >= 0 (first: row {first})")
    return table


def daily_people(counts: pd.DataFrame, points: Sequence[tuple[str, str]]) -> pd.Series:
    """People passing ``points`` per day, summed, from the table's first to its last day (0 where no row)."""
    wanted = set(points)
    keys = zip(counts["route_id"], counts["crossing_point_id"], strict=True)
    rows = counts[[k in wanted for k in keys]]
    days = pd.date_range(counts["date"].min(), counts["date"].max(), freq="D")
    return rows.groupby("date")["people"].sum().reindex(days, fill_value=0).astype("float64")


def estimate_closure(
    counts: pd.DataFrame,
    network: Network,
    closed: Target,
    start: dt.date,
    end: dt.date,
    destinations: Sequence[Target],
    *,
    source: str,
    control: Sequence[tuple[str, str]] | None = None,
    before_days: int = 28,
    release_days: int = 14,
    divert_days: int = 35,
    seed: int = 0,
) -> BlockEstimate:
    """What the people blocked at ``closed`` from ``start`` to ``end`` did (``estimate_block``), reading each target
    as the engine does on ``network``: a point is that point, a route or segment its departure points. The closed
    point's counterfactual follows ``control`` (points; default ``control_points``; empty: a flat level).

    Raises ``ScenarioError`` for a target the network does not know, ``ValueError`` as ``estimate_block`` does."""
    closed_points = network.resolve(closed, "closed")
    to_points = {str(t): network.resolve(t, f"to[{i}]") for i, t in enumerate(destinations)}
    series = {t: daily_people(counts, points) for t, points in to_points.items()}
    if control is None:
        control = control_points(network, closed_points, [p for points in to_points.values() for p in points])
    return estimate_block(
        daily_people(counts, closed_points),
        series,
        start,
        end,
        source=source,
        control=daily_people(counts, control) if control else None,
        before_days=before_days,
        release_days=release_days,
        divert_days=divert_days,
        seed=seed,
    )


def control_points(
    network: Network, closed: Sequence[tuple[str, str]], destinations: Sequence[tuple[str, str]] = ()
) -> tuple[tuple[str, str], ...]:
    """The points whose people rise and fall with the closed points' but whom the closure does not touch: the other
    departure points of the same routes, less those downstream of the closed points (fewer people reach them) and
    the destinations' points and theirs (diverted people reach them)."""
    routes = {r for r, _ in closed}
    touched = set(closed) | network.downstream(list(closed)) | network.downstream(list(destinations))
    return tuple(
        p.key for p in network.points if p.route_id in routes and p.role == "departure" and p.key not in touched
    )


def target_key(network: Network, target: Target) -> str:
    """``target`` as the engine keys its parameters (``ScenarioParameters.by_target``): written in full, a bare point
    id with its route."""
    if target.level != "point":
        return str(target)
    route_id, point_id = network.resolve(target, "closed")[0]
    return f"point:{route_id}/{point_id}"


def with_estimate(
    parameters: ScenarioParameters, key: str, estimate: BlockEstimate, *, as_default: bool
) -> ScenarioParameters:
    """``parameters`` with ``estimate`` for closures of the target ``key`` (``by_target``; see ``target_key``) and,
    ``as_default``, for any other blocked target too."""
    update: dict[str, object] = {"by_target": {**parameters.by_target, key: estimate.parameters}}
    if as_default:
        update["default"] = estimate.parameters
    return parameters.model_copy(update=update)
