import datetime as dt

import pandas as pd
from mlflow import MlflowClient

from jobs import forecast
from jobs.lake import write_partitions
from jobs.schemas import SERIES

START = dt.date(2025, 1, 6)  # a Monday
WEEK = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]


def _gold(spark, settings, series: dict[str, list[float]]):
    rows = []
    for sid, values in series.items():
        for i, y in enumerate(values):
            rows.append((sid, "route", sid.split(":")[1], None, START + dt.timedelta(days=i), y, "D", "density"))
    write_partitions(spark.createDataFrame(rows, SERIES), settings.lake("gold", "series"), ["source"])
    return START + dt.timedelta(days=max(len(v) for v in series.values()) - 1)


def test_weekly_series_gets_its_seasonal_naive_forecast_and_short_one_is_reported(spark, settings):
    last = _gold(spark, settings, {"route:weekly": WEEK * 8, "route:short": WEEK * 2})
    result = forecast.run(spark, settings, last)

    weekly = result.forecasts[result.forecasts["series_id"] == "route:weekly"]
    assert len(weekly) == settings.horizon_days
    assert weekly["model"].unique().tolist() == ["seasonal_naive"]
    # The day after the last Sunday is a Monday: the forecast repeats the week from its start.
    assert weekly["yhat"].tolist() == (WEEK * 4)[: settings.horizon_days]
    assert pd.Timestamp(weekly["ds"].iloc[0]).date() == last + dt.timedelta(days=1)

    assert set(result.failed) == {"route:short"}
    assert "route:short" in result.failed["route:short"]

    client = MlflowClient(settings.tracking_uri)
    champion = client.get_model_version_by_alias(settings.registered_model, "champion")
    assert champion.run_id == result.run.run_id
    run = client.get_run(result.run.run_id)
    assert run.data.params["run_date"] == str(last)
