"""Behaviour parameters from a past closure's marks on daily counts (``forecasting.scenario.estimate``).

Synthetic closures with a known answer: people pass a point (Poisson) until it closes; of those blocked, each diverts
with a known share and shows up at another route's points after a Gamma lag, the rest wait and leave after the
reopening. The estimate must find the share, the lag and the release, and its intervals must hold them about as
often as they say.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecasting.scenario import Target, estimate_block

START, END = dt.date(2025, 3, 1), dt.date(2025, 3, 28)
DAYS = pd.date_range("2025-01-01", periods=140, freq="D")
TO = "route:eastern_mediterranean"


@dataclass(frozen=True)
class Closure:
    closed: pd.Series
    destination: pd.Series
    share: float  # of the blocked people, the share that diverted
    lag: float  # days from the centre of the blocked days to the centre of the diverted people's arrivals
    release: float  # mean days after the reopening day at which the held people left


def closure(seed: int, share: float = 0.5, lag: float = 17.0, level: float = 12.0, other: float = 30.0) -> Closure:
    rng = np.random.default_rng(seed)
    i0, i1 = (pd.Timestamp(START) - DAYS[0]).days, (pd.Timestamp(END) - DAYS[0]).days
    closed = rng.poisson(level, DAYS.size).astype(float)
    blocked = rng.poisson(level, i1 - i0 + 1)
    closed[i0 : i1 + 1] = 0
    diverted = rng.binomial(blocked, share)
    release = np.floor(rng.gamma(2.0, 1.5, int(blocked.sum() - diverted.sum()))).astype(int)
    np.add.at(closed, np.minimum(i1 + 1 + release, DAYS.size - 1), 1)
    destination = rng.poisson(other, DAYS.size).astype(float)
    day = np.repeat(np.arange(blocked.size), diverted)
    lags = np.floor(rng.gamma(4.0, lag / 4.0, day.size)).astype(int)
    np.add.at(destination, np.minimum(i0 + day + lags, DAYS.size - 1), 1)
    centre_blocked = (np.repeat(np.arange(blocked.size), blocked) + 0.5).mean()
    return Closure(
        pd.Series(closed, index=DAYS),
        pd.Series(destination, index=DAYS),
        share=float(diverted.sum() / blocked.sum()),
        lag=float((day + lags + 0.5).mean() - centre_blocked) if day.size else float("nan"),
        release=float(release.mean()) if release.size else float("nan"),
    )


def rows(estimate) -> pd.DataFrame:
    return estimate.table.set_index("quantity")


def test_a_closure_is_read_back_share_lag_and_release_with_their_sources():
    world = closure(seed=1)
    got = estimate_block(world.closed, {TO: world.destination}, START, END, source="synthetic counts")
    p = got.parameters
    (dest,) = p.diversion.to
    assert dest.to == Target.model_validate(TO)
    assert dest.share == pytest.approx(world.share, abs=0.25)
    assert 0 < p.diversion.sd < 0.5
    assert p.divert_lag.mean == pytest.approx(world.lag, abs=4.0)
    assert p.release.mean == pytest.approx(world.release, abs=1.5)
    for part in (p.diversion, p.divert_lag, p.release):
        assert part.source == "estimated from synthetic counts, closure 2025-03-01 to 2025-03-28"
    # The shapes of people's delays are not estimated: they keep the defaults'.
    assert (p.divert_lag.shape, p.release.shape) == (4.0, 2.0)
    t = rows(got)
    blocked = t.loc["blocked (shortfall while closed)"]
    assert blocked["lo90"] < 12 * 28 < blocked["hi90"]
    assert t.loc["divert share (1 - released / blocked)", "estimate"] == pytest.approx(world.share, abs=0.1)
    # The destination's own excess holds its noise over nine weeks: it dates the diverted people, it does not size them.
    seen = t.loc[f"excess seen at {TO}"]
    assert seen["sd"] > 2 * t.loc["released (bump after reopening)", "sd"]
    assert got.notes == ()


def test_the_intervals_hold_the_truth_about_as_often_as_they_say():
    # 60 closures: the 90 % intervals of the share and the lag. Measured over 200: 0.93 and 0.91; a broken sd would
    # fall far below.
    held = {"share": 0, "lag": 0}
    n = 60
    for seed in range(n):
        world = closure(seed)
        t = rows(estimate_block(world.closed, {TO: world.destination}, START, END, source="s", n_draws=1000, seed=seed))
        share, lag = t.loc[f"divert share to {TO}"], t.loc[f"divert lag to {TO}"]
        held["share"] += share["lo90"] <= world.share <= share["hi90"]
        held["lag"] += lag["lo90"] <= world.lag <= lag["hi90"]
    assert held["share"] / n >= 0.75
    assert held["lag"] / n >= 0.75


def test_nobody_diverting_reads_as_a_share_near_zero():
    world = closure(seed=3, share=0.0)
    got = estimate_block(world.closed, {TO: world.destination}, START, END, source="s")
    # The share cannot go below 0, so its mean over draws sits above it; its interval reaches 0.
    assert rows(got).loc[f"divert share to {TO}", "lo90"] == 0.0
    assert got.parameters.diversion.to[0].share < 0.5


def test_without_a_destination_nobody_diverts_and_the_note_says_so():
    world = closure(seed=4)
    got = estimate_block(world.closed, {}, START, END, source="s")
    assert got.parameters.diversion.to == ()
    assert got.parameters.divert_lag.source.startswith("default")
    (note,) = got.notes
    assert note.startswith("no destination given: the parameters divert nobody, although 0.")


def test_a_shortfall_within_the_noise_is_said():
    rng = np.random.default_rng(5)
    closed = pd.Series(rng.poisson(12.0, DAYS.size).astype(float), index=DAYS)
    i0 = (pd.Timestamp(START) - DAYS[0]).days
    closed.iloc[i0 : i0 + 2] = 8.0  # a two-day dip of a few people
    got = estimate_block(closed, {}, START, START + dt.timedelta(days=1), source="s")
    assert any("within the noise" in n for n in got.notes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"end": START - dt.timedelta(days=1)}, "ends (2025-02-28) before it starts"),
        ({"closed": "short"}, "the closed point's counts: no count for"),
        ({"destination": "short"}, f"{TO}'s counts: no count for"),
        ({"closed": "negative"}, "counts of people must be >= 0"),
        ({"closed": "flat"}, "show no shortfall"),
        ({"before_days": 3}, "before_days must be >= 7"),
    ],
)
def test_bad_input_is_refused_with_the_reason(change, message):
    world = closure(seed=6)
    closed, destination = world.closed.copy(), world.destination.copy()
    if change.get("closed") == "short":
        closed = closed[closed.index < pd.Timestamp(END)]
    if change.get("closed") == "negative":
        closed.iloc[40] = -1.0
    if change.get("closed") == "flat":
        closed[:] = 5.0
    if change.get("destination") == "short":
        destination = destination[destination.index < pd.Timestamp("2025-04-15")]
    kwargs = {k: v for k, v in change.items() if k == "before_days"}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        estimate_block(closed, {TO: destination}, START, change.get("end", END), source="s", **kwargs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    level=st.floats(1.0, 200.0),
    share=st.floats(0.0, 1.0),
    other=st.floats(0.5, 300.0),
    seed=st.integers(0, 10_000),
    days=st.integers(1, 40),
)
def test_whatever_the_counts_the_parameters_are_valid_for_the_engine(level, share, other, seed, days):
    world = closure(seed, share=share, level=level, other=other)
    end = START + dt.timedelta(days=days - 1)
    try:
        got = estimate_block(world.closed, {TO: world.destination}, START, end, source="s", n_draws=300, seed=seed)
    except ValueError as exc:  # a short closure at a quiet point can show no shortfall: refused, never invented
        assert "no shortfall" in str(exc)
        return
    diversion = got.parameters.diversion
    assert 0.0 <= diversion.total <= 1.0
    assert diversion.sd == 0.0 or diversion.sd**2 < diversion.total * (1 - diversion.total)
    for delay in (got.parameters.divert_lag, got.parameters.release):
        assert delay.mean >= 0 and delay.sd >= 0 and np.isfinite(delay.mean)
    shares = diversion.draw_shares(np.random.default_rng(0), 100)
    assert (shares >= 0).all() and (shares.sum(axis=1) <= 1 + 1e-9).all()
