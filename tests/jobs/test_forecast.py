import datetime as dt
import sys
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from pyspark import cloudpickle

from contracts import tables
from forecasting.hierarchy import coherence_gap, hierarchy_from_keys
from forecasting.selection import SelectionConfig
from jobs.lake import read_table, write_partitions
from jobs.schemas import SERIES
from jobs.stages import forecast
from jobs.stages.counts import ingest_counts
from tests.conftest import SHARED_DATA
from tests.forecasting import fakes
from tests.forecasting.fakes import Flat

START = dt.date(2025, 1, 6)  # a Monday
WEEK = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]


def _gold(spark, settings, series: dict[str, list[float]]):
    rows = []
    for sid, values in series.items():
        for i, y in enumerate(values):
            rows.append((sid, "route", sid.split(":")[1], None, START + dt.timedelta(days=i), y, "D", "density"))
    write_partitions(spark.createDataFrame(rows, SERIES), settings.lake(tables.SERIES), ["source"])
    return START + dt.timedelta(days=max(len(v) for v in series.values()) - 1)


def test_weekly_series_gets_its_seasonal_naive_forecast_and_short_one_is_reported(spark, settings):
    last = _gold(spark, settings, {"route:weekly": WEEK * 8, "route:short": WEEK * 2})
    # Monthly landings per place split the arrivals among entry points for the people stage; never forecast.
    landings = [("landings/point:channel/dover", "point", "channel", "calais_dover", START, 5.0, "M", "landings")]
    write_partitions(spark.createDataFrame(landings, SERIES), settings.lake(tables.SERIES), ["source"])
    result = forecast.run(spark, settings, last)

    weekly = result.forecasts[result.forecasts["series_id"] == "route:weekly"]
    assert len(weekly) == settings.horizon_days
    assert weekly["model"].unique().tolist() == ["seasonal_naive"]
    # The day after the last Sunday is a Monday: the forecast repeats the week from its start.
    assert weekly["yhat"].tolist() == (WEEK * 4)[: settings.horizon_days]
    assert pd.Timestamp(weekly["ds"].iloc[0]).date() == last + dt.timedelta(days=1)

    assert set(result.failed) == {"route:short"}
    assert "route:short" in result.failed["route:short"]
    # What the release publishes with the forecasts: the history of the forecast series only (56 days < 365),
    # and the span of the gold rows read per source.
    assert result.history.columns.tolist() == ["series_id", "ds", "y"]
    assert set(result.history["series_id"]) == {"route:weekly"} and len(result.history) == 56
    assert result.history["y"].tolist() == WEEK * 8
    assert result.inputs == {"density": {"first": str(START), "last": str(last), "series": 2}}

    client = MlflowClient(settings.tracking_uri)
    champion = client.get_model_version_by_alias(settings.registered_model, "champion")
    assert champion.run_id == result.run.run_id
    run = client.get_run(result.run.run_id)
    assert run.data.params["run_date"] == str(last)


@pytest.mark.slow
def test_the_real_official_counts_are_forecast_at_their_own_frequency(spark, settings, catalogue):
    """Every real counts file through ingest-counts, then the forecast stage: each series gets a forecast
    of its own frequency starting the period after its last observation (the file's end is not the run date)."""
    files = {
        "frontex": "frontex_ibc_monthly_by_route.csv",
        "uk-channel": "uk_small_boats_daily.csv",
        "iom-dtm": "iom_dtm_med_arrivals.csv",
    }
    for source, name in files.items():
        path = SHARED_DATA / name
        if not path.exists():
            pytest.skip(f"real data absent: {path} (the shared folder beside the repository)")
        ingest_counts(spark, settings, path, source, catalogue)

    run_date = dt.date(2026, 11, 22)
    result = forecast.run(spark, settings, run_date)
    assert result.failed == {}
    keys = result.keys.set_index("series_id")
    assert set(keys["source"]) == set(files)
    gold = read_table(spark, settings.lake(tables.SERIES), SERIES).toPandas()
    last = gold.groupby("series_id")["ds"].max()
    for sid, fc in result.forecasts.groupby("series_id"):
        freq = keys.loc[sid, "freq"]
        assert len(fc) == settings.periods(freq)[1], sid
        first = pd.Timestamp(fc["ds"].min())
        expected = pd.Timestamp(last[sid]) + {"D": pd.DateOffset(days=1), "M": pd.DateOffset(months=1)}[freq]
        assert first == expected, sid
        assert (fc["lo95"] <= fc["yhat"]).all() and (fc["yhat"] <= fc["hi95"]).all() and (fc["lo95"] >= 0).all()
    assert set(result.forecasts["series_id"]) == set(keys.index)
    # Official counts come with totals of the next days / months, intervals of the total, starting where the
    # forecast starts.
    totals = result.totals.set_index(["series_id", "window"])
    assert {7, 28} <= set(totals.loc["uk-channel/route:channel"].index)
    for sid in keys.index[keys["source"] == "frontex"]:
        assert set(totals.loc[sid].index) == {1, 3}, sid
        assert pd.Timestamp(totals.loc[(sid, 1), "start"]) == pd.Timestamp(last[sid]) + pd.DateOffset(months=1)
    assert (result.totals["lo95"] <= result.totals["yhat"]).all() and (result.totals["n_scores"] >= 9).all()
    # ...and the nightly's MLflow run keeps them.
    client = MlflowClient(settings.tracking_uri)
    assert client.get_run(result.run.run_id).data.metrics["n_totals"] == len(result.totals)
    logged = pd.read_parquet(client.download_artifacts(result.run.run_id, "totals.parquet", str(settings.var_dir)))
    assert logged[["series_id", "window", "yhat"]].equals(result.totals[["series_id", "window", "yhat"]])


def test_series_that_end_before_the_run_date_are_reported_stale(spark, settings):
    last = _gold(spark, settings, {"route:weekly": WEEK * 8})
    result = forecast.run(spark, settings, last + dt.timedelta(days=30))
    stale = result.stale(last + dt.timedelta(days=30))
    assert stale["series_id"].tolist() == ["route:weekly"]
    assert stale["last_observed"].tolist() == [last]
    assert result.stale(last + dt.timedelta(days=2)).empty  # two days late is not stale for a daily series
    # The forecast starts after the last observation, not after the run date.
    assert pd.Timestamp(result.forecasts["ds"].min()).date() == last + dt.timedelta(days=1)


def _density_gold(spark, settings, last_values: dict[str, float], days: int = 35) -> dt.date:
    """A density hierarchy (all, routes a and b, segments a/1, a/2, b/1) whose series are noise ending on the
    given last values; the histories need not add up (the forecasts of a model that repeats the last value then
    do not either, which is what reconciliation must fix)."""
    rng = np.random.default_rng(7)
    rows = []
    for sid, last in last_values.items():
        level = sid.split(":")[0]
        route = sid.split(":")[1].split("/")[0] if level != "all" else None
        segment = sid.split("/")[1] if level == "segment" else None
        values = list(rng.uniform(0, 2 * last, days - 1)) + [last]
        for i, y in enumerate(values):
            rows.append((sid, level, route, segment, START + dt.timedelta(days=i), float(y), "D", "density"))
    write_partitions(spark.createDataFrame(rows, SERIES), settings.lake(tables.SERIES), ["source"])
    return START + dt.timedelta(days=days - 1)


LAST = {"all": 50.0, "route:a": 40.0, "route:b": 5.0, "segment:a/1": 10.0, "segment:a/2": 20.0, "segment:b/1": 5.0}
FLAT = SelectionConfig(freq="D", holdout=7, horizon=5, candidates=("flat",), ensemble_top=0, calibrate=False)


def _flat(cfg: SelectionConfig) -> Flat:
    return Flat()


@pytest.fixture
def fakes_by_value():
    """Spark workers get the fake model pickled by value, whatever their sys.path."""
    cloudpickle.register_pickle_by_value(fakes)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(fakes)
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.usefixtures("fakes_by_value")
def test_orchestration_with_a_fake_model_publishes_its_known_forecasts_bottom_up(spark, settings):
    """The fake repeats each series' last value (±1 for every interval): after bottom-up reconciliation every
    segment keeps its own value, each route is the sum of its segments and all the sum of everything."""
    last = _density_gold(spark, settings, LAST)
    result = forecast.run(
        spark,
        settings.model_copy(update={"reconciliation": "bottom_up"}),
        last,
        configs={"signal:D": FLAT},
        factories={"flat": _flat},
    )
    expected = {"segment:a/1": 10, "segment:a/2": 20, "segment:b/1": 5, "route:a": 30, "route:b": 5, "all": 35}
    fc = result.forecasts.set_index("series_id")
    assert len(result.forecasts) == 6 * 5
    for sid, value in expected.items():
        rows = fc.loc[sid]
        assert rows["yhat"].tolist() == [value] * 5, sid
        assert (rows["hi80"] - rows["yhat"]).tolist() == [1.0] * 5, sid
        assert pd.to_datetime(rows["ds"]).min().date() == last + dt.timedelta(days=1)
    assert set(result.metrics.loc[result.metrics["chosen"], "model"]) == {"flat"}
    run = MlflowClient(settings.tracking_uri).get_run(result.run.run_id)
    assert run.data.params["reconciliation_used"] == "bottom_up"


@pytest.mark.usefixtures("fakes_by_value")
def test_published_density_forecasts_add_up_after_mint(spark, settings):
    last = _density_gold(spark, settings, LAST)
    result = forecast.run(spark, settings, last, configs={"signal:D": FLAT}, factories={"flat": _flat})
    hierarchy = hierarchy_from_keys(result.keys)
    assert coherence_gap(result.forecasts, hierarchy) < 1e-6
    assert (result.forecasts["yhat"] >= 0).all()
    # The base forecasts (the last values) did not add up: 40 != 10 + 20, so something moved.
    assert result.forecasts.set_index("series_id").loc["route:a", "yhat"].iloc[0] != 40
    run = MlflowClient(settings.tracking_uri).get_run(result.run.run_id)
    assert run.data.params["reconciliation_used"] == "mint_shrink"


def test_people_series_have_their_own_procedure_with_totals_of_the_next_days(settings):
    """People series are forecast by people:D (the best of seasonal naive, naive and their mean on 21 daily
    origins), whose backtest calibrates their 7- and 28-day totals; density keeps signal:D, counts counts:<freq>."""
    from forecasting.selection import select

    assert forecast.procedure_key("people", "D") == "people:D"
    assert forecast.procedure_key("density", "D") == forecast.procedure_key("flows", "D") == "signal:D"
    assert forecast.procedure_key("uk-channel", "D") == "counts:D"
    cfg = forecast.selection_configs(settings)["people:D"]
    assert (cfg.candidates, cfg.origins, cfg.step, cfg.holdout) == (("seasonal_naive", "naive"), 21, 1, 28)
    # A weekly rhythm with a slow rise and noise: enough days for every origin (28 + 14 + 20).
    rng = np.random.default_rng(7)
    days = pd.date_range(START, periods=80, freq="D")
    y = 40 + 0.3 * np.arange(80) + 10 * np.tile(WEEK, 12)[:80] / 70 + rng.normal(0, 2, 80)
    found = select(pd.DataFrame({"series_id": "people/point:channel/dover", "ds": days, "y": y}), cfg)
    # The two candidates and their mean ("ensemble") compete; one is chosen.
    assert set(found.metrics["model"]) == {*cfg.candidates, "ensemble"} and found.metrics["chosen"].sum() == 1
    totals = found.totals.set_index("window")
    assert list(totals.index) == [7, 28] and (totals["n_scores"] == 21).all()
    assert totals.loc[7, "yhat"] == pytest.approx(found.forecast["yhat"].iloc[:7].sum())
    assert (totals["lo95"] <= totals["lo80"]).all() and (totals["lo80"] < totals["hi80"]).all()
    assert (totals["hi80"] <= totals["hi95"]).all()
    # A shorter series has fewer origins and no total it cannot calibrate (fewer than 9 past totals).
    short = select(pd.DataFrame({"series_id": "people/route:channel", "ds": days[:49], "y": y[:49]}), cfg)
    assert short.totals.empty and not short.forecast.empty


def _totals(ids: list[str]) -> pd.DataFrame:
    """7-day totals of 100 with the same backtest interval, for each of ``ids``."""
    from forecasting.totals import TOTAL_PROBS, total_quantiles

    quantiles = list(total_quantiles(100.0, np.linspace(-0.1, 0.1, 21)))
    return pd.DataFrame(
        {
            "series_id": ids,
            "window": 7,
            "yhat": 100.0,
            **{b: quantiles[TOTAL_PROBS.index(p)] for b, p in (("lo80", 0.1), ("hi80", 0.9))},
            **{b: quantiles[TOTAL_PROBS.index(p)] for b, p in (("lo95", 0.025), ("hi95", 0.975))},
            "quantiles": [quantiles] * len(ids),
        }
    )


def test_people_totals_are_widened_by_their_routes_measurement_error_and_nothing_else_is():
    ids = ["people/point:channel/dover", "people/route:western_african", "route:channel"]
    totals = _totals(ids)
    keys = pd.DataFrame(
        {
            "series_id": ids,
            "route_id": ["channel", "western_african", "channel"],
            "source": ["people", "people", "density"],
        }
    )
    model = {"routes": {"channel": {"sigma_log": 0.2}, "western_african": {"sigma_log": None, "blind": True}}}
    out = forecast.measured_totals(totals, keys, model).set_index("series_id")
    before = totals.set_index("series_id")
    dover = out.loc["people/point:channel/dover"]
    assert dover["hi80"] > before.loc[dover.name, "hi80"] and dover["lo80"] < before.loc[dover.name, "lo80"]
    # log1p(hi80) - log1p(median) = 1.2816 * sqrt(spread² + 0.2²) > 1.2816 * 0.2
    assert np.log1p(dover["hi80"]) - np.log1p(100.0) > NormalDist().inv_cdf(0.9) * 0.2
    for unchanged in ("people/route:western_african", "route:channel"):  # blind route; devices
        assert out.loc[unchanged, "hi80"] == before.loc[unchanged, "hi80"]
    assert forecast.measured_totals(totals, keys, None).equals(totals)


def test_a_people_series_own_level_error_widens_its_totals_rather_than_its_routes():
    ids = ["people/point:channel/dover", "people/route:channel"]
    totals = _totals(ids)
    # Dover's share of the Channel is a guess (0.9 on the log scale); the route has no own figure: its scale's.
    keys = pd.DataFrame(
        {"series_id": ids, "route_id": "channel", "source": "people", "level_sigma": [0.9, float("nan")]}
    )
    out = forecast.measured_totals(totals, keys, {"routes": {"channel": {"sigma_log": 0.2}}}).set_index("series_id")
    spread = (np.log1p(out["hi80"]) - np.log1p(100.0)) / NormalDist().inv_cdf(0.9)
    assert spread["people/point:channel/dover"] > 0.9 > spread["people/route:channel"] > 0.2


def test_a_young_people_series_is_forecast_on_a_shorter_holdout_rather_than_left_without_a_forecast(settings):
    """A crossing point measured for 35 days is too short for people:D's 28-day holdout (42 days): its holdout
    shrinks so that 9 origins fit (35 - 14 - 8 = 13 days), which calibrates a 7-day total but not a 28-day one."""
    from forecasting.selection import select

    cfg = forecast.selection_configs(settings)["people:D"]
    rng = np.random.default_rng(3)
    days = pd.date_range(START, periods=35, freq="D")
    frame = pd.DataFrame({"series_id": "people/point:channel/dover", "ds": days, "y": 30 + rng.normal(0, 3, 35)})
    with pytest.raises(ValueError, match="too short"):
        select(frame, cfg)
    young = forecast.fitted_to(cfg, "people:D", len(frame))
    assert (young.holdout, young.origins, young.candidates) == (13, cfg.origins, cfg.candidates)
    found = select(frame, young)
    assert len(found.forecast) == cfg.horizon
    assert list(found.totals["window"]) == [7] and found.totals["n_scores"].iloc[0] == 9
    # Long enough series, and other procedures, are left as they are; 20 days is too short even so.
    assert forecast.fitted_to(cfg, "people:D", 80) is cfg
    assert forecast.fitted_to(cfg, "signal:D", 35) is cfg
    with pytest.raises(ValueError, match="too short"):
        select(frame.iloc[:20], forecast.fitted_to(cfg, "people:D", 20))
