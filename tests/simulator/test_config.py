"""The simulator's parameter file: the shipped one, what a bad one is told, and the checks against the catalogue."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from simulator.config import DEFAULT_CONFIG_PATH, Closure, SimulatorConfigError, load_config
from simulator.model import build_model

START = dt.date(2025, 6, 2)


def test_the_shipped_config_has_the_three_presets_and_every_catalogue_route(catalogue):
    cfg = load_config()
    assert list(cfg.scales) == ["small", "medium", "large"]
    assert cfg.scales["small"].days < cfg.scales["medium"].days < cfg.scales["large"].days
    assert set(catalogue.route_ids()) <= set(cfg.routes)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "seed = 20250601",
            "seed = 20250601\nsede = 1",
            "key 'sede': not a known key; allowed: closures, country_mcc, coverage, drivers, migrant_phones, migrants, "
            "phones, residents, routes, scales, seed, surges, tourists, travel_modes, warmup_days, weather, workers",
        ),
        # A typo: the unknown key is named first, not the key it was meant to be (missing), with the count of the rest.
        ("seed = 20250601", "sede = 20250601", "key 'sede': not a known key; allowed: closures, "),
        ("seed = 20250601", "sede = 20250601", "(and 1 more)"),
        ("missing_share = 0.10", "missing_share = 1.5", "key 'phones.missing_share': must be in [0, 1], got 1.5"),
        ("km_per_day = 25.0", "km_per_day = -25.0", "key 'travel_modes.walk.km_per_day': must be >= 0.1, got -25.0"),
        ("sea = true\n", 'sea = "yes"\n', "key 'travel_modes.boat.sea': must be true or false, got 'yes'"),
        ("days = 60", "days = 60.5", "key 'scales.small.days': must be a whole number, got 60.5"),
        ("departures = 0.4", "departures = true", "key 'scales.small.departures': must be a number, got True"),
        ("lag_days = 10", "lag_days = 0", "key 'closures[0].lag_days': must be >= 1, got 0"),
        ("lag_days = 10", "lag_days = 10\nlag_weeks = 1", "key 'closures[0].lag_weeks': not a known key; allowed: "),
        ("[scales.medium]", "[scales.mediun]", "key 'scales.medium': missing"),
        ("presence = [0.93, ", "presence = [", "key 'residents.presence': must list 7 shares, Monday..Sunday"),
        ('sea = "boat" }', 'sea = "road" }', "key 'migrants.default_travel.sea': must name a sea travel mode"),
        ('edirne_sofia = "walk"', 'edirne_sofia = "bike"', "key 'routes.eastern_mediterranean.travel.edirne_sofia'"),
        ("fine_accuracy_m = [5.0, 40.0]", "fine_accuracy_m = [50.0, 40.0]", "must be [low, high] with low <= high"),
        ('DZA = "603"', 'DZA = "63"', "key 'country_mcc.DZA': expected a 3-letter country code = a 3-digit MCC"),
        ("[phones]", "[phones\n", "not valid TOML"),
        # The phones, coverage and the people on foreign networks who are not migrants.
        (
            "local_sim_share = 0.6",
            "local_sim_shares = 0.6",
            "key 'migrant_phones.local_sim_shares': not a known key; allowed: carried, local_sim_days, local_sim_share",
        ),
        ("local_sim_share = 0.6", "local_sim_share = 1.2", "key 'migrant_phones.local_sim_share': must be in [0, 1]"),
        ("local_sim_days = 12.0", "local_sim_days = -1.0", "key 'migrant_phones.local_sim_days': must be in [0, 365]"),
        (
            "carried = [0.15, 0.70, 0.15]",
            "carried = [0.15, 0.70, 0.25]",
            "key 'migrant_phones.carried': the shares of 0, 1 and 2 phones must add up to 1, got 1.1",
        ),
        ("carried = [0.15, 0.70, 0.15]", "carried = [0.3, 0.7]", "key 'migrant_phones.carried': must list 3 shares"),
        ("sea_coastal_km = 25.0", "sea_coastal_km = -5", "key 'coverage.sea_coastal_km': must be in [0, 500], got -5"),
        ("peak_per_place = 0.5", "peak_per_place = 0.5\npeak_per_bed = 1", "key 'tourists.peak_per_bed': not a known"),
        ("seasonal_amplitude = 0.8", "seasonal_amplitude = 2", "key 'tourists.seasonal_amplitude': must be in [0, 1]"),
        ('"262" = 4', '"2620" = 4', "key 'tourists.networks': keys must be 3-digit MCC strings, got '2620'"),
        ("per_segment = 0.3", "per_segment = -1", "key 'drivers.per_segment': must be in [0, 10], got -1"),
        ("LBY = 0.15", "Libya = 0.15", "key 'workers.per_resident.Libya': expected a 3-letter country code"),
    ],
)
def test_a_bad_config_is_refused_in_one_line_naming_the_file_and_the_key(tmp_path, old, new, message):
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "sim.toml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SimulatorConfigError) as err:
        load_config(bad)
    assert str(err.value).startswith("sim.toml: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_config_file_is_refused(tmp_path):
    with pytest.raises(SimulatorConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_the_config_is_frozen_and_a_copy_varies_it():
    cfg = load_config()
    with pytest.raises(ValidationError):
        cfg.seed = 1
    other = cfg.model_copy(update={"seed": 1})
    assert other.seed == 1 and cfg.seed != 1 and other.routes == cfg.routes


def _closure(**changes) -> Closure:
    base = {"crossing": "zuwara", "start_day": 3, "weeks": 1, "divert_share": 0.5, "to_route": "channel", "lag_days": 2}
    return Closure(**{**base, **changes})


def _without_channel(cfg):
    return {"routes": {k: v for k, v in cfg.routes.items() if k != "channel"}}


def _channel_travel(cfg, travel):
    return {"routes": {**cfg.routes, "channel": cfg.routes["channel"].model_copy(update={"travel": travel})}}


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (_without_channel, r"no \[routes.channel\] in the simulator config"),
        (lambda cfg: {"closures": (_closure(crossing="atlantis"),)}, "'atlantis': no such crossing point"),
        (lambda cfg: {"closures": (_closure(to_route="moon"),)}, "'zuwara': unknown to_route 'moon'"),
        (lambda cfg: _channel_travel(cfg, {"nowhere": "road"}), "routes.channel.travel: unknown segment 'nowhere'"),
        (lambda cfg: _channel_travel(cfg, {"calais_dover": "road"}), "mode 'road' cannot travel a sea segment"),
        (
            lambda cfg: {"tourists": cfg.tourists.model_copy(update={"places": {"Atlantis": 1.0}})},
            "tourists.places: 'Atlantis' is not a catalogue place",
        ),
    ],
)
def test_a_config_that_does_not_fit_the_catalogue_is_refused(catalogue, update, message):
    cfg = load_config()
    bad = cfg.model_copy(update=update(cfg))
    with pytest.raises(SimulatorConfigError, match=message):
        build_model(bad, bad.scales["small"], catalogue, START, 5)
