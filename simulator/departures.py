"""How many journeys start per route and day, who the agents are, and on which days boats cannot sail.

Departures are a base rate x scale x yearly season x trend x a slow random wave (AR(1) in logs), Poisson; they
start ``warmup_days`` before the first simulated day so the routes are full when the output begins. The days'
departures become cohorts of consecutive agent ids (``route_key << 40 | n``, so a route's agents do not depend
on which other routes are simulated). Bad-weather days, likelier in winter, hold boats in port. These are drawn
on the driver from numpy generators seeded by (seed, route, stream): a few numbers per route and day.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib

import numpy as np
import pandas as pd

from simulator.config import RouteParams, SimulatorConfig
from simulator.draws import Stream

# Weather reaches past the run: journeys that started late may sail after it (the output stops at the end).
WEATHER_DAYS_AFTER = 400


def route_key(route_id: str) -> int:
    """The route's agent-id prefix: agent ids are ``route_key << 40 | n``."""
    return zlib.crc32(route_id.encode()) >> 12


def seasonal_factor(day_of_year: np.ndarray, amplitude: float, peak_day: int) -> np.ndarray:
    """The yearly cosine: 1 + amplitude at ``peak_day``, 1 - amplitude half a year later."""
    return 1.0 + amplitude * np.cos(2 * np.pi * (np.asarray(day_of_year) - peak_day) / 365.25)


def _days_of_year(start: dt.date, first_day: int, n_days: int) -> np.ndarray:
    return np.array(
        [(start + dt.timedelta(days=int(d))).timetuple().tm_yday for d in range(first_day, first_day + n_days)]
    )


def daily_departures(
    route_id: str, params: RouteParams, cfg: SimulatorConfig, start: dt.date, first_day: int, n_days: int, scale: float
) -> np.ndarray:
    """Journeys started per day on one route, for days ``first_day .. first_day + n_days - 1`` (seeded)."""
    rng = np.random.default_rng([cfg.seed, route_key(route_id), Stream.DEPART])
    days = np.arange(first_day, first_day + n_days)
    doy = _days_of_year(start, first_day, n_days)
    season = seasonal_factor(doy, params.seasonal_amplitude, params.peak_day_of_year)
    trend = np.maximum(1.0 + params.trend_per_year * days / 365.25, 0.05)
    # A slow AR(1) wave in logs, started from its stationary distribution; mean-corrected so E[factor] = 1.
    phi, sd = cfg.migrants.persistence, cfg.migrants.volatility
    eps = rng.normal(0.0, sd * math.sqrt(1 - phi**2), size=n_days)
    wave = np.empty(n_days)
    x = rng.normal(0.0, sd)
    for i in range(n_days):
        x = phi * x + eps[i]
        wave[i] = x
    mean = params.departures_per_day * scale * season * trend * np.exp(wave - sd**2 / 2)
    return rng.poisson(mean)


def departure_cohorts(
    route_ids: list[str], cfg: SimulatorConfig, start: dt.date, days: int, scale: float
) -> pd.DataFrame:
    """Per route and day with departures (warm-up included): ``route_idx, day, n, first_id`` (agent ids
    ``first_id .. first_id + n - 1``)."""
    rows = []
    for ri, route_id in enumerate(route_ids):
        params = cfg.routes[route_id]
        n = daily_departures(route_id, params, cfg, start, -cfg.warmup_days, cfg.warmup_days + days, scale)
        first = (route_key(route_id) << 40) + np.concatenate([[0], np.cumsum(n)[:-1]])
        rows.append(
            pd.DataFrame(
                {
                    "route_idx": np.full(len(n), ri, dtype=np.int32),
                    "day": np.arange(-cfg.warmup_days, days, dtype=np.int32),
                    "n": n.astype(np.int64),
                    "first_id": first.astype(np.int64),
                }
            )
        )
    cohorts = pd.concat(rows, ignore_index=True)
    return cohorts[cohorts["n"] > 0].reset_index(drop=True)


def bad_weather_days(route_id: str, cfg: SimulatorConfig, start: dt.date, first_day: int, n_days: int) -> np.ndarray:
    """True on days when boats on this route do not sail; likelier in winter (seeded)."""
    rng = np.random.default_rng([cfg.seed, route_key(route_id), Stream.SAIL])
    doy = _days_of_year(start, first_day, n_days)
    w = cfg.weather
    winter = (1 + np.cos(2 * np.pi * (doy - 15) / 365.25)) / 2  # 1 in mid-January, 0 in mid-July
    share = w.bad_day_share_summer + (w.bad_day_share_winter - w.bad_day_share_summer) * winter
    return rng.random(n_days) < share


def next_good_days(route_ids: list[str], cfg: SimulatorConfig, start: dt.date, days: int) -> np.ndarray:
    """``[route, day + warmup]``: the first good-weather day on or after that day, from the warm-up's first day
    to ``WEATHER_DAYS_AFTER`` days after the run."""
    horizon = cfg.warmup_days + days + WEATHER_DAYS_AFTER
    next_good = np.zeros((len(route_ids), horizon), dtype=np.int64)
    for ri, route_id in enumerate(route_ids):
        bad = bad_weather_days(route_id, cfg, start, -cfg.warmup_days, horizon)
        nxt, following = np.empty(horizon, dtype=np.int64), horizon
        for i in range(horizon - 1, -1, -1):
            following = following if bad[i] else i
            nxt[i] = following
        next_good[ri] = nxt - cfg.warmup_days
    return next_good
