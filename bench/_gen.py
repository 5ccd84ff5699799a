"""Synthetic bronze pings for the benchmarks: a week of phones clustered around real places on the routes.

Shape (seeded, so the same arguments write the same rows):

- ``days`` consecutive dates; a weekday rhythm on the daily volume (weekends a little quieter).
- Devices are daily pseudonyms (16 hex characters, like the simulator's): no id spans two dates. Each device
  pings 1 + Poisson(``pings_per_device`` - 1) times a day, around a centre hour drawn from a diurnal curve.
- Every device lives at one of ``places`` towns or coast points taken from the route catalogue (segment
  vertices), chosen with Zipf-like weights; its anchor is the place plus a few km of spread (1 sd between
  1.5 and 5 km, per place); three quarters of its pings fall within ~300 m of the anchor, the rest anywhere
  in its place. ``scattered`` of the devices are instead spread uniformly over the routes' bounding box:
  aggregates that the 15-device suppression removes.

Written as the ingest job writes bronze: ``<table>/date=YYYY-MM-DD/part-NNNNN.parquet`` with
``arrow_schema(BRONZE_PINGS)`` minus the partition column, timestamps in microseconds UTC. Generation runs
in chunks of at most ``chunk_rows`` pings (one Parquet file each), so its memory does not grow with N.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from geo.catalogue import load_catalogue
from jobs.schemas import BRONZE_PINGS, arrow_schema

KM_PER_DEG_LAT = 111.32
US_PER_HOUR = 3_600_000_000
# Home networks: a few hub countries (residents) and origin countries (migrants); illustrative only.
MCCS = np.array(["222", "214", "202", "208", "262", "605", "608", "612", "621", "634", "412", "602"])
MCC_WEIGHTS = np.array([18, 14, 10, 8, 6, 8, 6, 6, 6, 6, 6, 6], dtype=float)
# Share of a day's pings in each UTC hour (quiet nights, busy daytime).
DIURNAL = np.array([1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 5, 4, 3, 2], dtype=float)
WEEKDAY_VOLUME = np.array([1.0, 1.0, 1.0, 1.0, 1.05, 0.9, 0.85])


@dataclass(frozen=True)
class GenConfig:
    pings: int
    start: dt.date = dt.date(2025, 3, 3)  # a Monday
    days: int = 7
    places: int = 40
    pings_per_device: float = 8.0
    scattered: float = 0.03
    seed: int = 42
    chunk_rows: int = 1_000_000

    @property
    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]


@dataclass(frozen=True)
class Places:
    lat: np.ndarray
    lon: np.ndarray
    spread_km: np.ndarray
    weight: np.ndarray
    bbox: tuple[float, float, float, float]  # lat_min, lat_max, lon_min, lon_max


def route_places(n: int, rng: np.random.Generator) -> Places:
    """``n`` distinct segment vertices of the route catalogue, with Zipf-like weights and a spread each."""
    coords = sorted(
        {
            (round(lat, 3), round(lon, 3))
            for route in load_catalogue()
            for seg in route.segments
            for lon, lat in seg.line.coords
        }
    )
    all_lat = np.array([c[0] for c in coords])
    all_lon = np.array([c[1] for c in coords])
    pick = rng.choice(len(coords), size=min(n, len(coords)), replace=False)
    weight = 1.0 / np.arange(1, pick.size + 1) ** 0.8
    return Places(
        lat=all_lat[pick],
        lon=all_lon[pick],
        spread_km=rng.uniform(1.5, 5.0, size=pick.size),
        weight=weight / weight.sum(),
        bbox=(all_lat.min(), all_lat.max(), all_lon.min(), all_lon.max()),
    )


def _split(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split into integers proportional to ``weights`` (largest remainders)."""
    share = total * weights / weights.sum()
    out = np.floor(share).astype(np.int64)
    out[np.argsort(out - share)[: total - out.sum()]] += 1
    return out


def _pings_per_device(n: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Pings of each of a day's devices, summing to exactly ``n``."""
    counts = 1 + rng.poisson(mean - 1, size=int(n / mean * 1.1) + 16)
    while counts.sum() < n:
        counts = np.concatenate([counts, 1 + rng.poisson(mean - 1, size=int(n / mean * 0.1) + 16)])
    cut = int(np.searchsorted(np.cumsum(counts), n))  # the device where the running total reaches n
    counts = counts[: cut + 1]
    counts[-1] -= counts.sum() - n
    return counts


def _device_ids(seed: int, day: int, first: int, n: int) -> pa.Array:
    """Daily pseudonyms: a splitmix64 hash of (seed, day, device number), as 16 hex characters."""
    with np.errstate(over="ignore"):
        x = np.arange(first, first + n, dtype=np.uint64) + np.uint64(((seed * 1_000 + day) << 40) & (2**64 - 1))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return pa.array(np.char.mod("%016x", (x >> np.uint64(1)).astype(np.int64)))


def _chunk(
    cfg: GenConfig, places: Places, date: dt.date, day: int, first: int, counts: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """The pings of devices ``first .. first + len(counts)`` of one day, in time order."""
    n_dev, n = counts.size, int(counts.sum())
    dev = np.repeat(np.arange(n_dev), counts)
    scattered = rng.random(n_dev) < cfg.scattered
    place = rng.choice(places.lat.size, size=n_dev, p=places.weight)
    p_lat, p_lon, spread = places.lat[place], places.lon[place], places.spread_km[place]
    km_lon = KM_PER_DEG_LAT * np.cos(np.radians(p_lat))
    a_lat = p_lat + rng.normal(0, 1, n_dev) * spread / KM_PER_DEG_LAT
    a_lon = p_lon + rng.normal(0, 1, n_dev) * spread / km_lon
    lat_min, lat_max, lon_min, lon_max = places.bbox
    a_lat = np.where(scattered, rng.uniform(lat_min, lat_max, n_dev), a_lat)
    a_lon = np.where(scattered, rng.uniform(lon_min, lon_max, n_dev), a_lon)
    km_lon = KM_PER_DEG_LAT * np.cos(np.radians(a_lat))

    # Three quarters of the pings near the anchor (a few res-9 cells), the rest anywhere in the place.
    near = (rng.random(n) < 0.75) | scattered[dev]
    jitter = np.where(near, 0.3, spread[dev])
    centre_lat = np.where(near, a_lat[dev], p_lat[dev])
    centre_lon = np.where(near, a_lon[dev], p_lon[dev])
    lat = centre_lat + rng.normal(0, 1, n) * jitter / KM_PER_DEG_LAT
    lon = centre_lon + rng.normal(0, 1, n) * jitter / km_lon[dev]

    centre_hour = rng.choice(24, size=n_dev, p=DIURNAL / DIURNAL.sum())
    hour = np.rint(centre_hour[dev] + rng.normal(0, 3, n)).astype(np.int64) % 24
    day_us = (date - dt.date(1970, 1, 1)).days * 24 * US_PER_HOUR
    ts = day_us + hour * US_PER_HOUR + rng.integers(0, US_PER_HOUR, n)
    order = np.argsort(ts, kind="stable")

    ids = _device_ids(cfg.seed, day, first, n_dev)
    mcc = rng.choice(MCCS.size, size=n_dev, p=MCC_WEIGHTS / MCC_WEIGHTS.sum())
    dev = dev[order]
    schema = arrow_schema(BRONZE_PINGS)
    columns = {
        "device_id": ids.take(pa.array(dev)),
        "ts": pa.array(ts[order], type=schema.field("ts").type),
        "lat": pa.array(lat[order]),
        "lon": pa.array(lon[order]),
        "accuracy_m": pa.array(np.round(rng.lognormal(3.0, 0.8, n), 1)),
        "mcc": pa.DictionaryArray.from_arrays(pa.array(mcc[dev].astype(np.int32)), pa.array(MCCS)).cast(pa.string()),
    }
    return pa.table(columns, schema=pa.schema([f for f in schema if f.name != "date"]))


def generate_bronze(cfg: GenConfig, table: Path) -> Iterator[tuple[dt.date, int]]:
    """Write the bronze table at ``table``; yields (date, pings written) per date."""
    schema = arrow_schema(BRONZE_PINGS)
    if schema.names[-1] != "date":
        raise AssertionError("BRONZE_PINGS is expected to end with its partition column, date")
    root = np.random.SeedSequence(cfg.seed)
    places_seed, *day_seeds = root.spawn(cfg.days + 1)
    places = route_places(cfg.places, np.random.default_rng(places_seed))
    volume = WEEKDAY_VOLUME[[d.weekday() for d in cfg.dates]]
    for day, (date, n_day, seed) in enumerate(zip(cfg.dates, _split(cfg.pings, volume), day_seeds, strict=True)):
        rng = np.random.default_rng(seed)
        counts = _pings_per_device(int(n_day), cfg.pings_per_device, rng)
        folder = table / f"date={date.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        ends = np.cumsum(counts)
        first, part = 0, 0
        while first < counts.size:
            limit = ends[first] - counts[first] + cfg.chunk_rows  # at most chunk_rows pings from device `first` on
            last = max(int(np.searchsorted(ends, limit, side="right")), first + 1)
            chunk = _chunk(cfg, places, date, day, first, counts[first:last], rng)
            pq.write_table(chunk, folder / f"part-{part:05d}.parquet", compression="snappy")
            first, part = last, part + 1
        yield date, int(n_day)
