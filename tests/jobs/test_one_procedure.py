"""One forecasting procedure per series, whichever path asks: `routecast forecast` (the analyst's CLI), the nightly
forecast stage and the API over what it published give the same figures for the same series and origin."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from jobs.analysis.adhoc import adhoc_forecast
from jobs.analysis.evaluate import evaluate_file
from jobs.stages import forecast, publish
from jobs.stages.counts import ingest_counts
from serving.app import create_app
from serving.auth import create_token
from serving.settings import ServingSettings

FIRST = dt.date(2023, 1, 2)
DAYS = 800


def _uk_file(tmp_path):
    """Daily small-boat arrivals in the Home Office's layout: bursts in a summer season, most days none."""
    rng = np.random.default_rng(42)
    t = np.arange(DAYS)
    season = 60 + 50 * np.sin(2 * np.pi * (t - 100) / 365.25)
    people = np.where(rng.random(DAYS) < 0.35, rng.poisson(season * 3), 0)
    lines = ["date,migrants_arrived,boats_arrived,boats_uncontrolled_landings,notes"]
    for i, n in enumerate(people):
        lines.append(f"{FIRST + dt.timedelta(days=i)},{n},{(n + 49) // 50},,")
    path = tmp_path / "uk_small_boats_daily.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, FIRST + dt.timedelta(days=DAYS - 1)


@pytest.mark.slow
def test_the_cli_the_nightly_run_and_the_api_give_the_same_forecast_and_totals(spark, settings, catalogue, tmp_path):
    path, as_of = _uk_file(tmp_path)
    sid = "uk-channel/route:channel"

    cli = adhoc_forecast(path, "uk-channel", as_of, horizon=settings.horizon_days, settings=settings)

    ingest_counts(spark, settings, path, "uk-channel", catalogue)
    nightly = forecast.run(spark, settings, as_of)
    release = publish.publish(
        settings.store_dir,
        nightly.forecasts,
        nightly.keys,
        as_of=as_of,
        run=nightly.run,
        min_devices=settings.min_devices,
        manifest_extra=forecast.procedures_manifest(settings, nightly.keys),
        totals=nightly.totals,
    )
    serving = ServingSettings(var_dir=settings.var_dir, reload_interval_s=0)
    token = create_token(serving, subject="t", role="analyst", routes=None, ttl=dt.timedelta(hours=1))
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(serving)) as api:
        answer = api.get("/v1/routes/channel/forecast?source=uk-channel&horizon=28", headers=headers)
        totals = api.get("/v1/routes/channel/totals?source=uk-channel&exceeds=1000", headers=headers)
    assert answer.status_code == 200 and totals.status_code == 200
    served = answer.json()["series"][0]
    assert served["series_id"] == sid and served["release_id"] == release.release_id
    assert served["point"] == "median"  # daily official counts: a typical day, said in the answer

    columns = ["yhat", "lo80", "hi80", "lo95", "hi95"]
    from_cli = cli.table[columns].to_numpy()
    from_nightly = nightly.forecasts.loc[nightly.forecasts["series_id"] == sid, columns].to_numpy()
    from_api = pd.DataFrame(served["forecast"])[columns].to_numpy()
    assert from_cli.shape == (28, 5)
    np.testing.assert_allclose(from_nightly, from_cli, rtol=1e-9)
    np.testing.assert_allclose(from_api, from_cli, rtol=1e-9)
    assert cli.table["model"].iloc[0] == served["model"]

    cli_totals = cli.totals.set_index("window")
    api_totals = {t["window"]: t for t in totals.json()["totals"]}
    assert sorted(api_totals) == list(cli_totals.index) == [7, 28]
    for window, total in api_totals.items():
        assert [total[c] for c in columns] == pytest.approx(cli_totals.loc[window, columns].tolist(), rel=1e-9)
        assert total["start"] == str(cli_totals.loc[window, "start"])
    # The planner's question: how likely more than 1,000 in the next 28 days (read off the same quantiles).
    assert 0 < api_totals[28]["exceedance"]["probability"] < 1

    # And `routecast evaluate` scores this very procedure (the last origin is the file's end minus 28 days: the
    # forecast it scores there is the one the CLI gives with that as-of date).
    evaluation = evaluate_file(path, "uk-channel", origins=1, settings=settings, log=False)
    origin = dt.date.fromisoformat(evaluation.origins[-1])
    earlier = adhoc_forecast(path, "uk-channel", origin, horizon=28, settings=settings)
    rows = evaluation.rows[(evaluation.rows["kind"] == "step") & (evaluation.rows["method"] == "champion")]
    assert rows["mean"].to_numpy() == pytest.approx(earlier.table["yhat"].to_numpy(), rel=1e-9)


def _frontex_file(tmp_path):
    """Monthly detections per route in Frontex's layout: three routes, each with a season and a level of its own."""
    rng = np.random.default_rng(7)
    months = pd.date_range("2014-01-01", periods=84, freq="MS")
    t = np.arange(months.size)
    lines = ["date,route,count,n_source_rows"]
    for i, (route, level) in enumerate(
        {"Central Mediterranean Route": 9000, "Eastern Mediterranean Route": 4000, "Western Balkan Route": 1500}.items()
    ):
        y = rng.poisson(level * (1 + 0.6 * np.sin(2 * np.pi * (t - 3 - i) / 12)))
        lines += [f"{m.date()},{route},{v},1" for m, v in zip(months, y, strict=True)]
    path = tmp_path / "frontex_ibc_monthly_by_route.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, (months[-1] + pd.offsets.MonthEnd(0)).date()


@pytest.mark.slow
def test_monthly_counts_get_the_same_pooled_forecast_from_the_cli_the_nightly_run_and_evaluate(
    spark, tmp_path, catalogue
):
    from jobs.settings import JobSettings

    # The product's monthly procedure (the pooled model anchoring the median), with cheap single-series members.
    settings = JobSettings(var_dir=tmp_path / "var", coarse_candidates=("naive", "seasonal_naive", "window_mean"))
    path, as_of = _frontex_file(tmp_path)
    sid = "frontex/route:central_mediterranean"

    cli = adhoc_forecast(path, "frontex", as_of, horizon=settings.horizon_months, settings=settings)
    ingest_counts(spark, settings, path, "frontex", catalogue)
    nightly = forecast.run(spark, settings, as_of)  # the pooled model learns on Spark's workers, from the lake

    columns = ["yhat", "lo80", "hi80", "lo95", "hi95"]
    mine = cli.table[cli.table["route"] == "central_mediterranean"]
    assert set(mine["model"]) == {"ensemble"} and len(mine) == settings.horizon_months
    from_nightly = nightly.forecasts.loc[nightly.forecasts["series_id"] == sid, columns].to_numpy()
    np.testing.assert_allclose(from_nightly, mine[columns].to_numpy(), rtol=1e-9)
    chosen = nightly.metrics[(nightly.metrics["series_id"] == sid)].set_index("model")
    assert chosen.loc["pooled_lgbm", "error"] is None or pd.isna(chosen.loc["pooled_lgbm", "error"])

    evaluation = evaluate_file(path, "frontex", origins=1, settings=settings, log=False)
    origin = dt.date.fromisoformat(evaluation.origins[-1])
    earlier = adhoc_forecast(
        path, "frontex", (pd.Timestamp(origin) + pd.offsets.MonthEnd(0)).date(), 3, settings=settings
    )
    rows = evaluation.rows[
        (evaluation.rows["kind"] == "step") & (evaluation.rows["method"] == "champion")
        & (evaluation.rows["series_id"] == sid)
    ]  # fmt: skip
    ours = earlier.table[earlier.table["route"] == "central_mediterranean"]
    assert rows["mean"].to_numpy() == pytest.approx(ours["yhat"].to_numpy(), rel=1e-9)
