"""Public response models of the API (separate from the store's tables).

Examples name no real route: the OpenAPI document is open, and a token scoped to some routes must not learn from
it that others exist.
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

Level = Literal["route", "segment"]
Freq = Literal["D", "W", "M"]


class IntervalLevel(IntEnum):
    """Coverage of a prediction interval, in percent."""

    p80 = 80
    p95 = 95


Unit = Literal["people", "devices"]
UNIT = (
    "What the figures count: people (the measurement model's estimate, or an official count of people detected or "
    "arrived) or devices (distinct phones of the density signal: a diagnostic, never a count of people)."
)

AlertKind = Literal["forecast_above_threshold", "observation_above_threshold", "observation_outside_interval"]

ROUTE_EXAMPLE = "example_route"
LINEAGE = "run_id, model_version and release_id say which MLflow run, registered model version and release made it."


class SegmentOut(BaseModel):
    id: str
    name: str
    order: int
    mode: str


class CrossingPointOut(BaseModel):
    id: str
    name: str
    role: str
    segment_id: str
    lat: float
    lon: float


class CellDays(BaseModel):
    """The days ``GET /v1/routes/{id}/hexes`` answers for: observed from ``first`` to ``as_of``, forecast after."""

    first: dt.date
    as_of: dt.date
    last: dt.date


class RouteOut(BaseModel):
    id: str = Field(examples=[ROUTE_EXAMPLE])
    name: str
    segments: list[SegmentOut]
    crossing_points: list[CrossingPointOut]
    has_forecast: bool = Field(description="Whether the current release has density forecasts for this route.")
    sources: list[str] = Field(
        description="Sources with forecasts for this route: people (the measurement model's estimate), density "
        "(devices), and official counts such as frontex."
    )
    cell_days: CellDays | None = Field(
        None, description="Days with published H3 cells for this route (hexes endpoint); null when there are none."
    )


class RoutesOut(BaseModel):
    release_id: str | None
    as_of: str | None = Field(None, description="Last day of data the served release was made from.")
    cell_resolutions: list[int] = Field(default_factory=list, description="H3 resolutions of the published cells.")
    routes: list[RouteOut]


class Feature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: dict[str, Any] = Field(description="A GeoJSON geometry in WGS 84 longitude, latitude.")
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    """A GeoJSON FeatureCollection (RFC 7946) with routecast's own members beside ``features``."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]


class RouteGeoJSON(FeatureCollection):
    route: dict[str, Any] = Field(description="The route's id, name, official names and the sources of its places.")


class HexesGeoJSON(FeatureCollection):
    route_id: str
    date: dt.date
    res: int
    release_id: str
    unit: Literal["devices"] = Field(
        "devices",
        description="Cells count distinct phones (the density signal): devices, a diagnostic, never people.",
    )
    observed: bool = Field(
        description="True for a day up to the release's as_of (devices and excess are observed, forecast is null), "
        "false for a forecast day (forecast is the segment's forecast times the cell's share of the segment's "
        "devices over the last 28 days; devices and excess are null)."
    )


class ForecastPoint(BaseModel):
    ds: dt.date
    yhat: float
    lo80: float | None = Field(None, description="Lower bound of the 80 % interval (null when not asked for).")
    hi80: float | None = None
    lo95: float | None = None
    hi95: float | None = None


class HistoryPoint(BaseModel):
    ds: dt.date
    y: float


class SeriesForecast(BaseModel):
    series_id: str = Field(examples=[f"route:{ROUTE_EXAMPLE}"])
    level: Level
    source: str
    unit: Unit = Field(description=UNIT)
    freq: Freq = Field(description="D: daily, W: weekly (Mondays), M: monthly (1st).")
    route_id: str
    segment_id: str | None
    model: str = Field(description="The model chosen for this series on its backtest.")
    point: Literal["mean", "median"] = Field(
        "mean",
        description="What yhat is. mean: the expected value of each period, so periods add up to a total. median: "
        "a typical period, as likely to be exceeded as not (daily official counts: most days of a bursty count "
        "fall below its mean, so the median is lower); several periods do not add up to the expected total, which "
        "the totals endpoint gives.",
    )
    run_id: str = Field(description="MLflow run that produced the forecast.")
    model_version: str = Field(description="Registered model version of that run.")
    release_id: str
    history: list[HistoryPoint] = Field(description="The last observed periods, oldest first (as many as asked).")
    forecast: list[ForecastPoint]


class RouteForecastOut(BaseModel):
    route_id: str
    level: Level
    source: str = Field(description="The source answered: the one asked for, or the default (people where held).")
    unit: Unit = Field(description=UNIT)
    horizon: int = Field(description="Periods ahead answered, in the series' frequency (at most the release's).")
    intervals: list[IntervalLevel]
    release_id: str
    as_of: str | None = Field(description="Last day of data the forecasts were made from.")
    series: list[SeriesForecast]


INTERVAL_OF_TOTAL = (
    "{side} bound of the central {level} % prediction interval of the total itself, calibrated on the errors of the "
    "same totals at past forecast origins (n_scores of them): not a sum of the periods' own bounds, which would be "
    "far wider."
)


class Exceedance(BaseModel):
    """How likely the total is to be above a threshold, read off the total's published quantiles."""

    threshold: float = Field(description="The `exceeds` asked for, in the answer's unit.")
    probability: float = Field(
        description="P(total > threshold), between 0.025 and 0.975: read off the total's quantiles (2.5 %, 5 %, 10 "
        "%, …, 90 %, 95 %, 97.5 %), taken as linear between two of them. When `bound` is set it is only a bound, not "
        "an estimate: the threshold lies outside the quantiles the release publishes."
    )
    bound: Literal["at least", "at most"] | None = Field(
        description="null: probability is an estimate. at least: the threshold is below the 2.5 % quantile, so the "
        "probability is at least 0.975 (it may be higher). at most: the threshold is at or above the 97.5 % "
        "quantile, so the probability is at most 0.025 (it may be much lower)."
    )


class WindowTotal(BaseModel):
    window: int = Field(description="How many periods of `freq` the total adds up (e.g. 7 or 28 days).")
    freq: Freq = Field(description="D: daily, W: weekly (Mondays), M: monthly (1st).")
    start: dt.date = Field(description="First period in the total.")
    end: dt.date = Field(description="Last period in the total (inclusive).")
    yhat: float = Field(description="Expected total over the window.")
    lo80: float = Field(description=INTERVAL_OF_TOTAL.format(side="Lower", level=80))
    hi80: float = Field(description=INTERVAL_OF_TOTAL.format(side="Upper", level=80))
    lo95: float = Field(description=INTERVAL_OF_TOTAL.format(side="Lower", level=95))
    hi95: float = Field(description=INTERVAL_OF_TOTAL.format(side="Upper", level=95))
    n_scores: int = Field(
        description="How many past totals over the same window (at earlier forecast origins, compared with what was "
        "then observed) the intervals and quantiles were calibrated on: the fewer, the less the bounds can be trusted."
    )
    model: str = Field(description="The model chosen for this series on its backtest.")
    exceedance: Exceedance | None = Field(None, description="Only with `exceeds`: how likely a total above it is.")


class RouteTotalsOut(BaseModel):
    route_id: str
    segment_id: str | None = Field(description="The segment whose totals these are; null: the route's.")
    series_id: str = Field(examples=[f"route:{ROUTE_EXAMPLE}"])
    source: str = Field(description="The source answered: the one asked for, or the default (people where held).")
    unit: Unit = Field(description=UNIT)
    release_id: str
    as_of: str | None = Field(description="Last day of data the totals were made from.")
    totals: list[WindowTotal] = Field(description="One per window the release publishes, shortest first.")


class ArrivalDay(BaseModel):
    ds: dt.date
    yhat: float
    lo80: float
    hi80: float
    lo95: float
    hi95: float


TOTAL_BOUND = (
    "With `interval: total`, the {side} bound of the {level} % interval of the total itself (calibrated on how wrong "
    "the same forecast's totals were at past origins; for people, widened by the measurement model's error in the "
    "route's level, but not by an error in a point's share of the route). With `interval: sum_of_daily_bounds` (no "
    "total published for this many days), the sum of the daily {side} bounds: a conservative bound for the total (it "
    "assumes the days' errors move together), not a {level} % interval of it."
)


class ArrivalTotal(BaseModel):
    days: int
    yhat: float = Field(description="Sum of the daily expected values.")
    interval: Literal["total", "sum_of_daily_bounds"] = Field(
        description="What the bounds are: `total`, the interval of the total (published for the totals the release "
        "makes, e.g. 7 and 28 days of a people series); `sum_of_daily_bounds`, the sums of the daily bounds."
    )
    lo80: float = Field(description=TOTAL_BOUND.format(side="lower", level=80))
    hi80: float = Field(description=TOTAL_BOUND.format(side="upper", level=80))
    lo95: float = Field(description=TOTAL_BOUND.format(side="lower", level=95))
    hi95: float = Field(description=TOTAL_BOUND.format(side="upper", level=95))


class CrossingArrivals(BaseModel):
    crossing_point_id: str = Field(examples=["example_landing"])
    name: str
    role: str
    route_id: str
    segment_id: str
    lat: float
    lon: float
    unit: Unit = Field(
        description="people: the measurement model's estimate of people crossing at this point; devices (when the "
        "release holds no people series for it): distinct phones on the point's segment, a proxy, not people."
    )
    basis: str = Field(description="What the numbers are: the series they come from and what it counts.")
    series_id: str
    days: list[ArrivalDay]
    total: ArrivalTotal


class ArrivalsOut(BaseModel):
    release_id: str
    as_of: str | None
    days: int = Field(description="Days answered: those asked for, or fewer when the release forecasts fewer.")
    unit: Unit | None = Field(
        description="The unit of every crossing point in the answer (each also says its own); null when they "
        "differ (a release with people series for some points only). An answer with no point says people when the "
        "release holds people series, else devices."
    )
    crossing_points: list[CrossingArrivals]


class Alert(BaseModel):
    series_id: str
    route_id: str
    segment_id: str | None
    source: str
    unit: Unit = Field(description=UNIT)
    level: str
    kind: AlertKind
    ds: dt.date = Field(description="The day (or period start) that breaks the bound.")
    value: float = Field(description="The forecast (yhat) or the observation on that day.")
    bound: float = Field(description="The threshold or interval bound that was broken.")
    severity: float = Field(description="How far past the bound, relative to it: (value - bound) / bound.")
    message: str


class AlertsOut(BaseModel):
    release_id: str
    as_of: str | None
    alerts: list[Alert]


class InputDates(BaseModel):
    first: dt.date | None
    last: dt.date | None


class PeopleRouteParams(BaseModel):
    """The measurement model's fitted parameters for one route."""

    feature: str | None = Field(description="The density signal people are read from; null: the route is blind.")
    scale: float | None = Field(description="People per unit of the feature.")
    days_on_route: float | None = Field(description="Days a person stays on the route (W of Little's law).")
    sigma_log: float | None = Field(description="Log-scale standard error of the scale.")
    fitted_on: str = Field(description="monthly or daily: the official figures the scale was fitted on.")
    periods: int = Field(description="How many official figures the fit used.")
    reason: str = Field(description="How the feature was chosen, or why the route is blind.")
    blind: bool = Field(description="True when the route is not measured (no feature).")


class PeopleModelOut(BaseModel):
    """Which measurement model, fitted on which official figures and with which parameters, made a people series."""

    model_id: str
    unit: Literal["people"]
    fitted_on: dict[str, str | None] = Field(
        description="The official figures the model was fitted on (monthly, daily, or an official source) -> the "
        "days they covered, first..last (null: none)."
    )
    route_id: str
    params: PeopleRouteParams | None = Field(description="The route's parameters; null when the model names none.")


class LineageOut(BaseModel):
    series_id: str
    route_id: str | None
    source: str
    unit: Unit = Field(description=UNIT)
    model: str
    release_id: str
    run_id: str
    model_version: str
    as_of: str | None
    release_created_at: str | None
    forecast_first: dt.date
    forecast_last: dt.date
    last_observed: dt.date | None = Field(description="Last period with an observation in the release's history.")
    inputs: InputDates | None = Field(description="First and last day of this source's input data for the run.")
    min_devices: int = Field(description="Suppression threshold the release was made with.")
    people_model: PeopleModelOut | None = Field(
        None,
        description="For a people series: the measurement model and the route's parameters that made it (from the "
        "release's manifest); null for other sources and for releases that do not record one.",
    )


class ReleaseOut(BaseModel):
    release_id: str
    current: bool
    as_of: str | None = None
    created_at: str | None = None
    run_id: str | None = None
    model_version: str | None = None
    rows: int | None = None
    error: str | None = Field(None, description="Why the release cannot be served, if it cannot.")


class ReleasesOut(BaseModel):
    serving: str | None
    releases: list[ReleaseOut]


class ReloadOut(BaseModel):
    release_id: str | None
    changed: bool
    detail: str | None = None


class MeOut(BaseModel):
    """Who the token names and what it may see: the map page reads it to show only what the token may use."""

    subject: str
    role: Literal["analyst", "planner", "admin"]
    routes: list[str] | None = Field(description="The routes the token is limited to; null: all routes.")
    expires: dt.datetime


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    release_id: str | None
    detail: str | None = None


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, in a sentence.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="For a 422: each invalid parameter with its location, message and the input given."
    )


# ------------------------------------------------------------------------------------------------ scenarios

SCENARIO_KIND = (
    "point: people crossing at a point per day; route: people present on a route; waiting: people held back at a "
    "blocked point, present that day; diverted: people leaving a blocked point for another destination that day."
)
SCENARIO_BAND = (
    "baseline_* (the published forecast's draws), scenario_* (with the interventions) and difference_* (scenario "
    "minus baseline, per draw), each as yhat (median of the draws), lo80, hi80, lo95, hi95; people."
)


class ScenarioBand(BaseModel):
    """Baseline, scenario and their difference in people, each the median and the 80 % and 95 % intervals of the
    Monte Carlo draws. The difference's bounds are quantiles of the per-draw difference, not differences of bounds."""

    baseline_yhat: float
    baseline_lo80: float
    baseline_hi80: float
    baseline_lo95: float
    baseline_hi95: float
    scenario_yhat: float
    scenario_lo80: float
    scenario_hi80: float
    scenario_lo95: float
    scenario_hi95: float
    difference_yhat: float
    difference_lo80: float
    difference_hi80: float
    difference_lo95: float
    difference_hi95: float


class ScenarioSummaryRow(ScenarioBand):
    """One series of a scenario over its window (the first intervention's start to the horizon's end)."""

    kind: Literal["point", "route", "waiting", "diverted"] = Field(description=SCENARIO_KIND)
    route_id: str = Field(examples=[ROUTE_EXAMPLE])
    point_id: str | None
    series_id: str | None = Field(description="The published people series of the baseline, if any.")
    measure: Literal["total", "mean", "peak"] = Field(
        description="total: people over the window (point, diverted); mean: people present on an average day "
        "(route); peak: the most people waiting on one day (waiting)."
    )
    start: dt.date
    end: dt.date


class ScenarioDayRow(ScenarioBand):
    """One series of a scenario on one day (people per day, or people present that day)."""

    kind: Literal["point", "route", "waiting", "diverted"] = Field(description=SCENARIO_KIND)
    route_id: str = Field(examples=[ROUTE_EXAMPLE])
    point_id: str | None
    series_id: str | None
    ds: dt.date


class ScenarioLedgerRow(BaseModel):
    """Where the people blocked by one intervention at one point went, in people (median and intervals of the draws):
    blocked = released + diverted + waiting_at_end in every draw."""

    intervention: int = Field(description="The intervention's index in the scenario's interventions, from 0.")
    route_id: str = Field(examples=[ROUTE_EXAMPLE])
    point_id: str
    quantity: str = Field(
        description="blocked, diverted, diverted:<destination>, released (within the horizon) or waiting_at_end."
    )
    yhat: float
    lo80: float
    hi80: float
    lo95: float
    hi95: float


class ScenarioAssumptionRow(BaseModel):
    """One parameter the scenario ran with and where it came from (default, planner, or an estimate)."""

    intervention: int | None = Field(description="The intervention it belongs to; null: the whole scenario.")
    target: str | None
    parameter: str
    mean: float | None
    sd: float | None
    shape: float | None
    source: str


class ScenarioMeta(BaseModel):
    """How and on what a scenario was run."""

    scenario_id: str = Field(examples=["3f0c2b9a6d4e4f1a8b7c5d2e1f0a9b8c"])
    created_at: dt.datetime
    release_id: str
    model_version: str | None = Field(description="The registered model version of the release's forecasts.")
    run_id: str | None = Field(description="The MLflow run that made the release's forecasts.")
    subject: str = Field(description="Who asked for it (the token's subject).")
    routes: list[str] = Field(
        description="The routes the scenario touches: its targets, its diversions' destinations and the routes "
        "downstream of them. Only tokens that may see all of them see the scenario."
    )
    first_day: dt.date = Field(description="First day of the horizon the scenario ran over.")
    last_day: dt.date
    n_draws: int = Field(description="Monte Carlo draws of the forecasts and parameters.")
    seed: int = Field(description="The random seed: the same spec, release, draws and seed give the same answer.")
    notes: list[str] = Field(description="What the scenario could not show (e.g. a point without a forecast).")


class ScenarioCreatedOut(BaseModel):
    """A scenario just run and stored: GET /v1/scenarios/{scenario_id} answers it in full."""

    scenario_id: str = Field(examples=["3f0c2b9a6d4e4f1a8b7c5d2e1f0a9b8c"])
    meta: ScenarioMeta
    unit: Literal["people"] = "people"
    summary: list[ScenarioSummaryRow] = Field(description=SCENARIO_BAND)


class ScenarioOut(BaseModel):
    """A stored scenario: the spec as it was sent, how it was run, and its tables (people)."""

    scenario_id: str = Field(examples=["3f0c2b9a6d4e4f1a8b7c5d2e1f0a9b8c"])
    spec: dict[str, Any] = Field(description="The scenario exactly as it was sent.")
    meta: ScenarioMeta
    unit: Literal["people"] = "people"
    summary: list[ScenarioSummaryRow] = Field(description=SCENARIO_BAND)
    daily: list[ScenarioDayRow]
    ledger: list[ScenarioLedgerRow]
    assumptions: list[ScenarioAssumptionRow]


class ScenarioListItem(BaseModel):
    """A scenario kept, as GET /v1/scenarios lists it: GET /v1/scenarios/{scenario_id} answers it in full."""

    scenario_id: str = Field(examples=["3f0c2b9a6d4e4f1a8b7c5d2e1f0a9b8c"])
    name: str | None = Field(description="The scenario's name, as its spec gives it (null: it gives none).")
    created_at: dt.datetime
    subject: str = Field(description="Who asked for it (the token's subject).")
    release_id: str = Field(description="The release it ran on.")
    routes: list[str] = Field(description="The routes the scenario touches; the token sees all of them.")
    first_day: dt.date = Field(description="First day of the horizon the scenario ran over.")
    last_day: dt.date


class ScenariosOut(BaseModel):
    """The scenarios kept that the token may see, newest first."""

    scenarios: list[ScenarioListItem]
