"""The scenario engine against a counterfactual world, at small scale (the medium-scale report: docs/scenarios.md).

The simulator runs the Central and Eastern Mediterranean with the same seed: as is, through the whole nightly pipeline
to a run date (once for the module), and with Sabratha closed for two weeks from the day after, or with a surge of
departures for a week (truth only). The engine gets the first world's release and the planner's scenario; what it
predicts the intervention changes at the routes' entry points is compared per week with the difference between the
two worlds' truth.

With Sabratha closed, at this scale (and, measured, at medium scale) the engine's figures do not yet meet the
product's targets (within 25 % of the simulated change): they inherit the people stage's crossings at departure
points, an equal part of the landings their boats reach. What is asserted is what must hold already: the release
carries the route network, and the engine and the counterfactual world agree on when and which way the closed route's
arrivals change (a shortfall from a week after the closure into the week after it ends). A surge of departures (twice
the people on every boat leaving the central Mediterranean's coast for a week, ``simulator.surges``) does not depend
on the shares, and is held to the targets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pytest
from rich.console import Console

from forecasting.scenario import parse_spec
from jobs.analysis.counterfactual import Release, compare, predicted_weekly, read_release, simulated_weekly
from jobs.orchestration.pipeline import nightly
from jobs.settings import JobSettings
from jobs.stages.counts import ingest_counts
from simulator.config import Closure, Surge, load_config
from simulator.official import FILE_SOURCES
from simulator.run import simulate

# Data from the last day of April to the run date, so that the people model has two whole months of official
# arrivals (May and June) to be fitted on; then four weeks after it.
START, RUN_DATE = dt.date(2025, 4, 30), dt.date(2025, 6, 30)
DAYS = (RUN_DATE - START).days + 1 + 28
CLOSED = "central_mediterranean"
DIVERTED = "eastern_mediterranean"


def _settings(var) -> JobSettings:
    # The people series forecast four weeks ahead: a two-week closure and the two weeks after it.
    return JobSettings(var_dir=var, resolutions=(5, 7), hourly=False, people_horizon_days=28)


@dataclass(frozen=True)
class AsIs:
    """The world without any intervention, through the nightly pipeline: its settings and its release."""

    settings: JobSettings
    release: Release


@pytest.fixture(scope="module")
def as_is(spark, tmp_path_factory, catalogue) -> AsIs:
    routes = catalogue.subset([CLOSED, DIVERTED])
    settings = _settings(tmp_path_factory.mktemp("counterfactual") / "as-is")
    cfg = load_config().model_copy(update={"closures": ()})
    world = simulate(spark, settings, START, DAYS, "small", catalogue=routes, config=cfg)
    for path in world.official_paths:
        ingest_counts(spark, settings, path, FILE_SOURCES[path.name])
    nightly(
        spark, settings, RUN_DATE, raw_path=world.pings_path, since=START, catalogue=routes, console=Console(quiet=True)
    )
    return AsIs(settings, read_release(settings.store_dir))


@pytest.mark.slow
def test_the_engine_and_a_counterfactual_world_agree_on_a_closures_shortfall_and_backlog(
    spark, tmp_path, catalogue, as_is
):
    routes = catalogue.subset([CLOSED, DIVERTED])
    cfg = load_config()
    closure = Closure(
        crossing="sabratha",
        start_day=(RUN_DATE - START).days + 1,
        weeks=2,
        divert_share=0.5,
        to_route=DIVERTED,
        lag_days=10,
    )
    settings, release = as_is.settings, as_is.release
    closed = _settings(tmp_path / "closed")
    simulate(
        spark, closed, START, DAYS, "small", catalogue=routes, config=cfg.model_copy(update={"closures": (closure,)}),
        truth_only=True,
    )  # fmt: skip

    assert release.network.has_point((CLOSED, "sabratha"))
    # Published with the people stage's level error: in the network, and inside the point's daily intervals.
    sigma = release.network.point((CLOSED, "sabratha")).level_sigma
    assert sigma is not None and sigma > 0
    daily = release.forecasts[release.forecasts["series_id"] == f"people/point:{CLOSED}/sabratha"]
    assert (np.log1p(daily["hi80"]) - np.log1p(daily["yhat"]) >= NormalDist().inv_cdf(0.9) * sigma - 1e-9).all()
    first = RUN_DATE + dt.timedelta(days=1)
    assert first == START + dt.timedelta(days=closure.start_day)
    spec = parse_spec({
        "name": "Sabratha closed two weeks",
        "interventions": [{
            "kind": "closure", "target": f"point:{CLOSED}/sabratha",
            "start": first, "end": first + dt.timedelta(days=13),
            "assumptions": {
                "divert": [{"to": f"route:{DIVERTED}", "share": 0.5}], "divert_lag_days": {"mean": 17, "sd": 4},
            },
        }],
    })  # fmt: skip
    simulated = simulated_weekly(settings.truth_dir, closed.truth_dir, routes, first, 4)
    predicted = predicted_weekly(release, spec, routes, first, 4, n_draws=500)
    table, rows = compare(simulated, predicted, [CLOSED, DIVERTED])
    print(table.round(1).to_string(), *rows, sep="\n")  # the figures, for the log

    weekly = table[table["route_id"] == CLOSED].set_index("week")
    # Measured: the closed route lost 0, 14, 30 and 2 arrivals in the four weeks, 46 in all; the engine predicted
    # 0, 9, 18 and 2 (medians; 30 in all), each week inside its 80 % interval. Both see the shortfall come a week
    # after the closure (people take about ten days from Sabratha to Sicily) and last into the week after it. The
    # size is the release's: the people passing Sabratha are its departures and those on the road to Zuwara, each
    # an equal part of the landings, drawn with their wide level errors.
    assert weekly.loc[[1, 2], "simulated"].sum() < 0 and weekly.loc[[1, 2], "predicted"].sum() < 0
    assert abs(weekly.loc[0, "predicted"]) < abs(weekly.loc[1, "predicted"])
    assert table.loc[table["route_id"] == CLOSED, "predicted"].sum() < 0
    # The diverted people arrive on the other route in the world; the engine counts them (its ledger) but shows them
    # only where that route's points have people forecasts, which this small world's release has none of.
    assert table.loc[table["route_id"] == DIVERTED, "simulated"].sum() > 0


@pytest.mark.slow
def test_the_engine_and_a_counterfactual_world_agree_on_a_surge_of_departures(spark, tmp_path, catalogue, as_is):
    routes = catalogue.subset([CLOSED, DIVERTED])
    first = RUN_DATE + dt.timedelta(days=1)
    surge = Surge(route=CLOSED, start_day=(first - START).days, weeks=1, factor=2.0)
    surged = _settings(tmp_path / "surge")
    cfg = load_config().model_copy(update={"closures": (), "surges": (surge,)})
    simulate(spark, surged, START, DAYS, "small", catalogue=routes, config=cfg, truth_only=True)
    spec = parse_spec({
        "name": "twice the departures for a week",
        "interventions": [{
            "kind": "surge", "factor": 2.0, "target": f"route:{CLOSED}",
            "start": first, "end": first + dt.timedelta(days=6),
        }],
    })  # fmt: skip
    simulated = simulated_weekly(as_is.settings.truth_dir, surged.truth_dir, routes, first, 4)
    predicted = predicted_weekly(as_is.release, spec, routes, first, 4, n_draws=500)
    table, rows = compare(simulated, predicted, [CLOSED])
    print(table.round(1).to_string(), *rows, sep="\n")  # the figures, for the log

    # Measured: the world landed 40, 59, 1 and 0 more people in the four weeks (100); the engine predicted 42, 47, 7
    # and 0 (96), each week inside its 80 % interval. Twice the departures of every departure point is twice the
    # route's landings whatever each point's share, so the guessed shares do not hurt here as they do a closure.
    (row,) = rows
    assert row.simulated > 0 and row.predicted > 0
    assert row.relative_error <= 0.25  # the product's target for a scenario's size
    assert row.weeks_covered >= 3  # and for its 80 % intervals: 3 weeks in every 4
