"""The simulator's Spark job: a tiny preset through ``simulate``, and the small one through the pipeline.

The job runs once per module on a ``tiny`` preset (three weeks, few agents and residents) with a closure early
enough to fall inside it; determinism runs it a second time with other partitioning. The heavier check —
density from the pipeline tracking the simulated truth — runs the ``small`` preset and is marked slow. The
config and the driver-side model have their own modules (test_config.py, test_model.py), without Spark.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from contracts import tables
from jobs.lake import read_table
from jobs.schemas import PINGS, SERIES, TRUTH_ARRIVALS, TRUTH_JOURNEYS, TRUTH_SEGMENT_PEOPLE
from jobs.settings import JobSettings
from jobs.stages import aggregate, ingest, series
from simulator.config import Closure, ScalePreset, SimulatorConfigError, load_config
from simulator.run import simulate
from simulator.truth import truth_correlation

START = dt.date(2025, 6, 2)  # a Monday in early summer
TINY_DAYS = 21
CLOSURE = Closure(
    crossing="zuwara", start_day=3, weeks=1, divert_share=1.0, to_route="eastern_mediterranean", lag_days=2
)


def tiny_config():
    cfg = load_config()
    tiny = ScalePreset(days=TINY_DAYS, departures=0.1, residents_per_place=60)
    return cfg.model_copy(update={"scales": {**cfg.scales, "tiny": tiny}, "closures": (CLOSURE,)})


def test_the_job_refuses_an_unknown_scale_and_a_route_without_parameters(spark, settings):
    with pytest.raises(SimulatorConfigError, match="unknown scale 'huge'"):
        simulate(spark, settings, START, scale="huge")
    cfg = load_config()
    routes = {k: v for k, v in cfg.routes.items() if k != "channel"}
    with pytest.raises(SimulatorConfigError, match=r"\[routes.channel\]"):
        simulate(spark, settings, START, 5, "small", config=cfg.model_copy(update={"routes": routes}))


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
    other = simulate(spark, settings, START, scale="tiny", config=tiny_config().model_copy(update={"seed": 11}))
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
    # Measured at seed 20250601 (docs/simulator.md): Channel 0.84; Western African 0.61, Western Balkans 0.51,
    # Western Med 0.50, Central Med 0.46, Eastern Med 0.41; Eastern Borders 0.20 (small flows, mostly in
    # suppressed cells).
    assert fit.loc["channel", "pearson_r"] > 0.7, fit
    for route_id in ("central_mediterranean", "eastern_mediterranean", "western_african", "western_balkans"):
        assert fit.loc[route_id, "pearson_r"] > 0.3, fit
    assert (fit["pearson_r"] > 0.1).all(), fit
    gold = read_table(spark, settings.lake(tables.SERIES), SERIES).where(F.col("level") == "route")
    assert gold.count() == len(catalogue.route_ids()) * report.days
