"""The people measurement model on frames small enough to check by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from forecasting.people import (
    PeopleModel,
    PeopleModelConfig,
    RouteFitError,
    estimate,
    same_weekday_baseline,
    segment_features,
)

Z80 = 1.2815515655446004  # the normal quantile of 90 %: an 80 % central interval


def _signal(days: pd.DatetimeIndex, groups: dict[str, np.ndarray], route="r", segment="s") -> pd.DataFrame:
    """Long signal of one segment: one row per day and group; the total is the sum of the groups."""
    rows = [
        pd.DataFrame({"date": days, "route_id": route, "segment_id": segment, "group": g, "devices": v})
        for g, v in groups.items()
    ]
    total = sum(np.asarray(v, dtype=float) for v in groups.values())
    rows.append(
        pd.DataFrame({"date": days, "route_id": route, "segment_id": segment, "group": "total", "devices": total})
    )
    return pd.concat(rows, ignore_index=True)


MARCH_APRIL = pd.date_range("2025-03-01", "2025-04-30")
# 50 devices of a migrants' group a day in March, 100 in April, beside 1,000 residents.
STEP = np.where(MARCH_APRIL.month == 3, 50.0, 100.0)
# Two people per device: 100 people in March, 200 in April; with W = 1 day the arrivals per day equal the stock.
MONTHLY = pd.DataFrame({"month": ["2025-03", "2025-04"], "route_id": "r", "arrivals": [100.0 * 31, 200.0 * 30]})


def _step_signal() -> pd.DataFrame:
    return _signal(MARCH_APRIL, {"middle_east_south_asia": STEP, "domestic": np.full(len(STEP), 1000.0)})


def test_same_weekday_baseline_is_the_median_of_the_previous_weeks():
    values = np.full(29, 999.0)
    values[[0, 7, 14, 21]] = [10.0, 20.0, 40.0, 30.0]  # the same weekday, four weeks running
    baseline = same_weekday_baseline(pd.DataFrame({"x": values}), weeks=4, min_weeks=2)["x"]
    assert baseline[28] == 25.0  # median of 30, 40, 20, 10
    assert baseline[14] == 15.0  # only days 7 and 0 before it: median of 20, 10
    assert math.isnan(baseline[7])  # one week back only, fewer than min_weeks
    assert baseline[27] == 999.0


def test_excess_is_devices_over_the_baseline_clipped_at_zero_and_level_sums_the_roaming_groups():
    days = pd.date_range("2025-03-03", periods=23)
    total = np.full(23, 100.0)
    total[21], total[22] = 130.0, 90.0  # three weeks of 100 each weekday, then a rise and a fall
    signal = _signal(days, {"domestic": total - 20.0, "east_africa": np.full(23, 12.0), "other": np.full(23, 8.0)})
    features = segment_features(signal, baseline_weeks=3, baseline_min_weeks=2).loc[("r", "s")]
    assert features.loc["2025-03-24", "excess:total"] == 30.0  # 130 - median(100, 100, 100)
    assert features.loc["2025-03-25", "excess:total"] == 0.0  # 90 - 100, clipped
    assert math.isnan(features.loc["2025-03-10", "excess:total"])  # one week of history only
    assert (features["level:roaming"] == 20.0).all()  # east_africa 12 + other 8; domestic is not roaming
    assert (features["level:north_africa"] == 0.0).all()  # never published on the segment: 0, not missing


def test_a_known_scale_recovers_known_people_from_monthly_arrivals():
    model = PeopleModel().fit(_step_signal(), MONTHLY, days_on_route={"r": 1})
    params = model.params_["r"]
    # Identical to level:middle_east_south_asia here; the roaming sum comes first among equals.
    assert params.feature == "level:roaming"
    assert params.scale == pytest.approx(2.0)
    assert params.periods == 2 and params.fitted_on == "monthly"
    # An exact fit leaves only the prior: sqrt((0 + 2 x 0.3^2) / (2 + 2)).
    assert params.sigma_log == pytest.approx(0.3 / math.sqrt(2))

    out = model.estimate(_step_signal()).set_index("date")
    assert list(out.columns) == ["route_id", "segment_id", "people", "lo80", "hi80", "unit", "feature"]
    assert out.loc["2025-03-15", "people"] == pytest.approx(100.0)
    assert out.loc["2025-04-15", "people"] == pytest.approx(200.0)
    sigma_march = math.sqrt(0.045 + 1 / 50)  # the scale's error and counting noise on 50 devices
    assert out.loc["2025-03-15", "lo80"] == pytest.approx(100 * math.exp(-Z80 * sigma_march))
    assert out.loc["2025-03-15", "hi80"] == pytest.approx(100 * math.exp(Z80 * sigma_march))
    assert set(out["unit"]) == {"people"}


def test_the_fit_picks_the_group_that_follows_the_arrivals_over_border_residents():
    days = pd.date_range("2025-03-01", "2025-05-31")
    migrants = np.select([days.month == 3, days.month == 4], [20.0, 30.0], 25.0)
    weekday_rhythm = np.where(days.dayofweek >= 5, 700.0, 930.0)
    groups = {"domestic": weekday_rhythm, "neighbouring": np.full(len(days), 40.0), "east_africa": migrants}
    # Three people per east_africa device: 60, 90 and 75 people; W = 1, so the arrivals per day equal them.
    monthly = pd.DataFrame(
        {"month": ["2025-03", "2025-04", "2025-05"], "route_id": "r", "arrivals": [60.0 * 31, 90.0 * 30, 75.0 * 31]}
    )
    params = PeopleModel().fit(_signal(days, groups), monthly, days_on_route={"r": 1}).params_["r"]
    assert params.feature == "level:east_africa"
    assert params.scale == pytest.approx(3.0)
    assert params.errors["level:east_africa"] == pytest.approx(0.0, abs=1e-12)
    assert params.errors["level:roaming"] > 0.05  # the neighbours' 40 a day do not follow the arrivals


def test_daily_arrivals_estimate_the_days_on_route_and_the_scale():
    rng = np.random.default_rng(7)
    days = pd.date_range("2025-06-01", periods=90)
    arrivals = pd.Series(rng.poisson(20, len(days)).astype(float), index=days)
    # Little's law day by day: on the route today are those who arrive over the next 10 days; 3 people per device.
    stock = arrivals[::-1].rolling(10).sum()[::-1]
    devices = (stock / 3.0).ffill().to_numpy()  # the last 9 days have no complete forward sum: carry the last one
    signal = _signal(days, {"middle_east_south_asia": devices, "domestic": np.full(len(days), 500.0)}, route="channel")
    daily = pd.DataFrame({"date": days, "route_id": "channel", "arrivals": arrivals.to_numpy()})
    no_months = pd.DataFrame(columns=["month", "route_id", "arrivals"])
    params = PeopleModel().fit(signal, no_months, days_on_route={}, daily_arrivals=daily).params_["channel"]
    assert params.days_on_route == 10
    assert params.scale == pytest.approx(3.0)
    assert params.fitted_on == "daily" and params.periods == len(days) - 9
    # A prior W from a survey is taken as it is, not searched.
    given = PeopleModel().fit(signal, no_months, {"channel": 10}, daily_arrivals=daily).params_["channel"]
    assert given.days_on_route == 10 and given.scale == pytest.approx(3.0)
    wrong = PeopleModel().fit(signal, no_months, {"channel": 20}, daily_arrivals=daily).params_["channel"]
    assert wrong.days_on_route == 20 and wrong.scale == pytest.approx(6.0, rel=0.1)  # twice the stock, twice k


def test_a_route_without_a_signal_is_blind_and_its_people_are_missing_not_zero():
    signal = _signal(MARCH_APRIL, {"domestic": np.full(len(MARCH_APRIL), 1000.0)})
    model = PeopleModel().fit(signal, MONTHLY, days_on_route={"r": 1})
    assert model.params_["r"].blind
    out = model.estimate(signal)
    assert out["people"].isna().all() and out["lo80"].isna().all()


def test_route_totals_sum_the_segments_and_segments_share_the_scale():
    half = STEP / 2
    signal = pd.concat(
        [
            _signal(MARCH_APRIL, {"middle_east_south_asia": half}, segment="a"),
            _signal(MARCH_APRIL, {"middle_east_south_asia": half}, segment="b"),
        ]
    )
    model = PeopleModel().fit(signal, MONTHLY, days_on_route={"r": 1})
    by_segment = model.estimate(signal)
    by_route = model.estimate(signal, by="route").set_index("date")
    assert by_route.loc["2025-04-15", "people"] == pytest.approx(200.0)
    assert by_segment.groupby("date")["people"].sum().loc["2025-04-15"] == pytest.approx(200.0)
    assert set(by_route["segment_id"]) == {""}


def test_the_fit_takes_coarse_arrivals_not_people_per_segment():
    segment_people = pd.DataFrame({"date": MARCH_APRIL, "route_id": "r", "segment_id": "s", "people": 2 * STEP})
    with pytest.raises(ValueError, match="monthly_arrivals: column\\(s\\) month, arrivals missing"):
        PeopleModel().fit(_step_signal(), segment_people, days_on_route={"r": 1})


def test_the_fit_depends_on_the_months_not_on_days_after_them():
    """Held-out honesty: what the signal does after the coarse months does not move the fitted scale."""
    march_only = MONTHLY.iloc[:1]
    later = _step_signal()
    later.loc[later["date"] >= "2025-04-01", "devices"] *= 7.0
    a = PeopleModel().fit(_step_signal(), march_only, days_on_route={"r": 1}).params_["r"]
    b = PeopleModel().fit(later, march_only, days_on_route={"r": 1}).params_["r"]
    assert a.feature == b.feature == "level:roaming"  # one month cannot choose: the roaming groups by rule
    assert a.scale == pytest.approx(2.0) and b.scale == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.drop(columns="devices"), "signal: column\\(s\\) devices missing"),
        (lambda s: s.assign(group="martians"), "unknown group\\(s\\) martians"),
        (lambda s: s.assign(devices=-1.0), "devices must be numbers ≥ 0"),
        (lambda s: s.iloc[0:0], "signal is empty"),
    ],
)
def test_bad_signals_are_refused_with_a_sentence(mutate, match):
    with pytest.raises(ValueError, match=match):
        PeopleModel().fit(mutate(_step_signal()), MONTHLY, days_on_route={"r": 1})


def test_months_that_do_not_overlap_the_signal_are_refused():
    old = MONTHLY.assign(month=["2024-03", "2024-04"])
    with pytest.raises(ValueError, match="no month of monthly_arrivals overlaps the signal's days"):
        PeopleModel().fit(_step_signal(), old, days_on_route={"r": 1})


def test_monthly_arrivals_without_a_prior_days_on_route_are_refused():
    with pytest.raises(ValueError, match="need a prior days_on_route"):
        PeopleModel().fit(_step_signal(), MONTHLY, days_on_route={})


def test_arrivals_for_routes_the_signal_does_not_hold_are_refused():
    with pytest.raises(ValueError, match="no route has both signal and coarse arrivals"):
        PeopleModel().fit(_step_signal(), MONTHLY.assign(route_id="elsewhere"), days_on_route={"elsewhere": 1})


def test_duplicate_months_are_refused():
    with pytest.raises(ValueError, match="one row per route and month"):
        PeopleModel().fit(_step_signal(), pd.concat([MONTHLY, MONTHLY]), days_on_route={"r": 1})


def test_estimate_before_fit_and_unknown_levels_are_refused():
    with pytest.raises(RuntimeError, match="before fit"):
        PeopleModel().estimate(_step_signal())
    model = PeopleModel().fit(_step_signal(), MONTHLY, days_on_route={"r": 1})
    with pytest.raises(ValueError, match="'segment' or 'route'"):
        estimate(_step_signal(), model.params_, by="cell")
    with pytest.raises(ValueError, match="between 1 and baseline_weeks"):
        PeopleModelConfig(baseline_weeks=2, baseline_min_weeks=3)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    levels=st.lists(st.floats(10.0, 1000.0), min_size=3, max_size=3),
    rates=st.lists(st.floats(10.0, 500.0), min_size=3, max_size=3),
    factor=st.floats(0.5, 20.0),
)
def test_people_scale_with_the_arrivals_and_lie_inside_their_interval(levels, rates, factor):
    days = pd.date_range("2025-03-01", "2025-05-31")
    devices = np.select([days.month == 3, days.month == 4], levels[:2], levels[2])
    signal = _signal(days, {"west_central_africa": devices, "domestic": np.full(len(days), 800.0)})
    month_days = np.array([31, 30, 31])
    monthly = pd.DataFrame(
        {"month": ["2025-03", "2025-04", "2025-05"], "route_id": "r", "arrivals": np.array(rates) * month_days}
    )
    one = PeopleModel().fit(signal, monthly, days_on_route={"r": 3}).estimate(signal, by="route")
    scaled_monthly = monthly.assign(arrivals=monthly["arrivals"] * factor)
    many = PeopleModel().fit(signal, scaled_monthly, days_on_route={"r": 3}).estimate(signal, by="route")
    assert np.allclose(many["people"], factor * one["people"], rtol=1e-9, equal_nan=True)
    assert np.allclose(many["hi80"], factor * one["hi80"], rtol=1e-9, equal_nan=True)
    seen = one.dropna(subset=["people"])
    assert (seen["lo80"] <= seen["people"]).all() and (seen["people"] <= seen["hi80"]).all()


def test_a_route_that_cannot_be_fitted_raises_or_is_kept_blind_with_the_reason():
    old = MONTHLY.assign(month=["2024-03", "2024-04"])
    with pytest.raises(RouteFitError, match="route r: no month"):
        PeopleModel().fit(_step_signal(), old, days_on_route={"r": 1})
    params = PeopleModel().fit(_step_signal(), old, days_on_route={"r": 1}, unfittable="blind").params_["r"]
    assert params.blind and "no month of monthly_arrivals overlaps" in params.reason


def test_published_nationalities_narrow_the_candidates_to_their_groups():
    days = pd.date_range("2025-03-01", "2025-05-31")
    migrants = np.select([days.month == 3, days.month == 4], [20.0, 30.0], 25.0)
    # Drivers from the region on "other" networks happen to follow the arrivals better than the migrants' group ...
    drivers = migrants * 2 + np.where(days.month == 4, 1.0, 0.0)
    groups = {"east_africa": migrants + np.where(days.month == 5, 3.0, 0.0), "other": drivers}
    monthly = pd.DataFrame(
        {"month": ["2025-03", "2025-04", "2025-05"], "route_id": "r", "arrivals": [60.0 * 31, 90.0 * 30, 75.0 * 31]}
    )
    free = PeopleModel().fit(_signal(days, groups), monthly, days_on_route={"r": 1}).params_["r"]
    assert free.feature == "level:other"
    # ... but the arrivals are published as Eritreans and Ethiopians: east_africa wherever they are seen.
    narrowed = PeopleModel().fit(_signal(days, groups), monthly, {"r": 1}, groups={"r": ["east_africa"]})
    assert narrowed.params_["r"].feature == "level:east_africa"
    two = PeopleModel().fit(_signal(days, groups), monthly, {"r": 1}, groups={"r": ["east_africa", "other"]})
    assert "level:east_africa+other" in two.params_["r"].errors
    summed = estimate(_signal(days, groups), {"r": replace(two.params_["r"], feature="level:east_africa+other")})
    assert summed.set_index("date").loc["2025-03-10", "people"] == pytest.approx(two.params_["r"].scale * 60.0)


def test_excess_is_the_signal_only_where_no_roaming_group_is_seen():
    days = pd.date_range("2025-03-01", "2025-05-31")
    # Migrants on local SIMs: the residents' 1,000 a day plus 0, 30, then 20 a day from mid-March.
    local = 1000.0 + np.select([days < "2025-03-15", days.month < 5], [0.0, 30.0], 20.0)
    monthly = pd.DataFrame(
        {"month": ["2025-03", "2025-04", "2025-05"], "route_id": "r", "arrivals": [40.0 * 31, 90.0 * 30, 60.0 * 31]}
    )
    blind_groups = PeopleModel().fit(_signal(days, {"domestic": local}), monthly, {"r": 1}).params_["r"]
    assert blind_groups.feature.startswith("excess:")
    refused = PeopleModel(PeopleModelConfig(unseen="blind")).fit(_signal(days, {"domestic": local}), monthly, {"r": 1})
    assert refused.params_["r"].blind and "no roaming group" in refused.params_["r"].reason
    roaming = np.full(len(days), 6.0)  # a few roaming phones, above min_signal
    seen = PeopleModel().fit(_signal(days, {"domestic": local, "other": roaming}), monthly, {"r": 1}).params_["r"]
    assert seen.feature.startswith("level:") and not any(f.startswith("excess:") for f in seen.errors)


def test_candidates_are_compared_on_the_same_months():
    """An excess has no baseline in its first weeks: one month fewer must not read as a perfect fit."""
    # April's arrivals are a little above twice the devices, so no feature fits both months exactly ...
    monthly = MONTHLY.assign(arrivals=[100.0 * 31, 210.0 * 30])
    # ... and with 20 days needed per month, an excess (17 days of baseline in March) is fitted on April alone.
    config = PeopleModelConfig(min_window_days=20, excess_as_fallback=False)
    params = PeopleModel(config).fit(_step_signal(), monthly, days_on_route={"r": 1}).params_["r"]
    assert params.errors["excess:total"] == 0.0  # one month: exact, and not comparable
    assert params.feature == "level:roaming" and params.periods == 2
    assert params.scale == pytest.approx((100 * 50 + 210 * 100) / (50**2 + 100**2))  # 2.08


def test_lead_forecasts_replace_only_the_days_people_already_imply():
    from forecasting.people import LEADING_MODEL, lead_forecasts

    days = pd.date_range("2025-07-01", periods=4, freq="D")
    forecasts = pd.DataFrame(
        {
            "series_id": ["p"] * 4 + ["q"] * 4,
            "ds": list(days) * 2,
            "yhat": 5.0,
            "lo80": 4.0,
            "hi80": 6.0,
            "lo95": 3.0,
            "hi95": 7.0,
            "model": "naive",
        }
    )
    ahead = pd.DataFrame(
        {"series_id": ["p", "p", "q"], "ds": [days[0], days[1], days[0]], "people": [10.0, 0.0, np.nan]}
    ).assign(lo80=lambda f: f["people"] / 2, hi80=lambda f: f["people"] * 2)
    out = lead_forecasts(forecasts, ahead).set_index(["series_id", "ds"])
    first = out.loc[("p", days[0])]
    assert first["yhat"] == 10.0 and first["lo80"] == 5.0 and first["hi80"] == 20.0
    # 95 % from the same log-normal: σ = ln 2 / z80, so hi95 = 10 · 2^(z95 / z80).
    assert first["hi95"] == pytest.approx(10.0 * 2 ** (1.959964 / 1.281552), rel=1e-4)
    assert first["lo95"] == pytest.approx(10.0 / 2 ** (1.959964 / 1.281552), rel=1e-4)
    assert first["model"] == f"{LEADING_MODEL} (then naive)"
    zero = out.loc[("p", days[1])]
    assert (zero[["yhat", "lo80", "hi80", "lo95", "hi95"]] == 0).all()
    # A missing expectation (a blind route) and days without one keep the univariate forecast.
    assert (out.loc["q", "model"] == "naive").all() and (out.loc[("p", days[2]), "yhat"] == 5.0)
