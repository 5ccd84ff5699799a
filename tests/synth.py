"""A small synthetic ping generator for tests (the demo uses the realistic Spark simulator, simulator/run.py).

Phones cluster at the hubs of each route (the vertices of its segments): a resident background population
with a weekly rhythm, plus migrants whose daily numbers follow a summer peak, a trend and, on sea segments,
bad-weather days without crossings. Device ids are random per day (daily pseudonym rotation). A small share
of rows is deliberately broken or duplicated so that ingest's quarantine and accounting have work to do.
Seeded: the same config writes the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from geo.catalogue import Catalogue
from jobs.schemas import PINGS, arrow_schema

KM_PER_DEG_LAT = 111.32
# Home-network codes (MCC) of a few origin countries and of hub countries; illustrative, not a census.
ORIGIN_MCCS = ("605", "608", "612", "614", "621", "634", "412", "417", "470", "602", "603", "604")


@dataclass(frozen=True)
class SynthConfig:
    start: dt.date
    days: int = 90
    seed: int = 7
    background_per_hub: float = 45.0  # resident devices seen at a hub per day
    migrants_per_hub: float = 25.0  # migrant devices at a hub per day, before seasonality and trend
    pings_per_device: float = 4.0  # mean extra pings (each device has at least one)
    spread_km: float = 1.5  # how far around a hub devices are seen (1 sd)
    trend_per_year: float = 0.3  # relative growth of migrant numbers per year
    bad_weather_share: float = 0.1  # share of days without sea crossings
    bad_row_share: float = 0.001  # broken rows, for quarantine
    duplicate_share: float = 0.002  # exact duplicates, for deduplication

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)


@dataclass(frozen=True)
class Hub:
    route_id: str
    segment_id: str
    lat: float
    lon: float
    sea: bool


def hubs(catalogue: Catalogue) -> list[Hub]:
    """Every vertex of every segment line, as a place where phones are seen."""
    out = []
    for route in catalogue:
        for seg in route.segments:
            for lon, lat in seg.line.coords:
                out.append(Hub(route.id, seg.id, float(lat), float(lon), seg.mode == "sea"))
    return out


def migrant_factor(day: dt.date, cfg: SynthConfig) -> float:
    """Seasonality (peak in late July) times trend, relative to the start."""
    season = 1.0 + 0.5 * np.cos(2 * np.pi * (day.timetuple().tm_yday - 205) / 365.25)
    trend = 1.0 + cfg.trend_per_year * (day - cfg.start).days / 365.25
    return float(season * trend)


def pings_for_day(day: dt.date, hub_list: list[Hub], cfg: SynthConfig, rng: np.random.Generator) -> pd.DataFrame:
    """All pings of one day, in the PINGS schema's columns."""
    weekend = day.weekday() >= 5
    rough_sea = rng.random() < cfg.bad_weather_share
    bg = rng.poisson(cfg.background_per_hub * (0.8 if weekend else 1.0), size=len(hub_list))
    mig_rate = cfg.migrants_per_hub * migrant_factor(day, cfg)
    mig = np.array([0 if (h.sea and rough_sea) else rng.poisson(mig_rate) for h in hub_list], dtype=np.int64)
    devices_per_hub = bg + mig
    n_dev = int(devices_per_hub.sum())
    hub_of_device = np.repeat(np.arange(len(hub_list)), devices_per_hub)
    is_migrant = (
        np.concatenate([np.r_[np.zeros(b, bool), np.ones(m, bool)] for b, m in zip(bg, mig, strict=True)])
        if n_dev
        else np.zeros(0, bool)
    )
    device_ids = np.char.mod("%016x", rng.integers(0, 2**62, size=n_dev, dtype=np.int64))
    mcc = np.where(is_migrant, rng.choice(ORIGIN_MCCS, size=n_dev), None)

    n_pings = 1 + rng.poisson(cfg.pings_per_device, size=n_dev)
    dev = np.repeat(np.arange(n_dev), n_pings)
    hub_lat = np.array([h.lat for h in hub_list])[hub_of_device][dev]
    hub_lon = np.array([h.lon for h in hub_list])[hub_of_device][dev]
    d_lat = rng.normal(0, cfg.spread_km, size=dev.size) / KM_PER_DEG_LAT
    d_lon = rng.normal(0, cfg.spread_km, size=dev.size) / (KM_PER_DEG_LAT * np.cos(np.radians(hub_lat)))
    seconds = rng.integers(0, 86_400, size=dev.size)
    ts = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(seconds, unit="s")
    frame = pd.DataFrame(
        {
            "device_id": device_ids[dev],
            "ts": ts,
            "lat": hub_lat + d_lat,
            "lon": hub_lon + d_lon,
            "accuracy_m": rng.gamma(2.0, 15.0, size=dev.size).round(1),
            "mcc": mcc[dev],
        }
    )
    return _inject_faults(frame, cfg, rng)


def _inject_faults(frame: pd.DataFrame, cfg: SynthConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = len(frame)
    n_bad = rng.binomial(n, cfg.bad_row_share) if n else 0
    if n_bad:
        idx = rng.choice(n, size=n_bad, replace=False)
        kind = rng.integers(0, 3, size=n_bad)
        frame.loc[idx[kind == 0], "lat"] = 95.0
        frame.loc[idx[kind == 1], "ts"] = pd.NaT
        frame.loc[idx[kind == 2], "device_id"] = None
    n_dup = rng.binomial(n, cfg.duplicate_share) if n else 0
    if n_dup:
        frame = pd.concat([frame, frame.iloc[rng.choice(n, size=n_dup, replace=False)]], ignore_index=True)
    return frame


def generate_pings(
    catalogue: Catalogue,
    cfg: SynthConfig,
    out_dir: Path,
    on_day: Callable[[dt.date], None] | None = None,
) -> int:
    """Write one Parquet file per day under ``out_dir`` (replacing earlier output); return the row count."""
    hub_list = hubs(catalogue)
    if not hub_list:
        raise ValueError("the catalogue has no segments to generate pings along")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("pings-*.parquet"):
        old.unlink()
    schema = arrow_schema(PINGS)
    rows = 0
    for day, rng in _days_with_rngs(cfg):
        frame = pings_for_day(day, hub_list, cfg, rng)
        pq.write_table(
            pa.Table.from_pandas(frame, schema=schema, preserve_index=False), out_dir / f"pings-{day:%Y%m%d}.parquet"
        )
        rows += len(frame)
        if on_day:
            on_day(day)
    return rows


def _days_with_rngs(cfg: SynthConfig) -> Iterable[tuple[dt.date, np.random.Generator]]:
    # One child seed per day: a day's rows do not depend on how many days come before it.
    seeds = np.random.SeedSequence(cfg.seed).spawn(cfg.days)
    for i, seed in enumerate(seeds):
        yield cfg.start + dt.timedelta(days=i), np.random.default_rng(seed)
