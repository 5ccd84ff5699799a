"""The simulator's driver-side model: seasons, departures, weather, the hash random streams, paths and places,
and the agent logic's phones and SIMs (numpy, no Spark)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from simulator.config import SimulatorConfigError, load_config
from simulator.departures import bad_weather_days, daily_departures, route_key, seasonal_factor
from simulator.draws import hash_uniform
from simulator.journeys import NO_SWITCH, agent_legs
from simulator.model import TOURIST, WORKER, build_model
from simulator.pings import tourist_presence
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


# --- the migrants' phones and SIMs, in the agent logic (numpy, no Spark) -----------------------------------------


def _central_med_legs(catalogue, **phones):
    """Legs of 3,000 agents setting off on the Central Mediterranean on day 0, under a varied [migrant_phones]."""
    cfg = load_config()
    cfg = cfg.model_copy(update={"migrant_phones": cfg.migrant_phones.model_copy(update=phones), "closures": ()})
    model = build_model(cfg, cfg.scales["small"], catalogue, dt.date(2025, 6, 2), 30)
    route_idx = catalogue.route_ids().index("central_mediterranean")
    n = 3000
    agents = pd.DataFrame(
        {
            "agent_id": (route_key("central_mediterranean") << 40) + np.arange(n, dtype=np.int64),
            "route_idx": np.full(n, route_idx),
            "t0": np.zeros(n),
        }
    )
    return agent_legs(model.plan, agents)


def test_migrants_carry_none_one_or_two_phones_in_the_configured_shares(catalogue):
    legs = _central_med_legs(catalogue)
    phones = legs.groupby("agent_id")["phones"].first()
    shares = phones.value_counts(normalize=True).reindex([0, 1, 2], fill_value=0.0)
    # carried = [0.15, 0.70, 0.15]; 3,000 agents: a share's sd is under 0.01.
    assert shares[0] == pytest.approx(0.15, abs=0.03) and shares[2] == pytest.approx(0.15, abs=0.03)
    assert (legs.groupby("agent_id")["phones"].nunique() == 1).all()  # a person's phones do not change on the way


def test_a_phone_moves_to_the_local_sim_after_the_delay_and_keeps_it(catalogue):
    legs = _central_med_legs(catalogue, local_sim_share=1.0, local_sim_days=10.0)
    libya = legs[(legs["local_mcc"] == "606") & (legs["mcc"] != "606")]
    entered = libya.groupby("agent_id")["t_enter"].min()
    rows = libya[libya["switch0"] < NO_SWITCH]
    switched = rows.groupby("agent_id")["switch0"].min()
    delay = switched - entered.reindex(switched.index)
    # Everyone buys (share 1): Erlang-2 with mean 10 days, cut short only for the few who leave Libya sooner.
    assert len(switched) > 0.9 * entered.size
    assert (delay > 0).all() and 7.0 < delay.mean() < 11.0
    # The switch falls inside its leg, from another network (home, or Niger's bought in Agadez) to Libya's; legs
    # that start later keep a SIM bought on the way (Libya's, or a later country's), never the home or Niger's.
    assert ((rows["switch0"] >= rows["t_enter"]) & (rows["switch0"] < rows["t_exit"])).all()
    assert (rows["mcc0"] != "606").all()
    after = legs.merge(switched.rename("at"), left_on="agent_id", right_index=True)
    later = after[after["t_enter"] >= after["at"]]
    assert len(later) > 0 and not later["mcc0"].isin(["614", *later["mcc"].unique()]).any()
    none = _central_med_legs(catalogue, local_sim_share=0.0)
    assert (none["switch0"] == NO_SWITCH).all() and (none["mcc0"] == none["mcc"]).all()


def test_tourists_follow_their_season_and_drivers_and_workers_are_on_foreign_networks(catalogue):
    cfg = load_config()
    summer = build_model(cfg, cfg.scales["small"], catalogue, dt.date(2025, 7, 19), 3)
    winter = build_model(cfg, cfg.scales["small"], catalogue, dt.date(2025, 1, 16), 3)
    # peak_day_of_year 200 (19 July), amplitude 0.8: all beds taken at the peak, 1/9 in mid-January.
    assert tourist_presence(summer)[0] == pytest.approx(1.0, abs=1e-3)
    assert tourist_presence(winter)[0] == pytest.approx(0.2 / 1.8, abs=0.01)
    groups = summer.stayer_groups
    place_mcc = {p.key << 24: p.mcc for p in summer.places}
    tourists, workers = groups[groups["kind"] == TOURIST], groups[groups["kind"] == WORKER]
    lampedusa = next(p for p in summer.places if p.name == "Lampedusa")
    at_lampedusa = tourists[tourists["lat"] == lampedusa.lat].iloc[0]
    assert at_lampedusa["n"] == round(0.5 * 150) and "222" not in at_lampedusa["codes"]  # Italians are residents
    assert len(workers) > 0 and (workers["n"] > 0).all()
    for _, g in pd.concat([tourists, workers]).iterrows():
        assert place_mcc[g["group_key"] & ~((1 << 24) - 1)] not in g["codes"]
    drivers = summer.driver_segments
    segments = {summer.segments[i][1] for i in drivers["seg_idx"]}
    assert segments == {"agadez_sabha", "sabha_tripoli"} and (drivers["n"] == round(0.3 * 150)).all()
