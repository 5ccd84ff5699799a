"""The scenario engine against a counterfactual world, at small scale (the medium-scale report: docs/scenarios.md).

The simulator runs the Central and Eastern Mediterranean twice with the same seed: as is, through the whole nightly
pipeline to a run date, and with Sabratha closed for two weeks from the day after (truth only). The engine gets the
first world's release and the planner's scenario; what it predicts the closure changes at the routes' entry points is
compared per week with the difference between the two worlds' truth.

At this scale (and, measured, at medium scale) the engine's figures do not yet meet the product's targets (within
25 % of the simulated change): they inherit the people stage's crossings at departure points (Sabratha's are about
2.5 times its simulated crossings) and its landings split evenly. What is asserted is what must hold already: the
release carries the route network, and the engine and the counterfactual world agree on when and which way the
closed route's arrivals change (a shortfall from a week after the closure into the week after it ends).
"""

from __future__ import annotations

import datetime as dt

import pytest
from rich.console import Console

from forecasting.scenario import parse_spec
from jobs.analysis.counterfactual import compare, predicted_weekly, read_release, simulated_weekly
from jobs.orchestration.pipeline import nightly
from jobs.settings import JobSettings
from jobs.stages.counts import ingest_counts
from simulator.config import Closure, load_config
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


@pytest.mark.slow
def test_the_engine_and_a_counterfactual_world_agree_on_a_closures_shortfall_and_backlog(spark, tmp_path, catalogue):
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
    settings = _settings(tmp_path / "as-is")
    world = simulate(
        spark, settings, START, DAYS, "small", catalogue=routes, config=cfg.model_copy(update={"closures": ()})
    )
    for path in world.official_paths:
        ingest_counts(spark, settings, path, FILE_SOURCES[path.name])
    nightly(
        spark, settings, RUN_DATE, raw_path=world.pings_path, since=START, catalogue=routes, console=Console(quiet=True)
    )
    closed = _settings(tmp_path / "closed")
    simulate(
        spark, closed, START, DAYS, "small", catalogue=routes, config=cfg.model_copy(update={"closures": (closure,)}),
        truth_only=True,
    )  # fmt: skip

    release = read_release(settings.store_dir)
    assert release.network.has_point((CLOSED, "sabratha"))
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
    # Measured: the closed route lost 0, 14, 30 and 2 arrivals in the four weeks (the backlog landing in the fourth),
    # the engine predicted 3, 19, 19 and 20 (the landing pays back, out of the backlog, what it could not lose while
    # its published people were fewer than the shortfall): 46 against 60 people. Both see the shortfall come a week
    # after the closure (people take about ten days from Sabratha to Sicily) and last into the week after it.
    assert weekly.loc[[1, 2], "simulated"].sum() < 0 and weekly.loc[[1, 2], "predicted"].sum() < 0
    assert abs(weekly.loc[0, "predicted"]) < abs(weekly.loc[1, "predicted"])
    assert table.loc[table["route_id"] == CLOSED, "predicted"].sum() < 0
    # The diverted people arrive on the other route in the world; the engine counts them (its ledger) but shows them
    # only where that route's points have people forecasts, which this small world's release has none of.
    assert table.loc[table["route_id"] == DIVERTED, "simulated"].sum() > 0
