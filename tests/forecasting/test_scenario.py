"""The what-if scenario engine: the spec and its one-sentence errors, the flow model on hand-computable networks,
reproducibility, intervals, and the conservation of people (hypothesis)."""

from __future__ import annotations

import json
import math
import re
import tomllib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.series import series_id
from forecasting.measured import widen_forecasts
from forecasting.scenario import (
    DAILY_COLUMNS,
    DEFAULT_PARAMETERS,
    LEDGER_COLUMNS,
    SUMMARY_COLUMNS,
    BlockParameters,
    Delay,
    Link,
    Network,
    NetworkError,
    NetworkPoint,
    ScenarioError,
    ScenarioParameters,
    Target,
    Transit,
    delay_from_samples,
    delay_kernels,
    diversion_from_counts,
    draw_baseline,
    load_spec,
    parse_spec,
    point_series_id,
    route_series_id,
    run_scenario,
    simulate_scenario,
    spec_from_json,
    spec_from_toml,
    validate,
)

DAY0 = date(2027, 3, 1)
N_DAYS = 30
# Transit exactly the links' lags, so that arrivals can be computed by hand.
EXACT = ScenarioParameters(transit=Transit(sd_share=0.0, shape=0.0))
NO_DIVERSION = {"divert": [], "release_days": {"mean": 0, "sd": 0, "shape": 0}}


def day(i: int) -> str:
    return (DAY0 + timedelta(days=i)).isoformat()


def network() -> Network:
    """Route ``central``: departure a -> landing b in 2 days; route ``east``: departure c -> landing d in 3 days."""
    return Network(
        points=(
            NetworkPoint("central", "a", "departure", "sea1"),
            NetworkPoint("central", "b", "landing", "sea1"),
            NetworkPoint("east", "c", "departure", "sea2"),
            NetworkPoint("east", "d", "landing", "sea2"),
        ),
        links=(Link("central", "a", "b", 1.0, 2.0), Link("east", "c", "d", 1.0, 3.0)),
    )


def forecasts(levels: dict[str, float] | None = None, width: float = 0.0, n_days: int = N_DAYS) -> pd.DataFrame:
    """Published rows with a flat yhat per series; ``width`` > 0 gives intervals (yhat x / exp(width ...))."""
    levels = levels or {
        point_series_id("central", "a"): 10.0,
        point_series_id("central", "b"): 10.0,
        point_series_id("east", "c"): 5.0,
        point_series_id("east", "d"): 5.0,
        route_series_id("central"): 30.0,
        route_series_id("east"): 20.0,
    }
    rows = []
    for sid, y in levels.items():
        for i in range(n_days):
            rows.append(
                {
                    "series_id": sid,
                    "ds": DAY0 + timedelta(days=i),
                    "yhat": y,
                    "lo80": y * math.exp(-width),
                    "hi80": y * math.exp(width),
                    "lo95": y * math.exp(-1.53 * width),
                    "hi95": y * math.exp(1.53 * width),
                    "model": "fake",
                }
            )
    return pd.DataFrame(rows)


def spec(*interventions: dict, **fields) -> object:
    return parse_spec({"interventions": list(interventions), **fields})


def closure(target: str = "point:central/a", start: int = 4, end: int = 10, **assumptions) -> dict:
    out = {"kind": "closure", "target": target, "start": day(start), "end": day(end)}
    if assumptions:
        out["assumptions"] = assumptions
    return out


def run_draws(*interventions: dict, n_draws: int = 4, parameters=EXACT, data=None, **kw):
    return simulate_scenario(
        spec(*interventions), network(), data if data is not None else forecasts(), parameters=parameters,
        n_draws=n_draws, **kw,
    )  # fmt: skip


def series(draws, kind: str, route: str, point: str | None = None, which: str = "scenario") -> np.ndarray:
    """The first draw of one row (every draw is the same when nothing is uncertain)."""
    return getattr(draws, which)[draws.row(kind, route, point)][0]


def flat(value: float, n: int = N_DAYS) -> np.ndarray:
    return np.full(n, value)


# --- the flow model, by hand ------------------------------------------------------------------------------------


def test_closure_without_diversion_holds_people_and_releases_them_on_reopening():
    draws = run_draws(closure(**NO_DIVERSION))
    expected_a = flat(10.0)
    expected_a[4:11] = 0.0
    expected_a[11] = 10.0 + 70.0  # the 7 days' backlog leaves on the reopening day (release mean 0)
    assert np.allclose(series(draws, "point", "central", "a"), expected_a)
    # Landings follow 2 days later: nothing from day 6 to 12, the backlog on day 13.
    assert np.allclose(series(draws, "point", "central", "b"), np.r_[[10.0] * 2, expected_a[:-2]])
    waiting = np.zeros(N_DAYS)
    waiting[4:11] = np.arange(10.0, 80.0, 10.0)
    assert np.allclose(series(draws, "waiting", "central", "a"), waiting)
    (ledger,) = draws.ledgers
    assert ledger.blocked[0] == pytest.approx(70.0)
    assert ledger.released[0] == pytest.approx(70.0)
    assert ledger.waiting_at_end[0] == pytest.approx(0.0)
    # The other route is not touched.
    with pytest.raises(KeyError):
        draws.row("point", "east", "c")


def test_a_point_with_fewer_people_than_reach_it_owes_the_rest_and_takes_it_off_what_it_gains_later():
    # The landing publishes 2 a day while 10 a day leave for it: the forecasts are not a consistent flow. Closing the
    # departure cannot take the landing below 0; the 8 a day it could not lose come off the backlog when it lands.
    levels = {point_series_id("central", "a"): 10.0, point_series_id("central", "b"): 2.0}
    draws = run_draws(closure(**NO_DIVERSION), data=forecasts(levels))
    landing = series(draws, "point", "central", "b")
    expected = flat(2.0)
    expected[6:13] = 0.0
    expected[13] = 2.0 + 70.0 - 7 * 8.0  # the backlog, less what was owed
    assert np.allclose(landing, expected)
    # Over the horizon the landing changes by what reached it: 70 fewer, then 70 more.
    assert (landing - series(draws, "point", "central", "b", which="baseline")).sum() == pytest.approx(0.0)


def test_waiting_people_stay_on_the_route_until_they_land():
    draws = run_draws(closure(**NO_DIVERSION))
    change = series(draws, "route", "central") - series(draws, "route", "central", which="baseline")
    # Nobody lands from day 6: 10 more people on the route each day until the backlog lands on day 13.
    expected = np.zeros(N_DAYS)
    expected[6:13] = np.arange(10.0, 80.0, 10.0)
    assert np.allclose(change, expected)


def test_release_follows_the_spread_kernel_after_reopening():
    draws = run_draws(closure(divert=[], release_days={"mean": 2.0, "sd": 0, "shape": 2.0}))
    a = series(draws, "point", "central", "a")
    # Erlang-2 of mean 2 (rate 1), counted from the reopening day's start: P(day k) = F(k + 1) - F(k).
    cdf = [1.0 - math.exp(-x) * (1.0 + x) for x in range(N_DAYS - 10)]
    share = np.diff(cdf)
    assert a[11] == pytest.approx(10.0 + 70.0 * share[0])
    assert a[12] == pytest.approx(10.0 + 70.0 * share[1])
    (ledger,) = draws.ledgers
    assert ledger.released[0] + ledger.waiting_at_end[0] == pytest.approx(70.0)
    assert ledger.waiting_at_end[0] == pytest.approx(70.0 * (1.0 - cdf[-1]))


def test_full_diversion_appears_on_the_other_route_after_the_lag():
    draws = run_draws(
        closure(divert=[{"to": "route:east", "share": 1.0}], divert_lag_days={"mean": 4, "sd": 0, "shape": 0})
    )
    c, d = series(draws, "point", "east", "c"), series(draws, "point", "east", "d")
    expected_c = flat(5.0)
    expected_c[8:15] += 10.0  # blocked on days 4..10, at c 4 days later
    assert np.allclose(c, expected_c)
    expected_d = flat(5.0)
    expected_d[11:18] += 10.0  # and at d 3 days after that
    assert np.allclose(d, expected_d)
    assert np.allclose(series(draws, "waiting", "central", "a"), 0.0)
    assert np.allclose(series(draws, "diverted", "central", "a")[4:11], 10.0)
    (ledger,) = draws.ledgers
    assert ledger.diverted["route:east"][0] == pytest.approx(70.0)
    assert ledger.released[0] == pytest.approx(0.0)


def test_diverted_people_are_on_no_route_during_the_lag():
    draws = run_draws(
        closure(divert=[{"to": "route:east", "share": 1.0}], divert_lag_days={"mean": 4, "sd": 0, "shape": 0})
    )
    central = series(draws, "route", "central") - series(draws, "route", "central", which="baseline")
    east = series(draws, "route", "east") - series(draws, "route", "east", which="baseline")
    # Day 5: 20 diverted so far (left central), the 10 of day 4 would only have landed on day 6.
    assert central[5] == pytest.approx(-20.0)
    assert east[5] == pytest.approx(0.0)
    # Day 9: on east are those who reached c on days 8..9 and have not landed (they land 3 days later).
    assert east[9] == pytest.approx(20.0)
    # Long after, everyone has landed somewhere: both routes back to their baseline.
    assert central[-1] == pytest.approx(0.0)
    assert east[-1] == pytest.approx(0.0)


def test_capacity_cut_lets_a_share_through_and_holds_the_rest():
    cut = {"kind": "capacity_cut", "share": 0.5, "target": "point:central/a", "start": day(4), "end": day(10)}
    cut["assumptions"] = NO_DIVERSION
    draws = run_draws(cut)
    a = series(draws, "point", "central", "a")
    assert np.allclose(a[4:11], 5.0)
    assert a[11] == pytest.approx(10.0 + 35.0)
    assert draws.ledgers[0].blocked[0] == pytest.approx(35.0)


def test_surge_doubles_departures_and_downstream_arrivals_after_the_transit_lag():
    surge = {"kind": "surge", "factor": 2.0, "target": "route:central", "start": day(4), "end": day(10)}
    draws = run_draws(surge)
    a, b = series(draws, "point", "central", "a"), series(draws, "point", "central", "b")
    expected_a = flat(10.0)
    expected_a[4:11] = 20.0
    assert np.allclose(a, expected_a)
    expected_b = flat(10.0)
    expected_b[6:13] = 20.0
    assert np.allclose(b, expected_b)
    assert draws.ledgers == ()


def test_a_drop_halves_departures():
    drop = {"kind": "surge", "factor": 0.5, "target": "point:central/a", "start": day(0), "end": day(0)}
    draws = run_draws(drop)
    assert series(draws, "point", "central", "a")[0] == pytest.approx(5.0)
    assert series(draws, "point", "central", "b")[2] == pytest.approx(5.0)


def test_a_fractional_transit_lag_splits_people_over_two_days():
    net = Network(
        points=(NetworkPoint("r", "a", "departure"), NetworkPoint("r", "b", "landing")),
        links=(Link("r", "a", "b", 0.8, 2.5),),
    )
    data = forecasts({point_series_id("r", "a"): 10.0, point_series_id("r", "b"): 8.0})
    surge = {"kind": "surge", "factor": 2.0, "target": "point:r/a", "start": day(3), "end": day(3)}
    draws = simulate_scenario(spec(surge), net, data, parameters=EXACT, n_draws=2)
    b = series(draws, "point", "r", "b")
    # 10 extra people on day 3, 8 of them reach b: half 2 days later, half 3 days later.
    assert b[5] == pytest.approx(8.0 + 4.0)
    assert b[6] == pytest.approx(8.0 + 4.0)
    assert b[4] == pytest.approx(8.0)


def test_diversion_to_a_point_of_the_same_route_lands_where_that_point_leads():
    net = Network(
        points=(
            NetworkPoint("r", "z", "departure"),
            NetworkPoint("r", "t", "departure"),
            NetworkPoint("r", "l", "landing"),
            NetworkPoint("r", "m", "landing"),
        ),
        links=(Link("r", "z", "l", 1.0, 1.0), Link("r", "t", "m", 1.0, 1.0)),
    )
    data = forecasts({point_series_id("r", p): 4.0 for p in "ztlm"})
    iv = closure("point:r/z", 2, 2, divert=[{"to": "point:r/t", "share": 0.25}], divert_lag_days=1.0)
    params = EXACT.model_copy(update={"default": BlockParameters(divert_lag=Delay(mean=0.0))})
    draws = simulate_scenario(spec(iv), net, data, parameters=params, n_draws=1)
    assert series(draws, "point", "r", "t")[3] == pytest.approx(5.0)  # 1 of the 4 blocked, a day later
    assert series(draws, "point", "r", "m")[4] == pytest.approx(5.0)
    assert series(draws, "waiting", "r", "z")[2] == pytest.approx(3.0)


def test_route_target_acts_on_its_departure_points_not_those_downstream():
    net = Network(
        points=(
            NetworkPoint("land", "hub", "hub"),
            NetworkPoint("land", "post", "border"),
            NetworkPoint("sea", "x", "departure"),
            NetworkPoint("sea", "y", "departure"),
            NetworkPoint("sea", "z", "departure"),
            NetworkPoint("sea", "l", "landing"),
        ),
        links=(
            Link("land", "hub", "post", 1.0, 1.0),
            Link("sea", "x", "y", 0.5, 1.0),
            Link("sea", "y", "l", 1.0, 1.0),
            Link("sea", "z", "l", 1.0, 1.0),
        ),
    )
    assert net.resolve(Target.model_validate("route:sea"), "target") == (("sea", "x"), ("sea", "z"))
    # A land route without departure points: its entry points.
    assert net.resolve(Target.model_validate("route:land"), "target") == (("land", "hub"),)
    assert net.resolve(Target.model_validate("post"), "target") == (("land", "post"),)


def road(roles: dict[str, str], links: list[tuple[str, str, float, float, str]]) -> Network:
    """A network of route ``r``: its points' roles, and links (from, to, share, lag_days, mode)."""
    return Network(
        points=tuple(NetworkPoint("r", p, role) for p, role in roles.items()),
        links=tuple(Link("r", *link) for link in links),
    )


def coast_road() -> Network:
    """Route ``r`` along a coast road: departure t (Tripoli) sails to landing v and is passed on the road to departure
    s (Sabratha, 2 days on), which sails to landing l and is passed on the road to departure z (Zuwara, a day on),
    which sails to l too."""
    return road(
        {"t": "departure", "s": "departure", "z": "departure", "v": "landing", "l": "landing"},
        [
            ("t", "v", 0.5, 1.0, "sea"),
            ("t", "s", 0.5, 2.0, "land"),
            ("s", "l", 0.3, 1.0, "sea"),
            ("s", "z", 0.7, 1.0, "land"),
            ("z", "l", 1.0, 1.0, "sea"),
        ],
    )


def coast_forecasts(width: float = 0.0) -> pd.DataFrame:
    # Published crossings: at a departure point, the people setting sail there.
    levels = {"t": 4.0, "s": 1.0, "z": 3.0, "v": 4.0, "l": 4.0}
    return forecasts({point_series_id("r", p): y for p, y in levels.items()}, width=width)


def test_a_closed_town_on_the_coast_road_holds_everyone_passing_it_not_only_those_sailing_from_it():
    draws = simulate_scenario(
        spec(closure("point:r/s", 5, 9, **NO_DIVERSION)), coast_road(), coast_forecasts(), parameters=EXACT, n_draws=2
    )
    (ledger,) = draws.ledgers
    # Passing s: its 1 sailing a day and the 3 a day who sail from z a day later; five days of 4.
    assert ledger.blocked[0] == pytest.approx(20.0)
    s, z, l_ = (series(draws, "point", "r", p) for p in "szl")
    assert np.allclose(s[5:10], 0.0) and np.allclose(z[6:11], 0.0)
    assert np.allclose(l_[7:11], 0.0)  # both ways to l closed, a day's sail later
    assert l_[6] == pytest.approx(3.0)  # z's boats of day 5 had passed s before the closure
    # Reopened on day 10: the 20 leave at once, in the baseline's shares: 5 sail from s, 15 go on to z.
    assert s[10] == pytest.approx(1.0 + 5.0)
    assert z[11] == pytest.approx(3.0 + 15.0)
    assert series(draws, "waiting", "r", "s")[9] == pytest.approx(20.0)
    # Upstream of the closure nothing changes, and it is not shown.
    assert {(r.route_id, r.point_id) for r in draws.rows if r.kind == "point"} == {("r", p) for p in "szl"}


def test_people_passing_a_border_nobody_estimates_count_at_the_town_before_it():
    # z's road goes on to border post b (no published figure), then to departure point y across it (2 a day).
    net = road(
        {"z": "departure", "b": "border", "y": "departure", "l": "landing"},
        [
            ("z", "l", 0.5, 1.0, "sea"),
            ("z", "b", 0.5, 1.0, "land"),
            ("b", "y", 1.0, 1.0, "land"),
            ("y", "l", 1.0, 1.0, "sea"),
        ],
    )
    data = forecasts({point_series_id("r", p): y for p, y in {"z": 3.0, "y": 2.0, "l": 5.0}.items()})
    draws = simulate_scenario(spec(closure("point:r/z", 5, 5, **NO_DIVERSION)), net, data, parameters=EXACT, n_draws=2)
    assert draws.ledgers[0].blocked[0] == pytest.approx(3.0 + 2.0)
    assert series(draws, "point", "r", "y")[7] == pytest.approx(0.0)  # two days on, past the border


def test_closing_a_route_holds_everyone_passing_its_first_departure_point_once():
    draws = simulate_scenario(
        spec(closure("route:r", 5, 5, **NO_DIVERSION)), coast_road(), coast_forecasts(), parameters=EXACT, n_draws=2
    )
    (ledger,) = draws.ledgers
    assert (ledger.route_id, ledger.point_id) == ("r", "t")
    # Everyone passing t on day 5: its own 4 and the 4 passing s two days later (who include z's 3).
    assert ledger.blocked[0] == pytest.approx(8.0)


def test_a_surge_of_departures_multiplies_those_setting_sail_at_every_departure_point_not_those_passing():
    surge = {"kind": "surge", "factor": 2.0, "target": "route:r", "start": day(3), "end": day(3)}
    draws = simulate_scenario(spec(surge), coast_road(), coast_forecasts(), parameters=EXACT, n_draws=2)
    assert [series(draws, "point", "r", p)[3] for p in "tsz"] == pytest.approx([8.0, 2.0, 6.0])
    assert series(draws, "point", "r", "z")[4] == pytest.approx(3.0)  # s's extra people sailed, none walked on
    assert series(draws, "point", "r", "l")[4] == pytest.approx(4.0 + 1.0 + 3.0)
    assert series(draws, "point", "r", "v")[4] == pytest.approx(8.0)


def test_a_route_target_leaves_alone_a_point_without_a_forecast_and_says_so():
    data = coast_forecasts()
    data = data[data["series_id"] != point_series_id("r", "s")]
    surge = {"kind": "surge", "factor": 2.0, "target": "route:r", "start": day(3), "end": day(3)}
    draws = simulate_scenario(spec(surge), coast_road(), data, parameters=EXACT, n_draws=2)
    assert [series(draws, "point", "r", p)[3] for p in "tz"] == pytest.approx([8.0, 6.0])
    assert any("interventions[0] (route:r): no published forecast of people at s" in n for n in draws.notes)
    # Named on its own, the point is refused.
    with pytest.raises(ScenarioError, match="no published forecast of people at point:r/s"):
        simulate_scenario(spec(dict(surge, target="point:r/s")), coast_road(), data, parameters=EXACT, n_draws=2)


def test_links_without_a_mode_keep_a_departure_points_crossings_as_its_people():
    # A network published before links had modes: nothing passes on by road, as before.
    old = Network(points=coast_road().points, links=tuple(Link(*astuple_link(k)[:5]) for k in coast_road().links))
    draws = simulate_scenario(
        spec(closure("point:r/s", 5, 9, **NO_DIVERSION)), old, coast_forecasts(), parameters=EXACT, n_draws=2
    )
    assert draws.ledgers[0].blocked[0] == pytest.approx(5.0)


@settings(max_examples=30, deadline=None)
@given(
    start=st.integers(0, 10),
    length=st.integers(1, 5),
    passing=st.sampled_from([0.0, 0.5]),
    release=st.integers(0, 3),
    width=st.sampled_from([0.0, 0.4]),
    seed=st.integers(0, 2**16),
)
def test_everyone_held_on_the_coast_road_sails_from_it_once_released(start, length, passing, release, width, seed):
    cut = {"kind": "capacity_cut", "share": passing, "target": "point:r/s", "start": day(start),
           "end": day(start + length - 1),
           "assumptions": {"divert": [], "release_days": {"mean": release, "sd": 0, "shape": 0}}}  # fmt: skip
    draws = simulate_scenario(spec(cut), coast_road(), coast_forecasts(width), parameters=EXACT, n_draws=20, seed=seed)
    (ledger,) = draws.ledgers
    assert np.allclose(ledger.blocked, ledger.released, atol=1e-6)  # nobody diverts; all leave within the horizon
    sailed = sum(draws.scenario[draws.row("point", "r", p)] - draws.baseline[draws.row("point", "r", p)] for p in "sz")
    assert np.allclose(sailed.sum(axis=1), 0.0, atol=1e-6)  # held, not lost: each sails from s or z in the end
    assert np.all(draws.scenario[draws.row("point", "r", "z")] >= 0.0)


def astuple_link(link: Link) -> tuple:
    return (link.route_id, link.from_point, link.to_point, link.share, link.lag_days, link.mode)


# --- uncertainty and reproducibility -----------------------------------------------------------------------------


def test_baseline_draws_reproduce_the_published_intervals():
    q = np.array([[[2.0, 5.0, 10.0, 20.0, 40.0]]])  # lo95, lo80, yhat, hi80, hi95 of one series and day
    paths = draw_baseline(q, 40_000, 0.8, np.random.default_rng(1))[0, :, 0]
    assert np.quantile(paths, [0.025, 0.1, 0.5, 0.9, 0.975]) == pytest.approx([2.0, 5.0, 10.0, 20.0, 40.0], rel=0.04)


def test_a_points_level_error_is_the_same_on_every_day_of_a_draw():
    # Published with the level error in its intervals (here all of their width, as widen_forecasts puts it): the
    # draws take it as one factor per draw, so a total over weeks is as uncertain as a day; never below 0 people.
    net = Network(
        points=(NetworkPoint("central", "a", "departure", level_sigma=0.5), *network().points[1:]),
        links=network().links,
    )
    data = widen_forecasts(forecasts(), pd.Series({point_series_id("central", "a"): 0.5}))
    surge = {"kind": "surge", "factor": 1.0, "target": "point:central/a", "start": day(0), "end": day(0)}
    draws = simulate_scenario(spec(surge), net, data, parameters=EXACT, n_draws=4000, seed=3)
    a = draws.baseline[draws.row("point", "central", "a")]
    assert np.allclose(a, a[:, :1])  # flat within a draw: the forecast itself had no day-to-day error left
    assert (a >= 0).all()
    assert np.std(np.log1p(a[:, 0])) == pytest.approx(0.5, rel=0.05)
    # The published level is read as right on average (a guessed share is the expected share): the mean stays, and
    # the spread is the published one around a median exp(-sigma² / 2) lower.
    published = data[data["series_id"] == point_series_id("central", "a")].iloc[0]
    assert a[:, 0].mean() == pytest.approx(published["yhat"], rel=0.05)
    bounds = np.log1p(published[["lo80", "hi80"]].to_numpy("float64")) - 0.5**2 / 2
    assert np.log1p(np.quantile(a[:, 0], [0.1, 0.9])) == pytest.approx(bounds, abs=0.04)
    # Without a level error the same intervals are day-to-day misses: a four-week total varies far less.
    plain = simulate_scenario(spec(surge), network(), data, parameters=EXACT, n_draws=4000, seed=3)
    b = plain.baseline[plain.row("point", "central", "a")]
    assert np.std(b[:, :28].sum(axis=1)) < 0.7 * np.std(a[:, :28].sum(axis=1))


def test_same_seed_same_answer_and_another_seed_another():
    iv = closure(divert=[{"to": "route:east", "share": 0.5}], divert_sd=0.2)
    data = forecasts(width=0.3)
    first = run_scenario(spec(iv), network(), data, n_draws=200, seed=11)
    again = run_scenario(spec(iv), network(), data, n_draws=200, seed=11)
    other = run_scenario(spec(iv), network(), data, n_draws=200, seed=12)
    pd.testing.assert_frame_equal(first.daily, again.daily)
    pd.testing.assert_frame_equal(first.ledger, again.ledger)
    assert not first.daily["scenario_hi80"].equals(other.daily["scenario_hi80"])
    # The spec's seed is used when no seed is passed.
    with_seed = run_scenario(spec(iv, seed=11), network(), data, n_draws=200)
    pd.testing.assert_frame_equal(first.daily, with_seed.daily)


def test_baseline_and_scenario_share_their_draws():
    draws = run_draws(closure(), data=forecasts(width=0.4), n_draws=300, parameters=None)
    a = draws.row("point", "central", "a")
    # Before the closure the scenario is the baseline in every draw: the difference is exactly 0.
    assert np.array_equal(draws.scenario[a, :, :4], draws.baseline[a, :, :4])
    assert draws.baseline[a, :, 0].std() > 0  # the baseline itself is uncertain


def test_intervals_hold_the_median_and_widen_with_parameter_uncertainty():
    def difference_width(divert_sd: float) -> float:
        iv = closure(divert=[{"to": "route:east", "share": 0.5}], divert_sd=divert_sd)
        result = run_scenario(spec(iv), network(), forecasts(), n_draws=400, seed=3)
        s = result.summary
        (d,) = s[(s["kind"] == "point") & (s["point_id"] == "d")].itertuples()
        return d.difference_hi80 - d.difference_lo80

    assert difference_width(0.0) < difference_width(0.25)
    result = run_scenario(spec(closure()), network(), forecasts(width=0.3), n_draws=300, seed=5)
    for part in ("baseline", "scenario", "difference"):
        v = result.daily
        assert (v[f"{part}_lo95"] <= v[f"{part}_lo80"] + 1e-9).all()
        assert (v[f"{part}_lo80"] <= v[f"{part}_yhat"] + 1e-9).all()
        assert (v[f"{part}_yhat"] <= v[f"{part}_hi80"] + 1e-9).all()
        assert (v[f"{part}_hi80"] <= v[f"{part}_hi95"] + 1e-9).all()


def test_result_tables_on_a_hand_computable_closure():
    iv = closure(divert=[{"to": "route:east", "share": 0.5}], divert_lag_days={"mean": 4, "sd": 0, "shape": 0})
    iv["assumptions"]["release_days"] = {"mean": 0, "sd": 0, "shape": 0}
    result = run_scenario(spec(iv), network(), forecasts(), parameters=EXACT, n_draws=3)
    assert list(result.daily.columns) == DAILY_COLUMNS
    assert list(result.summary.columns) == SUMMARY_COLUMNS
    assert list(result.ledger.columns) == LEDGER_COLUMNS
    summary = {(r.kind, r.point_id): r for r in result.summary.itertuples()}
    assert summary["waiting", "a"].scenario_yhat == pytest.approx(35.0)  # peak
    assert summary["waiting", "a"].measure == "peak"
    assert summary["diverted", "a"].scenario_yhat == pytest.approx(35.0)
    assert summary["point", "c"].difference_yhat == pytest.approx(35.0)
    # Over the window from day 4, a loses the 35 who diverted; the 35 who waited cross on the reopening day.
    assert summary["point", "a"].difference_yhat == pytest.approx(-35.0)
    assert summary["point", "a"].baseline_yhat == pytest.approx(10.0 * (N_DAYS - 4))
    ledger = result.ledger.set_index("quantity")["yhat"]
    assert ledger["blocked"] == pytest.approx(70.0)
    assert ledger["diverted:route:east"] == pytest.approx(35.0)
    assert ledger["released"] == pytest.approx(35.0)
    sources = result.assumptions.set_index("parameter")["source"]
    assert sources["divert_share"] == "planner"
    assert sources["transit_lag_factor"] == "default"
    assert result.daily["ds"].iloc[0] == DAY0


# --- parameters --------------------------------------------------------------------------------------------------


def test_parameters_come_from_estimates_then_the_planner():
    estimated = BlockParameters(release=Delay(mean=5.0, sd=1.0, shape=2.0, source="estimated from 40 closures"))
    params = ScenarioParameters(by_target={"point:central/a": estimated})
    iv = closure(divert_lag_days=7.0)
    (planned,) = validate(spec(iv), network(), DAY0, DAY0 + timedelta(days=N_DAYS - 1), params)
    assert planned.parameters.release.source == "estimated from 40 closures"
    assert planned.parameters.divert_lag.mean == 7.0
    assert planned.parameters.divert_lag.sd == 3.0  # the default's, not set by the planner
    assert planned.parameters.divert_lag.source == "planner"
    assert planned.parameters.diversion.source.startswith("default")


def test_delay_kernel_within_the_day_keeps_the_mean():
    kernel = delay_kernels(np.array([3.7]), 3.0, 60)[0]
    assert kernel.sum() == pytest.approx(1.0, abs=1e-6)
    assert (kernel * np.arange(60)).sum() == pytest.approx(3.7, abs=1e-4)


def test_delay_from_samples():
    delay = delay_from_samples([2.0, 4.0, 6.0, 8.0], source="estimated from journeys")
    assert delay.mean == 5.0
    assert delay.sd == pytest.approx(math.sqrt((20.0 / 3.0) / 4.0))
    assert delay.shape == pytest.approx(25.0 / (20.0 / 3.0))
    with pytest.raises(ValueError, match="at least 2"):
        delay_from_samples([3.0], source="x")


def test_diversion_from_counts_and_its_draws():
    div = diversion_from_counts({"route:east": 29}, waited=69, source="estimated from the 2026 closure")
    assert div.to[0].share == pytest.approx(30.0 / 100.0)
    assert div.sd == pytest.approx(math.sqrt(0.3 * 0.7 / 101.0))
    draws = div.draw_shares(np.random.default_rng(0), 20_000)[:, 0]
    assert draws.mean() == pytest.approx(0.3, abs=0.005)
    assert draws.std() == pytest.approx(div.sd, rel=0.05)


def test_series_ids_are_the_contracts_ones():
    assert point_series_id("central_mediterranean", "zuwara") == series_id(
        "point", "central_mediterranean", source="people", crossing_point="zuwara"
    )
    assert route_series_id("channel") == series_id("route", "channel", source="people")


# --- the spec and its errors ---------------------------------------------------------------------------------------

TOML = """
name = "a closed for a week"
seed = 4
[[interventions]]
kind = "closure"
target = "point:central/a"
start = 2027-03-05
end = 2027-03-11
[interventions.assumptions]
divert = [{ to = "route:east", share = 0.5 }]
divert_lag_days = { mean = 4, sd = 1 }
"""


def test_toml_and_json_give_the_same_spec():
    from_toml = spec_from_toml(TOML)
    as_json = json.dumps(from_toml.model_dump(mode="json"))
    assert spec_from_json(as_json) == from_toml
    (iv,) = from_toml.interventions
    assert (iv.start, iv.end, iv.days) == (date(2027, 3, 5), date(2027, 3, 11), 7)
    assert str(iv.assumptions.divert[0].to) == "route:east"


def test_a_scenario_file_loads(tmp_path):
    path = tmp_path / "zuwara.toml"
    path.write_text(TOML)
    assert load_spec(path) == spec_from_toml(TOML)
    with pytest.raises(ScenarioError, match=r"scenario file zuwara.yaml: expected a .toml or .json file"):
        load_spec(tmp_path / "zuwara.yaml")
    with pytest.raises(
        ScenarioError,
        match=r"the scenario is not valid JSON: Expecting property name enclosed in double quotes at line 1",
    ):
        spec_from_json("{interventions: }")


def test_the_defaults_mirror_the_simulators_closure():
    config = tomllib.loads((Path(__file__).resolve().parents[2] / "simulator" / "simulator.toml").read_text())
    block = DEFAULT_PARAMETERS.default
    assert block.release.mean == config["migrants"]["reopen_spread_days"]
    assert block.release.shape == 2.0  # the simulator's Erlang-2
    assert block.divert_lag.mean == config["closures"][0]["lag_days"]


def _horizon_check(raw: dict) -> None:
    validate(parse_spec(raw), network(), DAY0, DAY0 + timedelta(days=N_DAYS - 1))


def _one(**overrides) -> dict:
    return {"interventions": [{**closure(), **overrides}]}


BAD = [
    (_one(target="point:central/q"), r"interventions\[0\]\.target: route central has no crossing point 'q'"),
    (_one(target="route:north"), r"interventions\[0\]\.target: unknown route 'north'; known routes: central, east"),
    (_one(end=day(2)), r"interventions\[0\]: end 2027-03-03 is before start 2027-03-05"),
    (_one(end=day(40)), r"interventions\[0\]\.end 2027-04-10 is outside the forecast horizon 2027-03-01 to 2027-03-30"),
    (_one(kind="blockade"), r"interventions\[0\]\.kind 'blockade' is not a known kind; expected one of closure, "),
    (_one(kind="surge", factor=0), r"interventions\[0\]\.factor must be greater than 0, got 0"),
    (_one(kind="capacity_cut", share=1.5), r"interventions\[0\]\.share must be at most 1, got 1\.5"),
    (_one(start="next week"), r"interventions\[0\]\.start must be a date \(YYYY-MM-DD\), got 'next week'"),
    (_one(strat=day(1)), r"interventions\[0\]\.strat is not a known field"),
    ({"interventions": [{"kind": "closure", "target": "a", "end": day(3)}]}, r"interventions\[0\]\.start is missing"),
    ({"interventions": []}, r"the scenario has no interventions"),
    (
        _one(assumptions={"divert": [{"to": "route:east", "share": 0.7}, {"to": "point:central/b", "share": 0.4}]}),
        r"interventions\[0\]\.assumptions: the divert shares add up to 1\.1, more than 1",
    ),
    (
        {"interventions": [closure(start=2, end=8), closure(start=8, end=12)]},
        r"interventions\[0\] \(closure\) and interventions\[1\] \(closure\) both act on point:central/a "
        r"from 2027-03-09 to 2027-03-09; merge them or make their dates not overlap",
    ),
    (
        {"interventions": [closure(start=2, end=8), {**closure(start=5, end=6), "kind": "surge", "factor": 2}]},
        r"interventions\[0\] \(closure\) and interventions\[1\] \(surge\) both act on point:central/a",
    ),
    (
        _one(assumptions={"divert": [{"to": "route:central", "share": 0.5}]}),
        r"interventions\[0\]: people diverted to route:central would pass point:central/a again",
    ),
    (
        _one(assumptions={"divert": [{"to": "route:east", "share": 0.5}], "divert_sd": 0.6}),
        r"interventions\[0\]\.assumptions: divert_sd 0\.6 is too large for a divert share of 0\.5",
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_a_bad_scenario_gets_one_sentence(raw, message):
    with pytest.raises(ScenarioError) as err:
        _horizon_check(raw)
    text = str(err.value)
    assert re.match(message, text), text
    assert "\n" not in text and "pydantic" not in text


def test_an_ambiguous_bare_point_asks_for_the_route():
    net = Network(points=(NetworkPoint("r1", "p", "hub"), NetworkPoint("r2", "p", "hub")))
    with pytest.raises(ScenarioError, match=r"crossing point 'p' is on routes r1, r2; write point:<route>/p"):
        net.resolve(Target.model_validate("p"), "interventions[0].target")


def test_overlapping_dates_on_different_targets_are_fine():
    raw = {"interventions": [closure("point:central/a", 2, 8), closure("point:east/c", 2, 8)]}
    assert len(validate(parse_spec(raw), network(), DAY0, DAY0 + timedelta(days=N_DAYS - 1))) == 2


def test_a_target_without_a_forecast_is_refused():
    data = forecasts()
    data = data[data["series_id"] != point_series_id("central", "a")]
    with pytest.raises(ScenarioError, match=r"no published forecast of people at point:central/a"):
        simulate_scenario(spec(closure()), network(), data, n_draws=2)


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ((Link("central", "a", "q", 1.0, 1.0),), "no point point:central/q"),
        ((Link("central", "a", "b", 0.7, 1.0), Link("central", "a", "b", 0.6, 2.0)), "more than 1"),
        ((Link("central", "a", "b", 1.0, 1.0), Link("central", "b", "a", 1.0, 1.0)), "loop"),
    ],
)
def test_an_inconsistent_network_is_refused(links, message):
    with pytest.raises(NetworkError, match=message):
        Network(points=network().points, links=links)


# --- conservation of people ------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(0, 20),
    length=st.integers(1, 15),
    passing=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    divert=st.floats(0.0, 1.0),
    divert_sd=st.sampled_from([0.0, 0.05]),
    lag=st.floats(0.0, 12.0),
    release=st.floats(0.0, 10.0),
    release_shape=st.sampled_from([0.0, 1.0, 2.0, 5.0]),
    width=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_people_blocked_are_released_diverted_or_still_waiting(
    start, length, passing, divert, divert_sd, lag, release, release_shape, width, seed
):
    end = min(start + length - 1, N_DAYS - 1)
    cut = {"kind": "capacity_cut", "share": passing, "target": "point:central/a", "start": day(start), "end": day(end)}
    sd = divert_sd if 0.0 < divert < 1.0 and divert_sd**2 < divert * (1 - divert) else 0.0
    cut["assumptions"] = {
        "divert": [{"to": "route:east", "share": divert}],
        "divert_sd": sd,
        "divert_lag_days": {"mean": lag, "sd": 1.0, "shape": 2.0},
        "release_days": {"mean": release, "sd": 0.5, "shape": release_shape},
    }
    draws = simulate_scenario(spec(cut), network(), forecasts(width=width), n_draws=50, seed=seed)
    (ledger,) = draws.ledgers
    accounted = ledger.released + ledger.diverted_total + ledger.waiting_at_end
    assert np.allclose(ledger.blocked, accounted, rtol=1e-9, atol=1e-6)
    assert np.all(ledger.waiting_at_end >= -1e-9)
    # The point's crossings: the baseline minus those blocked plus those released.
    a = draws.row("point", "central", "a")
    crossed = draws.scenario[a].sum(axis=1)
    assert np.allclose(crossed, draws.baseline[a].sum(axis=1) - ledger.blocked + ledger.released, atol=1e-6)
    waiting = draws.scenario[draws.row("waiting", "central", "a")]
    assert np.allclose(waiting[:, -1], ledger.waiting_at_end, atol=1e-6)
    diverted = draws.scenario[draws.row("diverted", "central", "a")].sum(axis=1)
    assert np.allclose(diverted, ledger.diverted_total, atol=1e-6)
    if passing == 1.0:
        assert np.allclose(ledger.blocked, 0.0)
    # Diverted people show up at c (east's departure point) at most once, some after the horizon.
    c = draws.row("point", "east", "c")
    extra_at_c = (draws.scenario[c] - draws.baseline[c]).sum(axis=1)
    assert np.all(extra_at_c >= -1e-6)
    assert np.all(extra_at_c <= ledger.diverted_total + 1e-6)


# --- size ----------------------------------------------------------------------------------------------------------


def test_a_large_scenario_runs():
    """Not a timing test (bench/ is for that): 1000 draws x 40 points x 60 days completes and keeps its shape."""
    points, links, levels = [], [], {}
    for r in range(4):
        route = f"r{r}"
        for i in range(10):
            role = "departure" if i < 5 else "landing"
            points.append(NetworkPoint(route, f"p{i}", role))
            levels[point_series_id(route, f"p{i}")] = 20.0 + i
        for i in range(5):
            links.append(Link(route, f"p{i}", f"p{i + 5}", 0.6, 2.0 + i))
            links.append(Link(route, f"p{i}", f"p{(i + 1) % 5 + 5}", 0.3, 3.0 + i))
        levels[route_series_id(route)] = 500.0
    net = Network(points=tuple(points), links=tuple(links))
    data = forecasts(levels, width=0.3, n_days=60)
    raw = [
        closure("route:r0", 5, 33, divert=[{"to": "route:r1", "share": 0.3}, {"to": "route:r2", "share": 0.2}]),
        {"kind": "surge", "factor": 2.0, "target": "route:r3", "start": day(10), "end": day(23)},
    ]
    result = run_scenario(spec(*raw), net, data, n_draws=1000, seed=1)
    assert result.daily["route_id"].nunique() == 4
    assert len(result.daily) == 60 * (40 + 4 + 5 + 5)  # points, routes, waiting and diverted at r0's departures
