"""The migration simulator: its config, its driver-side model, and the Spark job on a tiny preset.

The Spark job runs once per module on a ``tiny`` preset (three weeks, few agents and residents) with a
closure early enough to fall inside it; determinism runs it a second time with other partitioning. The
heavier check — density from the pipeline tracking the simulated truth — runs the ``small`` preset and is
marked slow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.lake import read_table
from jobs.schemas import PINGS, SERIES, TRUTH_ARRIVALS, TRUTH_JOURNEYS, TRUTH_SEGMENT_PEOPLE
from jobs.settings import JobSettings
from jobs.stages import aggregate, ingest, series
from simulator.simulate import (
    DEFAULT_CONFIG_PATH,
    Closure,
    ScalePreset,
    SimulatorConfigError,
    bad_weather_days,
    catalogue_places,
    daily_departures,
    hash_uniform,
    load_config,
    route_paths,
    seasonal_factor,
    simulate,
    truth_correlation,
)

START = dt.date(2025, 6, 2)  # a Monday in early summer
TINY_DAYS = 21
CLOSURE = Closure(
    crossing="zuwara", start_day=3, weeks=1, divert_share=1.0, to_route="eastern_mediterranean", lag_days=2
)


def tiny_config():
    cfg = load_config()
    tiny = ScalePreset("tiny", days=TINY_DAYS, departures=0.1, residents_per_place=60)
    return dataclasses.replace(cfg, scales={**cfg.scales, "tiny": tiny}, closures=(CLOSURE,))


# --- config -------------------------------------------------------------------------------------------------


def test_the_shipped_config_has_the_three_presets_and_every_catalogue_route(catalogue):
    cfg = load_config()
    assert list(cfg.scales) == ["small", "medium", "large"]
    assert cfg.scales["small"].days < cfg.scales["medium"].days < cfg.scales["large"].days
    assert set(catalogue.route_ids()) <= set(cfg.routes)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("seed = 20250601", "seed = 20250601\nsede = 1", "'sede'"),
        ("missing_share = 0.10", "missing_share = 1.5", "missing_share"),
        ("km_per_day = 25.0", "km_per_day = -25.0", "km_per_day"),
        ("[phones]", "[phones\n", "not valid TOML"),
    ],
)
def test_a_bad_config_is_refused_naming_the_key(tmp_path, old, new, message):
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "sim.toml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SimulatorConfigError, match=message) as err:
        load_config(bad)
    assert "sim.toml" in str(err.value)


def test_a_missing_config_file_and_an_unknown_scale_are_refused(spark, settings, tmp_path):
    with pytest.raises(SimulatorConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(SimulatorConfigError, match="unknown scale 'huge'"):
        simulate(spark, settings, START, scale="huge")


def test_a_route_without_parameters_is_refused(spark, settings):
    cfg = load_config()
    routes = {k: v for k, v in cfg.routes.items() if k != "channel"}
    with pytest.raises(SimulatorConfigError, match=r"\[routes.channel\]"):
        simulate(spark, settings, START, 5, "small", config=dataclasses.replace(cfg, routes=routes))


def test_residents_are_on_the_networks_of_their_places_countries(catalogue):
    cfg = load_config()
    places = {p.name: p.mcc for p in catalogue_places(catalogue, cfg.country_mcc)}
    assert places["Lampedusa"] == "222" and places["Aswan"] == "602" and places["Terespol"] == "260"
    assert places["Laâyoune"] == "604"  # Western Sahara: Moroccan networks
    without_italy = {k: v for k, v in cfg.country_mcc.items() if k != "ITA"}
    with pytest.raises(SimulatorConfigError, match=r"no \[country_mcc\] entry for ITA"):
        catalogue_places(catalogue, without_italy)


# --- the driver-side model -------------------------------------------------------------------------------


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
    other_seed = daily_departures("central_mediterranean", params, dataclasses.replace(cfg, seed=1), jan1, 0, 730, 1.0)
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


# --- the Spark job on the tiny preset ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(spark, tmp_path_factory):
    settings = JobSettings(var_dir=tmp_path_factory.mktemp("sim") / "var")
    report = simulate(spark, settings, START, scale="tiny", config=tiny_config())
    return settings, report


def _pings(spark, report) -> pd.DataFrame:
    return spark.read.schema(PINGS).parquet(str(report.pings_path)).toPandas()


def test_the_tiny_run_writes_pings_of_the_declared_schema_and_reports_them(spark, tiny_run):
    settings, report = tiny_run
    df = spark.read.parquet(str(report.pings_path))
    assert [(f.name, f.dataType) for f in df.schema.fields] == [(f.name, f.dataType) for f in PINGS.fields]
    pings = df.toPandas()
    assert len(pings) == report.pings > 0
    assert 0 < report.migrant_pings < report.resident_pings  # residents dominate the density
    assert pings["lat"].between(-90, 90).all() and pings["lon"].between(-180, 180).all()
    assert (pings["accuracy_m"] > 0).all()
    assert pings["mcc"].str.fullmatch(r"\d{3}").all()
    dates = pd.to_datetime(pings["ts"]).dt.date
    assert dates.min() >= START and dates.max() == report.end


def test_device_ids_rotate_daily(spark, tiny_run):
    _, report = tiny_run
    pings = _pings(spark, report)
    days_per_device = pings.assign(date=pd.to_datetime(pings["ts"]).dt.date).groupby("device_id")["date"].nunique()
    assert days_per_device.max() == 1


def test_the_truth_names_only_catalogue_segments_and_crossings(spark, tiny_run, catalogue):
    settings, report = tiny_run
    truth = settings.truth_dir
    people = spark.read.schema(TRUTH_SEGMENT_PEOPLE).parquet(str(truth / "segment_people")).toPandas()
    arrivals = spark.read.schema(TRUTH_ARRIVALS).parquet(str(truth / "arrivals")).toPandas()
    segments = {(r.id, s.id) for r in catalogue.routes for s in r.segments}
    crossings = {(r.id, c.id) for r in catalogue.routes for c in r.crossing_points}
    assert set(zip(people["route_id"], people["segment_id"], strict=True)) <= segments
    assert set(zip(arrivals["route_id"], arrivals["crossing_point_id"], strict=True)) <= crossings
    assert (people["people"] >= 0).all() and (arrivals["arrivals"] >= 0).all()
    # Both are full grids: every segment and every crossing point has a row every day, zeros included.
    assert len(people) == len(segments) * TINY_DAYS and len(arrivals) == len(crossings) * TINY_DAYS
    assert arrivals["arrivals"].sum() > 0
    assert people["date"].between(START, report.end).all()
    # Every route has people on it every day: the warm-up filled the routes before day 0.
    per_route_day = people.groupby(["route_id", "date"])["people"].sum()
    assert len(per_route_day) == len(catalogue.route_ids()) * TINY_DAYS and (per_route_day > 0).all()


def test_a_closed_crossing_has_no_arrivals_while_closed_and_diverts_its_agents(spark, tiny_run):
    settings, report = tiny_run
    truth = settings.truth_dir
    arrivals = spark.read.schema(TRUTH_ARRIVALS).parquet(str(truth / "arrivals")).toPandas()
    closed_from = START + dt.timedelta(days=CLOSURE.start_day)
    closed_to = closed_from + dt.timedelta(days=7 * CLOSURE.weeks)
    at_zuwara = arrivals[arrivals["crossing_point_id"] == "zuwara"]
    during = at_zuwara[(at_zuwara["date"] >= closed_from) & (at_zuwara["date"] < closed_to)]
    assert len(during) == 7 * CLOSURE.weeks and during["arrivals"].sum() == 0, during
    assert at_zuwara["arrivals"].sum() > 0  # boats leave Zuwara before and after the closure
    assert report.diverted > 0
    journeys = spark.read.schema(TRUTH_JOURNEYS).parquet(str(truth / "journeys")).toPandas()
    diverted = journeys[journeys["outcome"] == "diverted"]
    assert (diverted["route_id"] == "central_mediterranean").all()
    second = journeys[journeys["agent_id"].isin(diverted["agent_id"]) & (journeys["journey"] == 1)]
    assert set(second["route_id"]) == {CLOSURE.to_route}


def test_the_same_seed_gives_the_same_rows_whatever_the_partitioning(spark, tiny_run, tmp_path):
    _, first = tiny_run
    settings = JobSettings(var_dir=tmp_path / "var")
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "3")
    try:
        again = simulate(spark, settings, START, scale="tiny", config=tiny_config())
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    a = spark.read.schema(PINGS).parquet(str(first.pings_path))
    b = spark.read.schema(PINGS).parquet(str(again.pings_path))
    assert a.count() == b.count() and a.exceptAll(b).count() == 0
    t1 = spark.read.schema(TRUTH_ARRIVALS).parquet(str(first.truth_path / "arrivals"))
    t2 = spark.read.schema(TRUTH_ARRIVALS).parquet(str(again.truth_path / "arrivals"))
    assert t1.count() == t2.count() and t1.exceptAll(t2).count() == 0


def test_another_seed_gives_other_rows(spark, tiny_run, tmp_path):
    _, first = tiny_run
    settings = JobSettings(var_dir=tmp_path / "var")
    other = simulate(spark, settings, START, scale="tiny", config=dataclasses.replace(tiny_config(), seed=11))
    a = spark.read.schema(PINGS).parquet(str(first.pings_path)).select("device_id")
    b = spark.read.schema(PINGS).parquet(str(other.pings_path)).select("device_id")
    assert a.intersect(b).count() == 0


# --- density against truth (the small preset through the pipeline's Spark stages) ----------------------------


@pytest.mark.slow
def test_density_from_the_pipeline_tracks_the_simulated_truth(spark, tmp_path: Path, catalogue):
    settings = JobSettings(var_dir=tmp_path / "var")
    report = simulate(spark, settings, START, scale="small")
    ingest.run(spark, settings, report.end, report.pings_path, since=report.start)
    aggregate.run(spark, settings, report.end, since=report.start)
    series.run(spark, settings, report.end, catalogue)

    fit = truth_correlation(spark, settings, report.end).set_index("route_id")
    assert set(fit.index) == set(catalogue.route_ids())
    assert (fit["days"] == report.days).all()
    # Measured at seed 20250601 (README): Channel 0.84; Western African 0.61, Western Balkans 0.51, Western Med
    # 0.50, Central Med 0.46, Eastern Med 0.41; Eastern Borders 0.20 (small flows, mostly in suppressed cells).
    assert fit.loc["channel", "pearson_r"] > 0.7, fit
    for route_id in ("central_mediterranean", "eastern_mediterranean", "western_african", "western_balkans"):
        assert fit.loc[route_id, "pearson_r"] > 0.3, fit
    assert (fit["pearson_r"] > 0.1).all(), fit
    gold = read_table(spark, settings.lake("gold", "series"), SERIES).where(F.col("level") == "route")
    assert gold.count() == len(catalogue.route_ids()) * report.days
