"""A published store for bench/api.py, written by the real publish step (``jobs.stages.publish.publish``).

Every series of the catalogue's hierarchy (``jobs.stages.series.series_keys``: all, every route, every segment) gets a
28-day density forecast with 80 and 95 % intervals and 365 days of history; every segment gets suppressed cells at
H3 resolutions 5 and 7 for the last 28 days. Two releases (``as_of - 1`` and ``as_of``) so that the current one has
a previous release, as in production. Values are synthetic but shaped like the real thing: segment levels from a
log-normal, routes and the total summed from their segments, a weekday profile, a yearly wave, over-dispersed noise,
intervals widening with the horizon. Seeded: the same arguments give the same release ids.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HORIZON = 28
HISTORY_DAYS = 365
MIN_DEVICES = 15
CELL_RES = (5, 7)
CELLS_PER_SEGMENT = 12  # per resolution: the corridor cells with published (suppressed) density
WEEKDAY = np.array([1.00, 0.97, 0.95, 1.02, 1.10, 1.18, 1.05])  # Monday first
Z80, Z95 = 1.2816, 1.9600
MODELS = ("auto_ets", "auto_theta", "ensemble", "seasonal_naive")
KEY_COLUMNS = ["series_id", "level", "route_id", "segment_id", "freq", "source"]


@dataclass(frozen=True)
class StoreInfo:
    release_ids: list[str]
    series: int
    forecast_rows: int
    history_rows: int
    cell_rows: int
    bytes_on_disk: int
    # (route_id, level) -> number of series the forecast endpoint answers with
    series_per_request: dict[tuple[str, str], int]


def _keys(catalogue) -> pd.DataFrame:
    from jobs.stages.series import series_keys

    keys = pd.DataFrame(series_keys(catalogue), columns=["series_id", "level", "route_id", "segment_id"])
    return keys.assign(freq="D", source="density")[KEY_COLUMNS]


def _levels(keys: pd.DataFrame, rng: np.random.Generator) -> dict[str, float]:
    """Mean daily level per series: segments drawn, routes and 'all' their sums."""
    seg = keys[keys.level == "segment"]
    seg_level = dict(zip(seg.series_id, rng.lognormal(mean=5.5, sigma=0.9, size=len(seg)), strict=True))
    out = dict(seg_level)
    for route_id, g in seg.groupby("route_id"):
        out[f"route:{route_id}"] = float(sum(seg_level[s] for s in g.series_id))
    out["all"] = float(sum(v for k, v in out.items() if k.startswith("route:")))
    return out


def _profile(days: pd.DatetimeIndex, level: float, phase: float) -> np.ndarray:
    yearly = 1.0 + 0.25 * np.sin(2 * np.pi * (days.dayofyear.to_numpy() / 365.25) + phase)
    return level * WEEKDAY[days.dayofweek.to_numpy()] * yearly


def _release_frames(keys: pd.DataFrame, levels: dict[str, float], as_of: dt.date, seed: int):
    rng = np.random.default_rng(seed)
    hist_days = pd.date_range(end=pd.Timestamp(as_of), periods=HISTORY_DAYS, freq="D")
    fc_days = pd.date_range(pd.Timestamp(as_of) + pd.Timedelta(days=1), periods=HORIZON, freq="D")
    steps = np.arange(1, HORIZON + 1)
    forecasts, history = [], []
    for sid in keys.series_id:
        level = levels[sid]
        phase = float(rng.uniform(0, 2 * np.pi))
        mean = _profile(hist_days, level, phase)
        # over-dispersed counts: gamma-Poisson with shape 20
        y = rng.poisson(rng.gamma(20.0, mean / 20.0)).astype("float64")
        history.append(pd.DataFrame({"series_id": sid, "ds": hist_days.date, "y": y}))
        yhat = _profile(fc_days, level, phase) * float(rng.uniform(0.95, 1.05))
        sigma = 0.12 * np.sqrt(1.0 + steps / 7.0)
        forecasts.append(
            pd.DataFrame(
                {
                    "series_id": sid,
                    "ds": fc_days,
                    "yhat": yhat,
                    "lo80": yhat * np.exp(-Z80 * sigma),
                    "hi80": yhat * np.exp(Z80 * sigma),
                    "lo95": yhat * np.exp(-Z95 * sigma),
                    "hi95": yhat * np.exp(Z95 * sigma),
                    "model": MODELS[int(rng.integers(len(MODELS)))],
                }
            )
        )
    return pd.concat(forecasts, ignore_index=True), pd.concat(history, ignore_index=True)


def _cells(catalogue, as_of: dt.date, seed: int) -> pd.DataFrame:
    """Cells as a real release holds them: sampled at the finest resolution, each coarser cell the sum of its
    published children, so that no parent minus its children leaves a small remainder (the API refuses that)."""
    from geo.cells import corridor_cells, int_to_cell
    from geo.points import cells_to_parents

    rng = np.random.default_rng(seed)
    days = pd.date_range(end=pd.Timestamp(as_of), periods=28, freq="D").date
    finest = max(CELL_RES)
    devices_of: dict[int, np.ndarray] = {}  # one series per cell, whichever segments it lies in
    owners = []
    for route in catalogue:
        for seg in route.segments:
            ids = sorted(corridor_cells(seg, finest))
            step = max(1, len(ids) // CELLS_PER_SEGMENT)
            for cell_int in ids[::step][:CELLS_PER_SEGMENT]:
                if int(cell_int) not in devices_of:
                    devices_of[int(cell_int)] = MIN_DEVICES + 1 + rng.poisson(rng.lognormal(3.0, 1.0), size=len(days))
                owners.append((route.id, seg.id, int(cell_int)))
    sampled = np.array(sorted(devices_of), dtype=np.int64)
    parts = []
    for res in CELL_RES:
        parent = cells_to_parents(sampled, res)
        sums = {int(c): np.sum([devices_of[int(f)] for f in sampled[parent == c]], axis=0) for c in np.unique(parent)}
        seen = set()
        for route_id, seg_id, cell_int in owners:
            cell = int(cells_to_parents(np.array([cell_int]), res)[0])
            if (route_id, seg_id, cell) in seen:
                continue
            seen.add((route_id, seg_id, cell))
            devices = sums[cell]
            base = float(np.median(devices))
            parts.append(
                pd.DataFrame(
                    {
                        "route_id": route_id,
                        "segment_id": seg_id,
                        "cell": int_to_cell(cell),
                        "res": res,
                        "date": days,
                        "devices": devices,
                        "excess": devices - base,
                        "zscore": (devices - base) / max(np.std(devices), 1.0),
                    }
                )
            )
    cells = pd.concat(parts, ignore_index=True)
    totals = cells.groupby(["route_id", "segment_id", "res"])["devices"].transform("sum")
    per_cell = cells.groupby(["route_id", "segment_id", "res", "cell"])["devices"].transform("sum")
    return cells.assign(share=per_cell / totals)


def build_store(store_dir: Path, as_of: dt.date, seed: int = 7) -> StoreInfo:
    """Publish two releases (``as_of`` - 1 day, then ``as_of``, current) into ``store_dir``."""
    from forecasting.tracking import RunInfo
    from geo.catalogue import load_catalogue
    from jobs.stages import publish

    catalogue = load_catalogue()
    keys = _keys(catalogue)
    levels = _levels(keys, np.random.default_rng(seed))
    release_ids = []
    for n, day in enumerate((as_of - dt.timedelta(days=1), as_of), start=1):
        forecasts, history = _release_frames(keys, levels, day, seed + n)
        cells = _cells(catalogue, day, seed + n)
        release = publish.publish(
            store_dir,
            forecasts,
            keys,
            as_of=day,
            run=RunInfo(
                run_id=f"bench-run-{n}", model_version=str(n), experiment_id="1", tracking_uri="sqlite:///m.db"
            ),
            min_devices=MIN_DEVICES,
            history=history,
            cells=cells,
        )
        release_ids.append(release.release_id)
    per_request = {
        (str(route_id), str(level)): len(g)
        for (route_id, level), g in keys.dropna(subset=["route_id"]).groupby(["route_id", "level"])
    }
    size = sum(p.stat().st_size for p in store_dir.rglob("*") if p.is_file())
    return StoreInfo(
        release_ids=release_ids,
        series=len(keys),
        forecast_rows=len(forecasts),
        history_rows=len(history),
        cell_rows=len(cells),
        bytes_on_disk=size,
        series_per_request=per_request,
    )
