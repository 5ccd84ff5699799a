"""The driver-side model of one run: the config and the catalogue turned into the small tables the Spark stages
share, checked against each other.

``build_model`` refuses a config that does not fit the catalogue (a route without parameters, a segment id
that is not on its route, a boat on a land segment, a closure of an unknown or ambiguous crossing point, an
unknown ``to_route``) and packs what the executors need into an ``ItineraryPlan``: per path its legs (segment,
fractions, km, mean dwell, travel mode) as arrays, per mode its speed and ping share, per route the sailing
weather and the origin networks, and the closures as positions on segments. The agents themselves are only
cohorts (route, day, how many, first id); the executors expand them (``simulator.journeys``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from pyspark.sql import SparkSession

from geo.catalogue import Catalogue, load_catalogue
from simulator.config import ScalePreset, SimulatorConfig, SimulatorConfigError
from simulator.departures import departure_cohorts, next_good_days, route_key
from simulator.world import PathPlan, Place, catalogue_places, crossing_fraction, route_paths


@dataclass(frozen=True)
class ClosurePlan:
    """A closed crossing point as the agent logic sees it: a position on a segment and a time window."""

    seg_idx: int
    f: float
    start: float
    end: float
    divert_share: float
    to_route: int  # -1: the target route is not simulated, diverted agents leave the simulation
    lag: int


@dataclass(frozen=True)
class ItineraryPlan:
    """Everything the executors need to turn (agent, route, departure time) into legs: small arrays only."""

    seed: int
    warmup: int
    path_lo: np.ndarray  # per route: first global path index
    path_cum: list[np.ndarray]  # per route: cumulative path probabilities
    n_legs: np.ndarray  # per path
    leg_seg: np.ndarray  # [path, leg]
    leg_fs: np.ndarray
    leg_fe: np.ndarray
    leg_km: np.ndarray
    leg_dwell: np.ndarray
    leg_mode: np.ndarray
    mode_speed: np.ndarray
    mode_spread: np.ndarray
    mode_hour: np.ndarray  # departure hour for boats, -1 for land modes
    mode_ping_share: np.ndarray
    next_good: np.ndarray  # [route, day + warmup]: the first good-weather day on or after that day
    closures: tuple[ClosurePlan, ...]
    reopen_spread: float
    mcc_codes: list[np.ndarray]  # per route
    mcc_cum: list[np.ndarray]

    @property
    def max_legs(self) -> int:
        return int(self.leg_seg.shape[1])


@dataclass(frozen=True)
class Model:
    """The driver-side model of one run, shared by the Spark stages."""

    cfg: SimulatorConfig
    preset: ScalePreset
    catalogue: Catalogue
    start: dt.date
    days: int
    plan: ItineraryPlan
    paths: list[PathPlan]
    segments: list[tuple[str, str, shapely.LineString]]  # (route_id, segment_id, line) by seg_idx
    cohorts: pd.DataFrame  # route_idx, day, n, first_id
    places: list[Place]
    skipped_closures: tuple[str, ...]

    def seg_index(self) -> dict[tuple[str, str], int]:
        """(route_id, segment_id) -> seg_idx."""
        return {(r, s): i for i, (r, s, _) in enumerate(self.segments)}


def build_model(cfg: SimulatorConfig, preset: ScalePreset, catalogue: Catalogue, start: dt.date, days: int) -> Model:
    """The model of a run of ``days`` days from ``start``; SimulatorConfigError when the config does not fit."""
    route_ids = catalogue.route_ids()
    missing = [r for r in route_ids if r not in cfg.routes]
    if missing:
        raise SimulatorConfigError(f"no [routes.{missing[0]}] in the simulator config; every simulated route needs one")
    keys = [route_key(r) for r in route_ids]
    if len(set(keys)) != len(keys):
        raise SimulatorConfigError("two route ids hash to the same agent-id prefix; rename one of them")

    segments = [(route.id, seg.id, seg.line) for route in catalogue for seg in route.segments]
    seg_index = {(r, s): i for i, (r, s, _) in enumerate(segments)}
    paths, path_lo, path_cum, leg_rows = _path_legs(cfg, catalogue, seg_index)
    closures, skipped = _closure_plans(cfg, catalogue, seg_index)

    max_legs = max(len(rows) for rows in leg_rows)
    shape = (len(paths), max_legs)
    leg_arrays = [np.zeros(shape, dtype=dtype) for dtype in (np.int64, float, float, float, float, np.int64)]
    for pi, rows in enumerate(leg_rows):
        for k, row in enumerate(rows):
            for arr, value in zip(leg_arrays, row, strict=True):
                arr[pi, k] = value
    leg_seg, leg_fs, leg_fe, leg_km, leg_dwell, leg_mode = leg_arrays
    modes = list(cfg.travel_modes.values())

    mcc_codes, mcc_cum = [], []
    for route_id in route_ids:
        mix = cfg.routes[route_id].origin_mcc
        weights = np.array(list(mix.values()))
        mcc_codes.append(np.array(list(mix), dtype=object))
        mcc_cum.append(np.cumsum(weights) / weights.sum())

    plan = ItineraryPlan(
        seed=cfg.seed,
        warmup=cfg.warmup_days,
        path_lo=np.array(path_lo, dtype=np.int64),
        path_cum=path_cum,
        n_legs=np.array([len(rows) for rows in leg_rows], dtype=np.int64),
        leg_seg=leg_seg,
        leg_fs=leg_fs,
        leg_fe=leg_fe,
        leg_km=leg_km,
        leg_dwell=leg_dwell,
        leg_mode=leg_mode,
        mode_speed=np.array([m.km_per_day for m in modes]),
        mode_spread=np.array([m.spread for m in modes]),
        mode_hour=np.array(
            [m.departure_hour_utc if m.sea and m.departure_hour_utc is not None else -1.0 for m in modes]
        ),
        mode_ping_share=np.array([m.ping_share for m in modes]),
        next_good=next_good_days(route_ids, cfg, start, days),
        closures=closures,
        reopen_spread=cfg.migrants.reopen_spread_days,
        mcc_codes=mcc_codes,
        mcc_cum=mcc_cum,
    )
    return Model(
        cfg=cfg,
        preset=preset,
        catalogue=catalogue,
        start=start,
        days=days,
        plan=plan,
        paths=paths,
        segments=segments,
        cohorts=departure_cohorts(route_ids, cfg, start, days, preset.departures),
        places=catalogue_places(catalogue, cfg.country_mcc),
        skipped_closures=skipped,
    )


_LegRow = tuple[int, float, float, float, float, int]  # seg_idx, f_start, f_end, km, mean dwell, mode index


def _path_legs(
    cfg: SimulatorConfig, catalogue: Catalogue, seg_index: dict[tuple[str, str], int]
) -> tuple[list[PathPlan], list[int], list[np.ndarray], list[list[_LegRow]]]:
    """Every route's paths in catalogue order: the paths, per route its first path index and cumulative
    probabilities, and per path its legs."""
    mode_of = {name: i for i, name in enumerate(cfg.travel_modes)}
    paths: list[PathPlan] = []
    path_lo, path_cum = [], []
    leg_rows: list[list[_LegRow]] = []
    for route in catalogue:
        params = cfg.routes[route.id]
        seg_ids = {s.id for s in route.segments}
        for table_name, table in (
            ("branch_weight", params.branch_weight),
            ("travel", params.travel),
            ("dwell_days", params.dwell_days),
        ):
            unknown = sorted(set(table) - seg_ids)
            if unknown:
                raise SimulatorConfigError(
                    f"routes.{route.id}.{table_name}: unknown segment {unknown[0]!r}; "
                    f"segments are {', '.join(sorted(seg_ids))}"
                )
        route_paths_ = route_paths(route, params.branch_weight)
        path_lo.append(len(paths))
        path_cum.append(np.cumsum([p.probability for p in route_paths_]))
        for p in route_paths_:
            rows = []
            for leg in p.legs:
                seg = route.segment(leg.segment_id)
                mode = params.travel.get(seg.id, cfg.migrants.default_travel[seg.mode])
                if cfg.travel_modes[mode].sea != (seg.mode == "sea"):
                    raise SimulatorConfigError(
                        f"routes.{route.id}.travel.{seg.id}: mode {mode!r} cannot travel a {seg.mode} segment"
                    )
                dwell = params.dwell_days.get(seg.id, cfg.migrants.default_dwell_days[seg.mode])
                rows.append((seg_index[route.id, seg.id], leg.f_start, leg.f_end, leg.km, dwell, mode_of[mode]))
            leg_rows.append(rows)
        paths.extend(route_paths_)
    return paths, path_lo, path_cum, leg_rows


def _closure_plans(
    cfg: SimulatorConfig, catalogue: Catalogue, seg_index: dict[tuple[str, str], int]
) -> tuple[tuple[ClosurePlan, ...], tuple[str, ...]]:
    """The config's closures on the simulated routes, and notes on those skipped (their route is not simulated)."""
    route_ids = catalogue.route_ids()
    closures, skipped = [], []
    full = None  # the whole catalogue, read only to tell a crossing of another route from an unknown one
    for c in cfg.closures:
        owners = [
            r for r in catalogue if (c.route in (None, r.id)) and any(cp.id == c.crossing for cp in r.crossing_points)
        ]
        if len(owners) > 1:
            raise SimulatorConfigError(
                f"closure of {c.crossing!r}: the id belongs to routes {', '.join(r.id for r in owners)}; "
                "add route = ... to the closure"
            )
        if not owners:
            full = full or load_catalogue()
            known = any(
                (c.route in (None, r.id)) and any(cp.id == c.crossing for cp in r.crossing_points) for r in full
            )
            if not known:
                raise SimulatorConfigError(f"closure of {c.crossing!r}: no such crossing point in the catalogue")
            skipped.append(f"{c.crossing} (its route is not simulated)")
            continue
        route = owners[0]
        cp = next(cp for cp in route.crossing_points if cp.id == c.crossing)
        f = crossing_fraction(route, cp)
        if f is None:
            raise SimulatorConfigError(f"closure of {c.crossing!r}: the crossing point is off its segment line")
        if c.to_route not in cfg.routes and c.to_route not in (full or load_catalogue()).route_ids():
            raise SimulatorConfigError(f"closure of {c.crossing!r}: unknown to_route {c.to_route!r}")
        closures.append(
            ClosurePlan(
                seg_idx=seg_index[route.id, cp.segment_id],
                f=f,
                start=float(c.start_day),
                end=float(c.start_day + 7 * c.weeks),
                divert_share=c.divert_share,
                to_route=route_ids.index(c.to_route) if c.to_route in route_ids else -1,
                lag=c.lag_days,
            )
        )
    return tuple(closures), tuple(skipped)


# --- what the Spark stages share -------------------------------------------------------------------------------


def epoch_seconds(day: dt.date) -> int:
    """Seconds since the epoch at the start of a day (UTC): simulated times are days since the first day."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def spark_partitions(spark: SparkSession, expected_rows: float) -> int:
    """Enough tasks for the cores, and tasks of a few million rows at most for the big scales."""
    return max(spark.sparkContext.defaultParallelism, math.ceil(expected_rows / 3e6))
