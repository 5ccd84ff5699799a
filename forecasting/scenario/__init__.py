"""What-if scenarios on the published people forecasts: closures, capacity cuts and surges of departures.

A planner asks "if the Zuwara departures stop for four weeks from the 1st, how many people wait, how many divert
and where, when do they land, and what happens when it reopens?". The answer is a flow model of the route network
run on Monte Carlo draws of the published forecasts (people), pure numpy, no Spark.

**The flow model, in plain words.** Each crossing point has its published forecast of people crossing per day (the
baseline). Links say which share of the people passing one point pass another, and how many days later. At a
departure point the published figure counts those who set sail there; where a land link leads on (a town on the
coast road to the next beach, ``Network.onward_links``), the people passing it also include those on their way to
the next points: the people passing the next point, a link's lag later, its part being one over the number of
links into that point (at a point without a published figure, such as a border post nobody estimates, the people
of the points it leads to). The interventions act on their target's points, upstream first:

- a **surge** multiplies the people setting sail there (at any other point: crossing there) by its factor during its
  days (below 1: a drop; those people simply do not come); the extra people flow on downstream. A route or segment
  surge acts at every one of its departure points;
- a **closure** (or a **capacity cut**, which lets a share of each day's people through) blocks everyone passing
  the point, those on their way along the road included. Of
  the blocked people a share **diverts**: they leave the route and, after a lag, show up at the destination's
  departure points (split by those points' forecasts) and flow on through its links. The rest **wait** at the
  point; from the day after the end, the backlog **leaves** over a few days (Erlang-2 by default, as in the
  simulator) and flows on;
- everything that changes at a point reaches the points downstream through the links, each person with a transit
  time spread around the link's lag. People present on a route change by who entered or left it: extra people of a
  surge enter where the surge is, diverted people leave where they were blocked and enter where they show up,
  people leave the route at a point in the share its links out do not carry on (all of them at a landing).

This mirrors the simulator's closures (``simulator/journeys.py``): a blocked agent waits until the reopening plus an
Erlang-2 wait of mean ``reopen_spread_days``, or with ``divert_share`` starts again on ``to_route`` ``lag_days`` later.

**Uncertainty.** Every draw takes one path of each baseline series (from its yhat and intervals, misses correlated
from day to day) and one value of each parameter (divert shares: Dirichlet/Beta; lags and the release: Gamma means
with Gamma-spread people; link lags: a Gamma factor). A point's level error (``NetworkPoint.level_sigma``: a guessed
share is wrong for the whole closure, not one day at a time), which its published intervals include, is taken out of
them and drawn once per draw instead, log-normal with mean 1: the published level is read as right on average. The
baseline and the scenario use the same baseline draw, so the difference's interval comes from the intervention, its
parameters and the level it acts on. Draws are reproducible from a seed.

**Conservation.** For every blocked point and draw: blocked = released + diverted + still waiting at the
horizon's end (``BlockLedger``). Diverted people whose lag ends after the horizon are not seen on any point.

**Limits.** Shares and lags of the links are what the network says; the published forecasts are not a consistent
flow, so a reduction larger than a downstream point's forecast cannot take it below 0: the rest is owed and comes off
the people it gains later (a released backlog first), so that over the days a point changes by what reached it,
except what is still owed at the horizon's end. A point without a published forecast passes every change on. People
who wait are not on
the route's arrivals until released; diverted people land only where the destination's departure points lead.
A destination blocked itself blocks diverted people again (the simulator lets a second journey only wait).
A route or segment target means its departure points (its entry points on a land route without any), and so
does a route as a diversion destination: the divert lag must cover the way from being blocked to that coast
(the simulator's ``lag_days`` plus the journey from the route's start). A capacity cut's share is of each
day's people, not a fixed number; the backlog leaves only after the end, not through the remaining capacity.
Series are drawn independently of each other, their level errors too. Two departure points splitting the same
landings evenly are wrong in opposite directions in truth; drawn independently, what they add up to is more
uncertain than it is (with the level as the mean, not more on average). A departure point's onward people are
split from those setting sail in the baseline's proportions over the horizon, and released in the same proportions.
A diversion may not lead back to where people were blocked.

Modules: ``spec`` (the scenario a planner writes, ``ScenarioError``), ``network`` (points and links),
``parameters`` (distributions with sources, defaults, estimates from samples), ``estimate`` (parameters from a past
closure's marks on daily counts), ``plan`` (``validate``), ``engine`` (the Monte Carlo flows), ``results`` (the
tables).

Use::

    spec = load_spec("zuwara.toml")
    result = run_scenario(spec, network, forecasts, n_draws=1000)
    result.daily, result.summary, result.ledger, result.assumptions
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from forecasting.scenario.engine import (
    FORECAST_COLUMNS,
    BlockLedger,
    RowKey,
    ScenarioDraws,
    delay_kernels,
    draw_baseline,
    point_series_id,
    route_series_id,
    simulate_scenario,
)
from forecasting.scenario.estimate import BlockEstimate, estimate_block
from forecasting.scenario.network import ROLES, Link, Network, NetworkError, NetworkPoint, PointKey
from forecasting.scenario.parameters import (
    DEFAULT_PARAMETERS,
    BlockParameters,
    Delay,
    Diversion,
    ScenarioParameters,
    Transit,
    delay_from_samples,
    diversion_from_counts,
    load_parameters,
)
from forecasting.scenario.plan import Destination, PlannedIntervention, validate
from forecasting.scenario.results import (
    ASSUMPTION_COLUMNS,
    DAILY_COLUMNS,
    LEDGER_COLUMNS,
    SUMMARY_COLUMNS,
    ScenarioResult,
    summarise,
)
from forecasting.scenario.spec import (
    KINDS,
    CapacityCut,
    Closure,
    DelayAssumption,
    DiversionShare,
    InterventionAssumptions,
    ScenarioError,
    ScenarioSpec,
    SpecAssumptions,
    Surge,
    Target,
    TransitAssumption,
    load_spec,
    parse_spec,
    spec_from_json,
    spec_from_toml,
)

__all__ = [
    "ASSUMPTION_COLUMNS",
    "DAILY_COLUMNS",
    "DEFAULT_PARAMETERS",
    "FORECAST_COLUMNS",
    "KINDS",
    "LEDGER_COLUMNS",
    "ROLES",
    "SUMMARY_COLUMNS",
    "BlockEstimate",
    "BlockLedger",
    "BlockParameters",
    "CapacityCut",
    "Closure",
    "Delay",
    "DelayAssumption",
    "Destination",
    "Diversion",
    "DiversionShare",
    "InterventionAssumptions",
    "Link",
    "Network",
    "NetworkError",
    "NetworkPoint",
    "PlannedIntervention",
    "PointKey",
    "RowKey",
    "ScenarioDraws",
    "ScenarioError",
    "ScenarioParameters",
    "ScenarioResult",
    "ScenarioSpec",
    "SpecAssumptions",
    "Surge",
    "Target",
    "Transit",
    "TransitAssumption",
    "delay_from_samples",
    "delay_kernels",
    "diversion_from_counts",
    "draw_baseline",
    "estimate_block",
    "load_parameters",
    "load_spec",
    "parse_spec",
    "point_series_id",
    "route_series_id",
    "run_scenario",
    "simulate_scenario",
    "spec_from_json",
    "spec_from_toml",
    "summarise",
    "validate",
]


def run_scenario(
    spec: ScenarioSpec,
    network: Network,
    forecasts: pd.DataFrame,
    *,
    parameters: ScenarioParameters | None = None,
    n_draws: int = 1000,
    seed: int | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
) -> ScenarioResult:
    """The answer to a scenario: ``simulate_scenario`` (same arguments) summed up by ``summarise``."""
    draws = simulate_scenario(
        spec,
        network,
        forecasts,
        parameters=parameters,
        n_draws=n_draws,
        seed=seed,
        first_day=first_day,
        last_day=last_day,
    )
    return summarise(draws)
