"""The driver-side model of one run: the config and the catalogue turned into the small tables the Spark stages
share, checked against each other.

``build_model`` refuses a config that does not fit the catalogue (a route without parameters, a segment id
that is not on its route, a boat on a land segment, a closure of an unknown or ambiguous crossing point, an
unknown ``to_route``) and packs what the executors need into an ``ItineraryPlan``: per path its legs (segment,
fractions, km, mean dwell, travel mode) as arrays, per mode its speed and ping share, per route the sailing
weather and the origin networks, the closures as positions on segments, and what the phones need: the shares
of phones carried, the local SIM of each leg's country and which legs are at sea. The agents themselves are only
cohorts (route, day, how many, first id); the executors expand them (``simulator.journeys``). The model also
lists the departure legs the truth counts (``departure_legs``) and the people who are not migrants:
``stayer_groups`` (residents, foreign workers and tourists around places) and ``driver_segments``.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from pyspark.sql import SparkSession

from geo.catalogue import Catalogue, load_catalogue
from simulator.config import ScalePreset, SimulatorConfig, SimulatorConfigError
from simulator.departures import departure_cohorts, next_good_days, route_key
from simulator.world import (
    KM_PER_DEG,
    PathPlan,
    Place,
    catalogue_places,
    crossing_fraction,
    line_km,
    nearest_place,
    route_paths,
)

DEPARTURE_TOL_KM = 10.0  # a sea leg starting this close to a departure point sets off from it (the nearest one)
# Person ids of the people around a place: place_key << 24 | kind << 22 | n, so kinds never share an id.
RESIDENT, WORKER, TOURIST = 0, 1, 2


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
    phones_cum: np.ndarray  # cumulative shares of migrants carrying 0, 1, 2 phones
    local_sim_share: float
    local_sim_days: float
    leg_local_mcc: np.ndarray  # [path, leg]: the network of the country the leg starts in ("" unknown)
    mode_sea: np.ndarray

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
    departure_legs: pd.DataFrame  # path_idx, leg, route_id, crossing_point_id: sea legs leaving a departure point
    stayer_groups: pd.DataFrame  # group_key, kind, lat, lon, n, codes, cum: people living around a place
    driver_segments: pd.DataFrame  # seg_idx, driver_key, n, km, codes, cum: drivers per desert-truck segment

    def others(self) -> int:
        """People on foreign networks who are not migrants: foreign workers, tourist beds and drivers."""
        stayers = self.stayer_groups
        return int(stayers.loc[stayers["kind"] != RESIDENT, "n"].sum()) + int(self.driver_segments["n"].sum())

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
    places = catalogue_places(catalogue, cfg.country_mcc)
    leg_local_mcc = np.full(shape, "", dtype=object)
    for pi, rows in enumerate(leg_rows):
        for k, row in enumerate(rows):
            first = segments[row[0]][2].interpolate(row[1], normalized=True)
            leg_local_mcc[pi, k] = nearest_place(places, first.x, first.y).mcc

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
        phones_cum=np.cumsum(cfg.migrant_phones.carried),
        local_sim_share=cfg.migrant_phones.local_sim_share,
        local_sim_days=cfg.migrant_phones.local_sim_days,
        leg_local_mcc=leg_local_mcc,
        mode_sea=np.array([m.sea for m in modes]),
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
        places=places,
        skipped_closures=skipped,
        departure_legs=_departure_legs(catalogue, paths, leg_rows, segments, plan),
        stayer_groups=_stayer_groups(cfg, preset, places),
        driver_segments=_driver_segments(cfg, preset, catalogue, segments),
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


def _departure_legs(
    catalogue: Catalogue,
    paths: list[PathPlan],
    leg_rows: list[list[_LegRow]],
    segments: list[tuple[str, str, shapely.LineString]],
    plan: ItineraryPlan,
) -> pd.DataFrame:
    """The path legs that set sail from a departure point: sea legs starting within DEPARTURE_TOL_KM of one (the
    nearest, so no leg counts at two points)."""
    rows = []
    for pi, (path, legs) in enumerate(zip(paths, leg_rows, strict=True)):
        points = [cp for cp in catalogue.route(path.route_id).crossing_points if cp.role == "departure"]
        for k, (seg_idx, f_start, *_, mode) in enumerate(legs):
            if not points or not plan.mode_sea[mode]:
                continue
            start = segments[seg_idx][2].interpolate(f_start, normalized=True)
            km = [
                KM_PER_DEG * math.hypot(cp.lat - start.y, (cp.lon - start.x) * math.cos(math.radians(start.y)))
                for cp in points
            ]
            best = int(np.argmin(km))
            if km[best] <= DEPARTURE_TOL_KM:
                rows.append((pi, k, path.route_id, points[best].id))
    return pd.DataFrame(rows, columns=["path_idx", "leg", "route_id", "crossing_point_id"])


def _pick(networks: dict[str, float], leave_out: str = "") -> tuple[list[str], list[float]]:
    """Codes and cumulative probabilities of a network mix, without ``leave_out`` (the local network)."""
    mix = {code: w for code, w in networks.items() if code != leave_out and w > 0}
    if not mix:  # only the local network was listed: keep it rather than leave the group without a network
        mix = {code: w for code, w in networks.items() if w > 0}
    cum = np.cumsum(list(mix.values())) / sum(mix.values())
    return list(mix), [float(c) for c in cum]


def _stayer_groups(cfg: SimulatorConfig, preset: ScalePreset, places: list[Place]) -> pd.DataFrame:
    """Per place and kind (residents, foreign workers, tourists): how many people live there and their networks.

    Refuses a tourist place that is not in the catalogue (the message lists the nearest spellings)."""
    per_place = preset.residents_per_place
    unknown = sorted(set(cfg.tourists.places) - {p.name for p in places})
    if unknown:  # perhaps a place of a route not simulated: only a name unknown to the whole catalogue is refused
        known = {p.name for p in catalogue_places(load_catalogue(), cfg.country_mcc)}
        bad = sorted(set(unknown) - known)
        if bad:
            raise SimulatorConfigError(
                f"tourists.places: {bad[0]!r} is not a catalogue place (a segment vertex or crossing point name, "
                "e.g. 'Lampedusa', 'Kos', 'Palma')"
            )
    rows = []
    for p in places:
        base = p.key << 24
        rows.append((base | RESIDENT << 22, RESIDENT, p.lat, p.lon, per_place, [p.mcc], [1.0]))
        workers = round(cfg.workers.per_resident.get(p.country, 0.0) * per_place)
        if workers:
            rows.append((base | WORKER << 22, WORKER, p.lat, p.lon, workers, *_pick(cfg.workers.networks, p.mcc)))
        tourists = round(cfg.tourists.places.get(p.name, 0.0) * cfg.tourists.peak_per_place * per_place)
        if tourists:
            rows.append((base | TOURIST << 22, TOURIST, p.lat, p.lon, tourists, *_pick(cfg.tourists.networks, p.mcc)))
    return pd.DataFrame(rows, columns=["group_key", "kind", "lat", "lon", "n", "codes", "cum"])


def _driver_segments(
    cfg: SimulatorConfig, preset: ScalePreset, catalogue: Catalogue, segments: list[tuple[str, str, shapely.LineString]]
) -> pd.DataFrame:
    """Per segment travelled by ``desert_truck`` (a route's ``travel`` or the default): its drivers."""
    n = round(cfg.drivers.per_segment * preset.residents_per_place)
    codes, cum = _pick(cfg.drivers.networks)
    rows = []
    for seg_idx, (route_id, segment_id, line) in enumerate(segments):
        seg = catalogue.route(route_id).segment(segment_id)
        mode = cfg.routes[route_id].travel.get(segment_id, cfg.migrants.default_travel[seg.mode])
        if mode == "desert_truck" and n > 0:
            km = line_km(line)
            key = zlib.crc32(f"{route_id}/{segment_id}".encode()) << 24
            rows.append((seg_idx, key, n, km, codes, cum))
    return pd.DataFrame(rows, columns=["seg_idx", "driver_key", "n", "km", "codes", "cum"])


# --- what the Spark stages share -------------------------------------------------------------------------------


def epoch_seconds(day: dt.date) -> int:
    """Seconds since the epoch at the start of a day (UTC): simulated times are days since the first day."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def spark_partitions(spark: SparkSession, expected_rows: float) -> int:
    """Enough tasks for the cores, and tasks of a few million rows at most for the big scales."""
    return max(spark.sparkContext.defaultParallelism, math.ceil(expected_rows / 3e6))
