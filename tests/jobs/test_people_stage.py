"""The people stage: silver groups + official counts → gold people, people series and the model's document.

A hand-made world with a known answer: on the Channel 200, 120 and 80 people stay on its three segments, each
carrying a quarter of a phone still on its home network (so 4 people per device), and W = 26 days (people.toml).
Monthly arrivals are then 400 / 26 a day. A second route (the Western Mediterranean) shows only domestic phones: it
must come out blind (missing, never 0).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contracts import tables
from contracts.series import PEOPLE_SOURCE
from geo.cells import cell_segment_table
from geo.entry import route_entry_points
from jobs import lake
from jobs.schemas import DENSITY, DENSITY_BY_GROUP, SERIES
from jobs.settings import JobSettings
from jobs.stages import people
from jobs.stages.people import PeopleConfigError, estimate_people, load_priors, people_series

START, END = dt.date(2025, 3, 1), dt.date(2025, 6, 30)
ON_SEGMENT = {"french_coast": 200.0, "calais_dover": 120.0, "boulogne_dungeness": 80.0}
PER_DEVICE = 4.0
W = 26.0  # jobs/stages/people.toml, channel


def _days() -> pd.DatetimeIndex:
    return pd.date_range(START, END, freq="D")


def _signal() -> pd.DataFrame:
    rows = []
    for day in _days():
        for segment, n in ON_SEGMENT.items():
            rows.append((day, "channel", segment, "west_central_africa", n / PER_DEVICE))
            rows.append((day, "channel", segment, "total", n / PER_DEVICE + 300.0))
        rows.append((day, "western_mediterranean", "tangier_tarifa", "domestic", 400.0))
        rows.append((day, "western_mediterranean", "tangier_tarifa", "total", 400.0))
    return pd.DataFrame(rows, columns=["date", "route_id", "segment_id", "group", "devices"])


def _monthly() -> pd.DataFrame:
    months = pd.date_range(START, END, freq="MS")
    rate = sum(ON_SEGMENT.values()) / W
    rows = [(m, "channel", rate * m.days_in_month) for m in months]
    rows += [(m, "western_mediterranean", 300.0) for m in months]
    return pd.DataFrame(rows, columns=["month", "route_id", "arrivals"])


def _no_daily() -> pd.DataFrame:
    return pd.DataFrame(columns=["date", "route_id", "arrivals"])


@pytest.fixture(scope="module")
def estimate(catalogue):
    return estimate_people(_signal(), _monthly(), _no_daily(), load_priors(), catalogue)


def _on(rows: pd.DataFrame, **where) -> pd.DataFrame:
    keep = np.ones(len(rows), dtype=bool)
    for column, value in where.items():
        keep &= rows[column].isna().to_numpy() if value is None else (rows[column] == value).to_numpy()
    return rows[keep]


def test_people_present_recover_the_people_behind_the_phones(estimate):
    p = estimate.params["channel"]
    assert p.feature.startswith("level:") and p.scale == pytest.approx(PER_DEVICE, rel=1e-6)
    route = _on(estimate.rows, route_id="channel", measure="present", segment_id=None)
    assert len(route) == len(_days()) and route["people"].to_numpy() == pytest.approx(400.0)
    assert (route["lo80"] < route["people"]).all() and (route["people"] < route["hi80"]).all()
    for segment, n in ON_SEGMENT.items():
        assert _on(estimate.rows, measure="present", segment_id=segment)["people"].to_numpy() == pytest.approx(n)


def test_each_crossing_point_gets_its_share_of_the_route_flow(estimate):
    crossing = _on(estimate.rows, route_id="channel", measure="crossing")
    day = crossing[crossing["date"] == END].set_index("crossing_point_id")
    flow = 400.0 / W  # Little's law: people present / days on the route
    # Entry points (landings): Dover on calais_dover (120), Dungeness on boulogne_dungeness (80).
    assert day.loc["dover", "people"] == pytest.approx(flow * 120 / 200)
    assert day.loc["dungeness", "people"] == pytest.approx(flow * 80 / 200)
    # Departures: the segment's weight split among its departure points (Dunkirk and Gravelines share french_coast).
    assert day.loc["dunkirk", "people"] == pytest.approx(flow * 100 / 400)
    assert day.loc["calais", "people"] == pytest.approx(flow * 120 / 400)
    departures = day[day["role"] == "departure"]["people"].sum()
    arrivals = day[day["role"] == "landing"]["people"].sum()
    assert departures == pytest.approx(flow) and arrivals == pytest.approx(flow)
    # The interval is the route's, scaled alike; the feature says how the share was made.
    assert day.loc["dover", "lo80"] < day.loc["dover", "people"] < day.loc["dover", "hi80"]
    assert day["feature"].str.contains("segment share").all()


def test_people_seen_today_are_the_arrivals_of_the_next_half_w_days(catalogue):
    # A step: 400 people until the end of May, 800 from June 1st. The crossings double W/2 = 13 days later.
    signal = _signal()
    june = (signal["date"] >= "2025-06-01") & (signal["route_id"] == "channel") & (signal["group"] != "total")
    signal.loc[june, "devices"] *= 2
    result = estimate_people(signal, _monthly(), _no_daily(), load_priors(), catalogue)
    dover = _on(result.rows, crossing_point_id="dover").set_index("date")
    assert people.lead_days(W) == 13
    before, after = dover.loc[dt.date(2025, 6, 13), "people"], dover.loc[dt.date(2025, 6, 14), "people"]
    assert after == pytest.approx(2 * before)
    # The people seen on the last day give the next 13 days: "ahead", never in the observed series.
    ahead = dover[dover["measure"] == "ahead"]
    assert list(ahead.index) == [END + dt.timedelta(days=d) for d in range(1, 14)]
    assert (dover.loc[dover.index <= END, "measure"] == "crossing").all()
    assert people_series(result.rows)["ds"].max() == END


def test_a_route_nobody_can_see_is_missing_not_zero(estimate):
    p = estimate.params["western_mediterranean"]
    assert p.blind and "roaming" in p.reason
    rows = _on(estimate.rows, route_id="western_mediterranean")
    assert len(rows) and rows["people"].isna().all() and rows["lo80"].isna().all()
    assert estimate.model["routes"]["western_mediterranean"]["blind"] is True
    series = people_series(estimate.rows)
    assert not (series["route_id"] == "western_mediterranean").any()


def test_people_series_carry_ids_levels_and_the_people_source(estimate):
    series = people_series(estimate.rows)
    assert set(series["source"]) == {PEOPLE_SOURCE} and set(series["freq"]) == {"D"}
    ids = set(series["series_id"])
    assert "people/route:channel" in ids and "people/segment:channel/calais_dover" in ids
    assert "people/point:channel/dover" in ids and "people/point:channel/dunkirk" in ids
    point = series[series["series_id"] == "people/point:channel/dover"]
    assert set(point["level"]) == {"point"} and set(point["segment_id"]) == {"calais_dover"}
    # The first W/2 days have no crossings yet (their people were seen before the signal starts).
    assert len(point) == len(_days()) - people.lead_days(W) and not series["y"].isna().any()


def test_the_model_id_names_the_parameters_that_made_every_figure(estimate, catalogue):
    assert set(estimate.rows["model_id"]) == {estimate.model["model_id"]}
    assert estimate.model["unit"] == "people" and estimate.model["routes"]["channel"]["scale"] == pytest.approx(4.0)
    # Another prior W is another model: the id changes.
    priors = load_priors()
    other = people.PeoplePriors({**priors.days_on_route, "channel": 30.0})
    again = estimate_people(_signal(), _monthly(), _no_daily(), other, catalogue)
    assert again.model["model_id"] != estimate.model["model_id"]


def test_a_bad_priors_file_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "people.toml"
    path.write_text("[days_on_route]\nchannel = -3\n")
    with pytest.raises(PeopleConfigError, match="days_on_route must be numbers > 0"):
        load_priors(path)
    path.write_text('unseen = "maybe"\n[days_on_route]\nchannel = 20\n')
    with pytest.raises(PeopleConfigError, match="unseen must be"):
        load_priors(path)
    path.write_text("min_signal = -1\n[days_on_route]\nchannel = 20\n")
    with pytest.raises(PeopleConfigError, match="min_signal must be"):
        load_priors(path)
    path.write_text("share_dayz = 3\n[days_on_route]\nchannel = 20\n")
    with pytest.raises(PeopleConfigError, match="unknown key"):
        load_priors(tmp_path / "people.toml")
    with pytest.raises(PeopleConfigError, match="cannot read"):
        load_priors(tmp_path / "missing.toml")


# --- the stage in Spark: silver and gold in, gold out ------------------------------------------------------------


def _silver(spark, settings: JobSettings, catalogue) -> None:
    cells = cell_segment_table(catalogue.subset(["channel"]), settings.h3_res)
    first = cells.groupby("segment_id")["cell"].first()
    groups, density = [], []
    for day in _days():
        for segment, n in ON_SEGMENT.items():
            cell = int(first[segment])
            groups.append((cell, settings.h3_res, "west_central_africa", int(n / PER_DEVICE), day.date()))
            # A group published at or below the threshold (written under a lower one) is not counted.
            groups.append((cell, settings.h3_res, "east_africa", settings.min_devices, day.date()))
            density.append((cell, settings.h3_res, day.date(), int(n / PER_DEVICE) + 300))
    lake.write(settings, tables.DENSITY_BY_GROUP, spark.createDataFrame(groups, DENSITY_BY_GROUP))
    frame = pd.DataFrame(density, columns=["cell", "res", "date", "devices"])
    for column in DENSITY.names:
        if column not in frame:
            frame[column] = None
    lake.write(settings, tables.DENSITY, spark.createDataFrame(frame[DENSITY.names], DENSITY))


def _frontex(spark, settings: JobSettings, months: pd.DataFrame) -> None:
    rows = [
        ("frontex/route:channel", "route", "channel", None, m.date(), float(a), "M", "frontex")
        for m, a in zip(months["month"], months["arrivals"], strict=True)
    ]
    lake.write(settings, tables.SERIES, spark.createDataFrame(rows, SERIES))


@pytest.fixture
def stage_settings(spark, tmp_path, catalogue):
    settings = JobSettings(var_dir=tmp_path / "var")
    _silver(spark, settings, catalogue)
    return settings


def test_the_stage_writes_people_series_and_the_model_from_published_data_only(spark, stage_settings, catalogue):
    channel = catalogue.subset(["channel"])
    monthly = _monthly()
    _frontex(spark, stage_settings, monthly[monthly["route_id"] == "channel"])
    # A figure for the month after the run date (published later) must not be read.
    late = pd.DataFrame({"month": [pd.Timestamp("2025-07-01")], "arrivals": [1e6]})
    _frontex(spark, stage_settings, pd.concat([monthly[monthly["route_id"] == "channel"], late]))
    report = people.run(spark, stage_settings, END, channel)

    assert report.measured == ["channel"] and not report.blind and "4 monthly" in report.coarse
    model = json.loads((stage_settings.lake_dir / "gold" / people.MODEL_FILE).read_text())
    assert model["model_id"] == report.model_id and model["routes"]["channel"]["scale"] == pytest.approx(4.0)
    rows = lake.read(spark, stage_settings, tables.PEOPLE).toPandas()
    route = rows[(rows["measure"] == "present") & rows["segment_id"].isna()]
    assert route["people"].to_numpy() == pytest.approx(400.0)  # the east_africa rows at the threshold count 0
    assert set(rows["model_id"]) == {report.model_id}
    series = lake.read(spark, stage_settings, tables.SERIES).where("source = 'people'").toPandas()
    assert len(series) == report.series_rows and "people/point:channel/dover" in set(series["series_id"])
    # Frontex's own series is left as it was.
    assert lake.read(spark, stage_settings, tables.SERIES).where("source = 'frontex'").count() == 5


def test_each_people_series_level_error_is_what_the_stage_says_of_its_own_recent_figures(
    spark, stage_settings, catalogue
):
    from jobs.stages.forecast import LEVEL_DAYS, people_level_sigma

    assert people_level_sigma(spark, stage_settings, END).empty  # no people yet
    _frontex(spark, stage_settings, _monthly()[lambda m: m["route_id"] == "channel"])
    people.run(spark, stage_settings, END, catalogue.subset(["channel"]))
    sigma = people_level_sigma(spark, stage_settings, END)
    series = set(lake.read(spark, stage_settings, tables.SERIES).where("source = 'people'").toPandas()["series_id"])
    assert "people/route:channel" in sigma.index and "people/point:channel/dover" in sigma.index
    assert set(sigma.index) <= series  # the ids of the series the forecast stage forecasts
    assert (sigma > 0).all() and np.isfinite(sigma).all()
    # Dover's: the median over the last four weeks of its 80 % interval's half-width in logs, over z(90 %).
    rows = lake.read(spark, stage_settings, tables.PEOPLE).toPandas()
    dover = rows[(rows["crossing_point_id"] == "dover") & (rows["measure"] == "crossing")]
    recent = dover[pd.to_datetime(dover["date"]) > pd.Timestamp(END - dt.timedelta(days=LEVEL_DAYS))]
    recent = recent[(recent["people"] > 0) & (recent["lo80"] > 0)]
    expected = (np.log(recent["hi80"]) - np.log(recent["lo80"])).median() / (2 * NormalDist().inv_cdf(0.9))
    assert sigma["people/point:channel/dover"] == pytest.approx(expected)


def test_counts_for_other_routes_leave_no_stale_people(spark, stage_settings, catalogue):
    channel = catalogue.subset(["channel"])
    _frontex(spark, stage_settings, _monthly()[lambda m: m["route_id"] == "channel"])
    first = people.run(spark, stage_settings, END, channel)
    assert first.series_rows > 0
    # The counts are replaced by ones from before the signal: no route can be fitted any more.
    _frontex(spark, stage_settings, pd.DataFrame({"month": [pd.Timestamp("2019-01-01")], "arrivals": [5.0]}))
    second = people.run(spark, stage_settings, END, channel)
    assert second.series_rows == 0 and second.measured == [] and second.blind
    assert lake.read(spark, stage_settings, tables.SERIES).where("source = 'people'").count() == 0
    rows = lake.read(spark, stage_settings, tables.PEOPLE).toPandas()
    assert rows["people"].isna().all()


def test_no_published_groups_is_a_clear_error(spark, tmp_path, catalogue):
    settings = JobSettings(var_dir=tmp_path / "var")
    lake.write(settings, tables.DENSITY_BY_GROUP, spark.createDataFrame([], DENSITY_BY_GROUP))
    lake.write(settings, tables.DENSITY, spark.createDataFrame([], DENSITY))
    with pytest.raises(ValueError, match="no published home-network groups"):
        people.run(spark, settings, END, catalogue.subset(["channel"]))


def test_the_forecast_of_a_crossing_point_starts_from_the_people_already_on_the_route(spark, stage_settings, catalogue):
    from jobs.stages.forecast import lead_people, led_totals

    _frontex(spark, stage_settings, _monthly()[lambda m: m["route_id"] == "channel"])
    people.run(spark, stage_settings, END, catalogue.subset(["channel"]))
    days = [END + dt.timedelta(days=d) for d in range(1, 29)]
    univariate = pd.DataFrame(
        {
            "series_id": "people/point:channel/dover",
            "ds": days,
            "yhat": 1.0,
            "lo80": 0.5,
            "hi80": 1.5,
            "lo95": 0.2,
            "hi95": 2.0,
            "model": "naive",
        }
    )
    other = univariate.assign(series_id="people/route:channel")
    both = pd.concat([univariate, other], ignore_index=True)
    # Off by default (it did not beat the univariate forecast): the forecasts are published as selected.
    assert lead_people(spark, stage_settings, END, both).equals(both)
    stage_settings = stage_settings.model_copy(update={"people_leading": True})
    led = lead_people(spark, stage_settings, END, both)
    dover = led[led["series_id"] == "people/point:channel/dover"].set_index("ds")
    first, rest = dover.iloc[: people.lead_days(W)], dover.iloc[people.lead_days(W) :]
    assert first["yhat"].to_numpy() == pytest.approx(400.0 / W * 120 / 200)
    assert first["model"].str.startswith("leading").all() and first["model"].str.endswith("(then naive)").all()
    assert ((first["lo95"] < first["lo80"]) & (first["lo80"] < first["yhat"])).all()
    assert ((first["yhat"] < first["hi80"]) & (first["hi80"] < first["hi95"])).all()
    assert (rest["yhat"] == 1.0).all() and (rest["model"] == "naive").all()
    # Other series are left alone; and people estimated for another run date lead nothing.
    assert (led[led["series_id"] == "people/route:channel"]["model"] == "naive").all()
    earlier = END - dt.timedelta(days=3)
    same = lead_people(spark, stage_settings, earlier, univariate.assign(ds=[d - dt.timedelta(days=3) for d in days]))
    assert (same["model"] == "naive").all()
    # A led point's totals were calibrated on the univariate forecast: they are not published with the led one.
    totals = pd.DataFrame({"series_id": ["people/point:channel/dover", "people/route:channel"], "window": [7, 7]})
    assert list(led_totals(totals, led)["series_id"]) == ["people/route:channel"]
    assert led_totals(totals, both).equals(totals)


def test_a_point_on_a_segment_nobody_is_seen_on_has_no_figure_rather_than_a_certain_zero(catalogue):
    signal = _signal()
    unseen = (signal["segment_id"] == "boulogne_dungeness") & (signal["group"] != "total")
    result = estimate_people(signal[~unseen], _monthly(), _no_daily(), load_priors(), catalogue)
    day = _on(result.rows, route_id="channel", measure="crossing")
    day = day[day["date"] == END].set_index("crossing_point_id")
    flow = 400.0 / W  # the official arrivals still put 400 people on the route
    assert day.loc["dover", "people"] == pytest.approx(flow)  # the one arrival point seen takes the route's arrivals
    assert np.isnan(day.loc["dungeness", "people"]) and np.isnan(day.loc["boulogne", "hi80"])
    assert day.loc["dungeness", "feature"].endswith("segment not seen")
    assert "people/point:channel/dungeness" not in set(people_series(result.rows)["series_id"])


def test_clear_removes_what_the_stage_made_and_nothing_else(spark, stage_settings, catalogue):
    _frontex(spark, stage_settings, _monthly()[lambda m: m["route_id"] == "channel"])
    people.run(spark, stage_settings, END, catalogue.subset(["channel"]))
    removed = people.clear(stage_settings)
    assert "series/source=people" in removed and people.MODEL_FILE in removed
    assert {"people/measure=present", "people/measure=crossing", "people/measure=ahead"} <= set(removed)
    series = lake.read(spark, stage_settings, tables.SERIES).toPandas()
    assert set(series["source"]) == {"frontex"} and people.read_model(stage_settings) is None
    assert people.clear(stage_settings) == []  # nothing left to remove


def test_a_route_with_counts_but_no_prior_w_is_blind_and_stops_nothing(catalogue):
    priors = load_priors()
    without = people.PeoplePriors({r: w for r, w in priors.days_on_route.items() if r != "channel"})
    result = estimate_people(_signal(), _monthly(), _no_daily(), without, catalogue)
    assert result.params["channel"].blind and "prior days_on_route" in result.params["channel"].reason
    channel = _on(result.rows, route_id="channel")
    assert set(channel["measure"]) == {"present"} and channel["people"].isna().all()


# --- entry points' shares from the monthly landings per place -------------------------------------------------


def _landings(shares: dict[str, float]) -> pd.DataFrame:
    """Monthly landings per place: Dover's share of the Channel's arrivals per month, Dungeness the rest."""
    rate = sum(ON_SEGMENT.values()) / W
    rows = []
    for month, dover in shares.items():
        total = rate * pd.Timestamp(month).days_in_month
        rows += [(pd.Timestamp(month), "channel", "dover", dover * total)]
        rows += [(pd.Timestamp(month), "channel", "dungeness", (1 - dover) * total)]
    return pd.DataFrame(rows, columns=list(people.POINT_COLUMNS))


def test_entry_points_take_their_share_of_the_landings_published_before_the_month(catalogue):
    landings = _landings({"2025-03-01": 0.6, "2025-04-01": 0.7, "2025-05-01": 0.8, "2025-06-01": 0.1})
    result = estimate_people(_signal(), _monthly(), _no_daily(), load_priors(), catalogue, landings)
    crossing = _on(result.rows, route_id="channel", measure="crossing").set_index(["date", "crossing_point_id"])
    flow = 400.0 / W
    # June's days: March to May together (share_months = 3), never June's own figure (published after the month).
    june = crossing.loc[dt.date(2025, 6, 20)]
    assert june.loc["dover", "people"] == pytest.approx(flow * 0.7)
    assert june.loc["dungeness", "people"] == pytest.approx(flow * 0.3)
    assert june.loc["dover", "feature"].endswith("share of the landings published for the last 3 month(s)")
    # April's days: March alone. March's days have no month before them: the first three months stand for them (a
    # backcast, so the series does not change method where the landings start), and the feature says so.
    assert crossing.loc[(dt.date(2025, 4, 20), "dover"), "people"] == pytest.approx(flow * 0.6)
    march = crossing.loc[(dt.date(2025, 3, 20), "dover")]
    assert march["people"] == pytest.approx(flow * 0.7) and march["feature"].endswith("3 month(s), after the day")
    # Departure points: an equal part of the landings their boats reach (Calais and Gravelines sail to Dover), or
    # where they reach none, the segment rule (Dunkirk: half of french_coast's 200 of 400).
    assert june.loc["calais", "people"] == pytest.approx(flow * 0.7 / 2)
    assert june.loc["dunkirk", "people"] == pytest.approx(flow * 100 / 400)
    # The share moved month to month (0.6, 0.7, 0.8): June's interval carries that error on top of the route's.
    plain = estimate_people(_signal(), _monthly(), _no_daily(), load_priors(), catalogue)
    plain_dover = _on(plain.rows, crossing_point_id="dover", date=dt.date(2025, 6, 20)).iloc[0]
    route_width = math.log(plain_dover["hi80"] / plain_dover["people"])  # the route's error alone
    assert math.log(june.loc["dover", "hi80"] / june.loc["dover", "people"]) > route_width > 0
    assert math.log(june.loc["dover", "people"] / june.loc["dover", "lo80"]) > route_width
    assert "points" in result.model["fitted_on"] and result.model["model_id"] != plain.model["model_id"]


def test_a_landing_place_with_none_for_months_gets_zero_with_an_upper_bound_above_zero(catalogue):
    landings = _landings({"2025-03-01": 1.0, "2025-04-01": 1.0, "2025-05-01": 1.0})
    result = estimate_people(_signal(), _monthly(), _no_daily(), load_priors(), catalogue, landings)
    day = _on(result.rows, route_id="channel", measure="crossing", date=dt.date(2025, 6, 20))
    dungeness = day.set_index("crossing_point_id").loc["dungeness"]
    assert dungeness["people"] == 0 and dungeness["lo80"] == 0 and dungeness["hi80"] > 0


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(0, 300)),  # Lesvos, Chios, the rest
        min_size=1,
        max_size=8,
    )
)
def test_official_shares_are_shares_and_leave_the_rest_to_the_points_without_a_figure(months):
    """However the figures fall, each share is in [0, 1] and the shares plus the remainder make the whole route."""
    starts = pd.date_range("2025-01-01", periods=len(months), freq="MS")
    points = pd.DataFrame(
        [
            (m, "eastern_mediterranean", p, n)
            for m, (a, b, _) in zip(starts, months, strict=True)
            for p, n in (("lesvos", a), ("chios", b))
        ],
        columns=list(people.POINT_COLUMNS),
    )
    monthly = pd.DataFrame(
        [(m, "eastern_mediterranean", a + b + rest) for m, (a, b, rest) in zip(starts, months, strict=True)],
        columns=["month", "route_id", "arrivals"],
    )
    asked = pd.date_range("2025-01-01", periods=len(months) + 1, freq="MS")
    shares = people.official_point_shares(points, monthly, "eastern_mediterranean", asked, share_months=3)
    assert set(shares["month"]) == set(asked)
    # The first month has no month before it: the first months published stand for it (a backcast, flagged).
    assert (
        shares.loc[shares["month"] == asked[0], "later"].all()
        and not shares.loc[shares["month"] > asked[0], "later"].any()
    )
    assert shares["share"].between(0, 1).all() and (shares["sigma"] >= 0).all()
    per_month = shares.groupby("month").agg(total=("share", "sum"), rest=("remainder", "first"))
    assert np.allclose(per_month["total"] + per_month["rest"], 1.0)


def test_where_a_route_is_counted_every_day_its_entry_points_split_the_days_count(catalogue):
    # Boats go on good-weather days: 0 on even days, 31 on odd ones (the phones' flow is smooth).
    days = _days()
    daily = pd.DataFrame({"date": days, "route_id": "channel", "arrivals": [31.0 * (d.day % 2) for d in days]})
    landings = _landings({"2025-03-01": 0.7, "2025-04-01": 0.7, "2025-05-01": 0.7})
    result = estimate_people(_signal(), _monthly(), daily, load_priors(), catalogue, landings)
    dover = _on(result.rows, crossing_point_id="dover").set_index("date")
    odd, even = dover.loc[dt.date(2025, 6, 21)], dover.loc[dt.date(2025, 6, 20)]
    assert odd["people"] == pytest.approx(31 * 0.7) and odd["lo80"] < odd["people"] < odd["hi80"]
    assert even["people"] == 0 and even["hi80"] == 0  # the count says nobody crossed that day
    assert odd["feature"].startswith("official daily arrivals (uk-channel) × share of the landings")
    # Departure points and the days after the last count keep the phones' flow.
    calais = _on(result.rows, crossing_point_id="calais", date=dt.date(2025, 6, 21)).iloc[0]
    assert "/ W" in calais["feature"]
    ahead = dover[dover["measure"] == "ahead"]
    assert len(ahead) and not ahead["feature"].str.startswith("official").any()


def test_a_blind_route_stays_blind_on_the_days_it_is_counted(catalogue):
    signal = _signal()
    days = _days()
    daily = pd.DataFrame({"date": days, "route_id": "western_mediterranean", "arrivals": 10.0})
    result = estimate_people(signal, _monthly(), daily, load_priors(), catalogue)
    rows = _on(result.rows, route_id="western_mediterranean", measure="crossing")
    assert result.params["western_mediterranean"].blind and rows["people"].isna().all()


def test_departure_points_take_an_equal_part_of_the_landings_their_boats_reach(catalogue):
    landings = _landings({"2025-03-01": 0.7, "2025-04-01": 0.7, "2025-05-01": 0.7})
    result = estimate_people(_signal(), _monthly(), _no_daily(), load_priors(), catalogue, landings)
    day = _on(result.rows, route_id="channel", date=dt.date(2025, 6, 20)).set_index("crossing_point_id")
    dover, dungeness = day.loc["dover", "people"], day.loc["dungeness", "people"]
    # Calais and Gravelines sail to Dover, Boulogne and Wimereux to Dungeness (jobs.scenario_network.sea_feeders).
    assert day.loc["calais", "people"] == pytest.approx(dover / 2)
    assert day.loc["gravelines", "people"] == pytest.approx(dover / 2)
    assert day.loc["boulogne", "people"] == pytest.approx(dungeness / 2)
    assert day.loc["calais", "feature"].endswith("an equal part of the landings at dover its boats reach")
    # The even split is a guess: the interval is wider than the landing's own.
    calais_width = math.log(day.loc["calais", "hi80"] / day.loc["calais", "people"])
    assert calais_width > math.log(day.loc["dover", "hi80"] / dover)
    # Dunkirk's boats reach no landing (its way on is the road to Gravelines): the segment rule stands.
    assert "segment share" in day.loc["dunkirk", "feature"]
    # Without any published landing the departure points keep the segment rule.
    plain = estimate_people(_signal(), _monthly(), _no_daily(), load_priors(), catalogue)
    calais = _on(plain.rows, crossing_point_id="calais", date=dt.date(2025, 6, 20)).iloc[0]
    assert calais["feature"].endswith("segment share")


def test_sea_feeders_follow_the_boats_to_the_first_entry_points(catalogue):
    from jobs.scenario_network import sea_feeders

    central = catalogue.route("central_mediterranean")
    feeders = sea_feeders(central, [p.id for p in route_entry_points(central)])
    # Lampedusa is not an entry point (its people are counted at Porto Empedocle): the boats' way goes on there.
    assert feeders["zuwara"] == ("porto_empedocle",) and feeders["sabratha"] == ("porto_empedocle",)
    # Tripoli's boats stop at Valletta, the first entry point; Pozzallo after it is not theirs.
    assert feeders["tripoli"] == ("valletta",)
    assert "benghazi" not in feeders  # its leg ends on a coast without an entry point
