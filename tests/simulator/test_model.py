"""The simulator's driver-side model: seasons, departures, weather, the hash random streams, paths and places."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from simulator.config import SimulatorConfigError, load_config
from simulator.departures import bad_weather_days, daily_departures, seasonal_factor
from simulator.draws import hash_uniform
from simulator.world import catalogue_places, route_paths


def test_residents_are_on_the_networks_of_their_places_countries(catalogue):
    cfg = load_config()
    places = {p.name: p.mcc for p in catalogue_places(catalogue, cfg.country_mcc)}
    assert places["Lampedusa"] == "222" and places["Aswan"] == "602" and places["Terespol"] == "260"
    assert places["Laâyoune"] == "604"  # Western Sahara: Moroccan networks
    without_italy = {k: v for k, v in cfg.country_mcc.items() if k != "ITA"}
    with pytest.raises(SimulatorConfigError, match=r"no \[country_mcc\] entry for ITA"):
        catalogue_places(catalogue, without_italy)


def test_seasonal_factor_peaks_on_its_day_and_bottoms_half_a_year_later():
    f = seasonal_factor(np.array([200, 200 + 183]), 0.5, 200)
    assert f[0] == pytest.approx(1.5)
    assert f[1] == pytest.approx(0.5, abs=1e-3)


def test_departures_are_seeded_and_peak_in_summer_on_a_sea_route():
    cfg = load_config()
    params = cfg.routes["central_mediterranean"]
    jan1 = dt.date(2025, 1, 1)
    a = daily_departures("central_mediterranean", params, cfg, jan1, 0, 730, 1.0)
    b = daily_departures("central_mediterranean", params, cfg, jan1, 0, 730, 1.0)
    assert np.array_equal(a, b)
    doy = np.array([(jan1 + dt.timedelta(days=i)).timetuple().tm_yday for i in range(730)])
    summer, winter = a[(doy >= 170) & (doy < 230)].mean(), a[(doy < 30) | (doy >= 350)].mean()
    assert summer > 1.8 * winter  # amplitude 0.5 around day 200: about 1.5 / 0.6
    reseeded = cfg.model_copy(update={"seed": 1})
    other_seed = daily_departures("central_mediterranean", params, reseeded, jan1, 0, 730, 1.0)
    assert not np.array_equal(a, other_seed)


def test_bad_weather_days_are_likelier_in_winter():
    cfg = load_config()
    jan1 = dt.date(2025, 1, 1)
    bad = bad_weather_days("channel", cfg, jan1, 0, 3 * 365)
    doy = np.array([(jan1 + dt.timedelta(days=i)).timetuple().tm_yday for i in range(3 * 365)])
    winter, summer = bad[(doy < 45) | (doy > 335)].mean(), bad[(doy > 165) & (doy < 225)].mean()
    assert winter > 0.2 and summer < 0.1


def test_hash_uniform_is_deterministic_and_uniform():
    ids = np.arange(200_000, dtype=np.uint64)
    u = hash_uniform(7, 3, ids)
    assert np.array_equal(u, hash_uniform(7, 3, ids))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 19_000  # 20,000 expected per bin
    assert not np.array_equal(u, hash_uniform(7, 4, ids))


def test_route_paths_are_connected_chains_whose_probabilities_add_up(catalogue):
    cfg = load_config()
    for route in catalogue.routes:
        paths = route_paths(route, cfg.routes[route.id].branch_weight)
        assert sum(p.probability for p in paths) == pytest.approx(1.0)
        for path in paths:
            ids = [leg.segment_id for leg in path.legs]
            assert len(set(ids)) == len(ids), path.name
            for a, b in zip(path.legs, path.legs[1:], strict=False):
                end = route.segment(a.segment_id).line.interpolate(a.f_end, normalized=True)
                start = route.segment(b.segment_id).line.interpolate(b.f_start, normalized=True)
                assert end.distance(start) < 1e-6, f"{path.name}: {a.segment_id} does not join {b.segment_id}"
